"""Web Push from the console's page in Chromium: the page subscribes, a permission request
is pushed through a push service the test serves, once, though the gateway node that was
pushing it is killed, and the page's service worker shows it.

Chromium's own push service (Google's) cannot be reached from here, so the page's
`PushManager` is given the test's push service instead (an init script): the keys are
made by the page's WebCrypto, as a browser makes them, and the endpoint is the test's.
What the push service receives is then handed to the page's real service worker over the
DevTools protocol (`ServiceWorker.deliverPushMessage`), as Chromium does with a push.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.web_push import GROUP, topic
from orchestra import keys, redis_client
from tests.console.conftest import needs_chromium, signed_in
from tests.support.ai import FAKE_TOOLS, start_ai
from tests.support.console import sign_in
from tests.support.processes import Deployment, wait_for
from tests.support.push import HELD, Device, serve_push, settled
from tests.support.running import PASSWORD, Running
from tests.support.web import WebClient, login

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"

pytestmark = [pytest.mark.sqlite_only, needs_chromium]

# The page's PushManager, pointed at the test's push service.
SHIM = """
(() => {
  const state = { subscription: null, privateJwk: null, auth: null };
  window.__testPush = state;
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  PushManager.prototype.subscribe = async function (options) {
    const pair = await crypto.subtle.generateKey(
      { name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
    const raw = await crypto.subtle.exportKey("raw", pair.publicKey);
    const auth = crypto.getRandomValues(new Uint8Array(16));
    state.privateJwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
    state.auth = b64(auth);
    const json = { endpoint: ENDPOINT, expirationTime: null,
                   keys: { p256dh: b64(raw), auth: b64(auth) } };
    state.subscription = {
      endpoint: ENDPOINT,
      options: { userVisibleOnly: options.userVisibleOnly,
                 applicationServerKey: options.applicationServerKey.buffer },
      toJSON: () => json,
      unsubscribe: async () => { state.subscription = null; return true; },
    };
    return state.subscription;
  };
  PushManager.prototype.getSubscription = async function () { return state.subscription; };
})();
"""

# The notifications the page's service worker shows with a tag.
SHOWN = """async (tag) => (await (await navigator.serviceWorker.ready).getNotifications({tag}))
    .map((n) => ({title: n.title, tag: n.tag, body: n.body, data: n.data}))"""


async def holder(redis: Redis) -> str | None:
    pending = await redis.xpending_range(keys.webhook_events(), GROUP, "-", "+", 10)
    return str(pending[0]["consumer"]) if pending else None


@FAKE_TOOLS
@pytest.mark.orchestra_env(
    ORCHESTRA_WEBHOOK_CLAIM_IDLE_S="2", ORCHESTRA_PUSH_INSECURE_ENDPOINTS="true"
)
async def test_a_prompt_is_pushed_to_the_page_once_across_a_node_kill(
    browser: Any, deployment: Deployment, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateways = [await deployment.start_gateway(node) for node in ("gw1", "gw2")]
    # The agent knows both nodes: whichever dies, it goes on through the other.
    deployment.start_agent(agent_id, secret_file, ",".join(g.url for g in gateways))
    redis = redis_client.connect(deployment.redis_url)
    async with serve_push() as push:
        context = await browser.new_context(viewport={"width": 375, "height": 740})
        origin = gateways[0].url
        await context.grant_permissions(["notifications"], origin=origin)
        await context.add_init_script(SHIM.replace("ENDPOINT", json.dumps(push.endpoint("p"))))
        page = await context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            await sign_in(page, origin, "alice")
            await turn_on(page)
            device = Device.from_jwk(
                await page.evaluate("window.__testPush.privateJwk"),
                await page.evaluate("window.__testPush.auth"),
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "8-notifications-375px.png"), full_page=True)

            # The first push is held unanswered by the push service, its node killed.
            push.answer = lambda name, n: HELD if n == 0 else 201
            started = await start_permission(gateways[1].url, agent_id, tmp_path)
            await wait_for(lambda: push.of("p"), what="the first push", timeout_s=60)
            held_by = await wait_for(lambda: holder(redis), what="the node holding the push")
            dead = next(g for g in gateways if g.name == f"gateway-{held_by}")
            dead.kill()
            survivor = next(g for g in gateways if g is not dead)
            await wait_for(lambda: push.accepted("p"), what="the survivor's push", timeout_s=60)
            await wait_for(lambda: settled(redis), what="the entry to be acknowledged")
            assert len(push.accepted("p")) == 1, "pushed once"
            assert "took over entry" in survivor.log()
            first, taken = push.of("p")[0], push.accepted("p")[0]
            # A repeat carries the same topic: a push service keeps one of them for a device.
            assert first.headers["Topic"] == taken.headers["Topic"]
            message = device.decrypt(taken.body)
            assert message["kind"] == "permission.requested"
            assert message["sessionId"] == started["sessionId"]
            assert message["title"] == "Needs permission: Bash"
            assert taken.headers["Topic"] == topic(message["tag"])

            # The page's service worker shows it, and a repeat replaces rather than doubles.
            shown = await deliver(page, origin, message)
            assert [(n["title"], n["tag"]) for n in shown] == [(message["title"], message["tag"])]
            assert shown[0]["data"]["url"].endswith(f"#/sessions/{started['sessionId']}")
            assert len(await deliver(page, origin, message)) == 1
            # Where the killed node was the page's, its reconnection attempts fail: expected.
            assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e] == []
        finally:
            await context.close()
            await redis.aclose()


async def turn_on(page: Any) -> None:
    await page.get_by_role("link", name="Notifications").click()
    await page.get_by_role("checkbox", name="A task is done").uncheck()
    await page.get_by_role("button", name="Turn on for this device").click()
    await page.get_by_text("This device gets notifications.").wait_for()
    await page.get_by_text("(this device)").wait_for()


async def start_permission(url: str, agent_id: str, workdir: Path) -> dict[str, Any]:
    client = WebClient()
    await client.connect(url, await login(url, "alice", PASSWORD))
    try:
        await wait_for(lambda: client.agent_status_is("online", agent_id), what="the agent")
        # Our fake claude asks to run Bash (tests/fixtures/bin/claude, scenario permission).
        started, _ = await start_ai(client, agent_id, workdir, "scenario: permission", join=False)
        return started
    finally:
        await client.close()


async def deliver(page: Any, origin: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand a push's payload to the page's service worker; the notifications it shows."""
    cdp = await page.context.new_cdp_session(page)
    registrations: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(r["registrationId"] for r in event["registrations"]),
    )
    await cdp.send("ServiceWorker.enable")
    await wait_for(lambda: registrations, what="the service worker's registration")
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": registrations[0], "data": json.dumps(message)},
    )
    shown: list[dict[str, Any]] = await wait_for(
        lambda: page.evaluate(SHOWN, message["tag"]), what="the notification"
    )
    await cdp.detach()
    return shown


@FAKE_TOOLS
async def test_a_hidden_page_shows_a_prompt_of_a_session_it_watches(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    """Without push, the page itself tells of a prompt while its tab is hidden."""
    page, errors = await signed_in(browser, running)
    await page.context.grant_permissions(["notifications"], origin=running.gateway.url)
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: plain")
        await page.goto(f"{running.gateway.url}/#/sessions/{started['sessionId']}")
        await page.get_by_role("log").get_by_text("turn done").wait_for()
        await page.evaluate(
            """() => Object.defineProperty(document, "visibilityState",
                                           {configurable: true, get: () => "hidden"})"""
        )
        await client.ok(
            "worker:input", {"taskId": started["taskId"], "input": "scenario: permission"}
        )
        asked = await client.wait_for_event("worker:permission")
        tag = f"{started['taskId']}:{asked['permissionId']}:permission.requested"
        shown = await wait_for(lambda: page.evaluate(SHOWN, tag), what="the page's notification")
        assert shown[0]["title"] == "Needs permission: Bash"
        assert shown[0]["data"]["url"] == f"/#/sessions/{started['sessionId']}"
        assert errors == []
    finally:
        await client.close()
