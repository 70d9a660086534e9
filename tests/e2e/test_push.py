"""`/api/push` and Web Push delivery, against a real gateway, agent and fake `claude`, a
real Redis and a push service served by the test: what a device gets is encrypted for
it, signed with the gateway's VAPID key, only of the events it chose, and a subscription
the push service says is gone is removed. (The browser's side, and delivery once across a
node kill, are in tests/console/test_push.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.web_push import topic
from orchestra import redis_client
from tests.e2e.test_rest import api, ok
from tests.support.ai import FAKE_TOOLS, answer_request, start_ai
from tests.support.processes import Deployment, wait_for
from tests.support.push import Device, PushService, serve_push, settled
from tests.support.running import PASSWORD, Running
from tests.support.web import login

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(ORCHESTRA_PUSH_INSECURE_ENDPOINTS="true"),
]

ALL = ["permission.requested", "input.requested", "task.completed", "task.failed"]


@pytest_asyncio.fixture
async def push() -> AsyncIterator[PushService]:
    async with serve_push() as service:
        yield service


def url(running: Running, path: str = "") -> str:
    return f"{running.gateway.url}/api/push/subscriptions{path}"


async def subscribe(
    running: Running, device: Device, endpoint: str, token: str | None = None, **extra: Any
) -> dict[str, Any]:
    made = await api(
        "POST",
        url(running),
        {"subscription": device.subscription(endpoint), **extra},
        token or running.token,
    )
    assert made.status == 201, made.text
    view: dict[str, Any] = made.body["subscription"]
    return view


async def test_subscriptions_are_each_users_own_and_never_show_their_keys(
    running: Running, push: PushService
) -> None:
    device = Device.new()
    sent = device.subscription(push.endpoint("a"))
    view = await subscribe(running, device, push.endpoint("a"), label="alice's phone")
    assert set(view) == {"id", "events", "label", "host", "createdAt"}
    assert (view["events"], view["label"], view["host"]) == (ALL, "alice's phone", "127.0.0.1")

    # The same browser subscribing again keeps its one record.
    again = await subscribe(running, device, push.endpoint("a"), events=["task.failed"])
    assert again["id"] == view["id"] and again["events"] == ["task.failed"]
    listed = await api("GET", url(running), token=running.token)
    assert [s["id"] for s in listed.body["subscriptions"]] == [view["id"]]
    changed = await ok("PATCH", url(running, f"/{view['id']}"), {"events": ALL}, running.token)
    assert changed["subscription"]["events"] == ALL

    # Nothing of what the browser gave comes back, or lies in SQL as it was given.
    for answer in (listed.text, str(changed)):
        assert sent["keys"]["auth"] not in answer and sent["keys"]["p256dh"] not in answer
        assert push.token not in answer
    async with running.deployment.store() as store:
        record = await store.get_push_subscription(view["id"])
    assert record is not None
    for value in (sent["endpoint"], sent["keys"]["auth"], sent["keys"]["p256dh"]):
        assert value not in record.keys_encrypted and value not in repr(record)

    # bob, and an unknown id, get the same AUTH_002.
    await running.deployment.create_user("bob", PASSWORD)
    bob = await login(running.gateway.url, "bob", PASSWORD)
    assert (await api("GET", url(running), token=bob)).body["subscriptions"] == []
    for method, path in (("PATCH", f"/{view['id']}"), ("DELETE", f"/{view['id']}")):
        refused = await api(method, url(running, path), {"events": ALL}, bob)
        assert (refused.status, refused.body["error"]["code"]) == (403, "AUTH_002")
    unknown = await api("DELETE", url(running, "/nope"), token=running.token)
    assert (unknown.status, unknown.body["error"]["code"]) == (403, "AUTH_002")

    assert (await api("DELETE", url(running, f"/{view['id']}"), token=running.token)).status == 200
    assert (await api("GET", url(running), token=running.token)).body["subscriptions"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"subscription": {"endpoint": "http://127.0.0.1:1/p"}},
        {"subscription": {"endpoint": "not a url", "keys": {"p256dh": "A" * 87, "auth": "B" * 22}}},
        {"subscription": {"endpoint": "http://h/p", "keys": {"p256dh": "short", "auth": "B" * 22}}},
        {"subscription": {"endpoint": "http://h/p", "keys": {"p256dh": "A" * 87, "auth": "B" * 22}},
         "events": ["task.exploded"]},
        {"subscription": {"endpoint": "http://h/p", "keys": {"p256dh": "A" * 87, "auth": "B" * 22}},
         "events": []},
    ],
)  # fmt: skip
async def test_what_does_not_validate_is_refused(running: Running, body: dict[str, Any]) -> None:
    refused = await api("POST", url(running), body, running.token)
    assert (refused.status, refused.body["error"]["code"]) == (400, "PARAM_001"), refused.text
    assert (await api("GET", url(running), token=running.token)).body["subscriptions"] == []


async def test_a_gateway_takes_only_https_endpoints_by_default(deployment: Deployment) -> None:
    deployment.extra_env.pop("ORCHESTRA_PUSH_INSECURE_ENDPOINTS")  # this module's mark
    await deployment.create_user("alice", PASSWORD)
    gateway = await deployment.start_gateway("gw1")
    token = await login(gateway.url, "alice", PASSWORD)
    body = {"subscription": Device.new().subscription("http://push.example.com/p")}
    refused = await api("POST", f"{gateway.url}/api/push/subscriptions", body, token)
    assert (refused.status, refused.body["error"]["code"]) == (400, "PARAM_001")
    assert "https" in refused.body["error"]["message"]
    key = await ok("GET", f"{gateway.url}/api/push/key", token=token)
    assert len(key["publicKey"]) == 87  # 65 bytes, base64url: a P-256 public key
    # Made at first start, kept in the data folder: the same after a restart.
    gateway.stop()
    gateway = await deployment.start_gateway("gw1")
    assert await ok("GET", f"{gateway.url}/api/push/key", token=token) == key


@FAKE_TOOLS
async def test_a_prompt_and_a_turns_end_reach_the_devices_that_want_them(
    running: Running, push: PushService, tmp_path: Any
) -> None:
    phone, laptop = Device.new(), Device.new()
    await subscribe(running, phone, push.endpoint("phone"))
    await subscribe(running, laptop, push.endpoint("laptop"), events=["task.failed"])
    public_key = (await ok("GET", f"{running.gateway.url}/api/push/key", token=running.token))[
        "publicKey"
    ]
    client = await running.client()
    try:
        # Our fake claude asks to run Bash, then ends its turn once answered.
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        await wait_for(lambda: push.accepted("phone"), what="the prompt's push")
        prompt = push.accepted("phone")[0]
        message = phone.decrypt(prompt.body)
        asked = await client.wait_for_event("worker:permission")
        key = f"{started['taskId']}:{asked['permissionId']}:permission.requested"
        assert message == {
            "kind": "permission.requested",
            "title": "Needs permission: Bash",
            "body": message["body"],
            "url": f"http://127.0.0.1:{running.gateway.port}/#/sessions/{started['sessionId']}",
            "tag": key,
            "sessionId": started["sessionId"],
            "taskId": started["taskId"],
        }
        assert "echo hi > out.txt" in message["body"]
        claims = prompt.vapid_claims(public_key)
        assert claims["aud"] == push.origin and claims["sub"].startswith("mailto:")
        assert prompt.headers["Content-Encoding"] == "aes128gcm"
        assert prompt.headers["Urgency"] == "high" and prompt.headers["Topic"] == topic(key)
        assert int(prompt.headers["TTL"]) > 0

        await answer_request(client, started, asked, "allow")
        await wait_for(lambda: len(push.accepted("phone")) >= 2, what="the turn's end")
        ended = phone.decrypt(push.accepted("phone")[1].body)
        assert (ended["kind"], ended["title"]) == ("input.requested", "Waiting for your input")
        assert ended["tag"].startswith(f"{started['taskId']}:") and ended["url"] == message["url"]
        # The laptop wanted failures only; the stream's entries are all handled by now.
        redis = redis_client.connect(running.deployment.redis_url)
        try:
            await wait_for(lambda: settled(redis), what="every push handled")
        finally:
            await redis.aclose()
        assert push.of("laptop") == []
        assert len(push.of("phone")) == 2
    finally:
        await client.close()


@FAKE_TOOLS
async def test_a_subscription_the_push_service_says_is_gone_is_removed(
    running: Running, push: PushService, tmp_path: Any
) -> None:
    push.answer = lambda name, n: 410
    await subscribe(running, Device.new(), push.endpoint("old"))
    client = await running.client()
    try:
        await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        await wait_for(lambda: push.of("old"), what="the push")
        await wait_for(
            lambda: _none_left(running), what="the subscription to be removed", timeout_s=30
        )
        assert len(push.of("old")) == 1, "a gone subscription is not tried again"
        assert "the subscription is gone" in running.gateway.log()
        assert push.token not in running.deployment.logs()
    finally:
        await client.close()


async def _none_left(running: Running) -> bool:
    listed = await api("GET", url(running), token=running.token)
    return listed.body["subscriptions"] == []
