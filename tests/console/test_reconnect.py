"""The console across what a laptop goes through: its access token expiring (refreshed,
signed in all along), and a network gone long enough that the session's live stream no
longer holds what the page missed (`session:resync`: the newest page over REST, then live;
what came before it is scrolled back to)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestra import keys, redis_client
from tests.console.conftest import needs_chromium, signed_in
from tests.support.processes import wait_for
from tests.support.running import Running

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"

pytestmark = [pytest.mark.sqlite_only, needs_chromium]


async def stored_token(page: Any) -> str:
    auth = await page.evaluate("localStorage.getItem('orchestra.auth')")
    return str(json.loads(auth)["accessToken"]) if auth else ""


@pytest.mark.orchestra_env(ORCHESTRA_ACCESS_TOKEN_TTL_S="6")
async def test_the_page_stays_signed_in_as_its_access_token_expires(
    browser: Any, running: Running
) -> None:
    page, errors = await signed_in(browser, running)
    seen = [await stored_token(page)]

    async def renewed() -> bool:
        token = await stored_token(page)
        if token and token != seen[-1]:
            seen.append(token)
        return len(seen) >= 3

    # Each token lives 6 s; the page renews it before then, twice over.
    await wait_for(renewed, what="two refreshes", timeout_s=60)
    # Still signed in, over REST and the socket alike.
    await page.get_by_role("link", name="Agents").click()
    await page.get_by_role("cell", name="box").first.wait_for()
    await page.get_by_role("status").filter(has_text="connected").wait_for()
    assert await page.get_by_role("button", name="Sign in").count() == 0
    assert errors == []


@pytest.mark.orchestra_env(
    ORCHESTRA_SESSION_STREAM_MAX_EVENTS="40", ORCHESTRA_STREAM_TRIM_INTERVAL_S="0.5"
)
async def test_a_page_offline_past_the_live_stream_resyncs_every_line_once(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    page, errors = await signed_in(browser, running)
    go = tmp_path / "go"
    lines = 1500  # three pages of history: the page reads the newest, not all of it
    # Ten lines, then the rest once the test says so (while the page is offline).
    program = (
        "import os, time\n"
        "for n in range(1, 11):\n"
        "    print(f'line {n}', flush=True)\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.05)\n"
        f"for n in range(11, {lines} + 1):\n"
        "    print(f'line {n}', flush=True)\n"
    )
    client = await running.client()
    try:
        started = await client.ok(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom",
             "command": [sys.executable, "-c", program], "workingDirectory": str(tmp_path)},
        )  # fmt: skip
    finally:
        await client.close()
    await page.goto(f"{running.gateway.url}/#/sessions/{started['sessionId']}")
    log = page.get_by_role("log")
    await log.get_by_text("line 10", exact=True).wait_for()

    await page.context.set_offline(True)
    await page.get_by_role("status").filter(has_text="reconnecting").wait_for()
    go.touch()
    redis = redis_client.connect(running.deployment.redis_url)
    stream = keys.session_events(started["sessionId"], running.deployment.partitions)
    try:

        async def trimmed_past_the_page() -> bool:
            first: Any = await redis.xrange(stream, count=1)
            return bool(first) and json.loads(first[0][1]["data"]).get("seq", 0) > 20

        await wait_for(trimmed_past_the_page, what="the stream trimmed past the page's last line")
    finally:
        await redis.aclose()

    history: list[str] = []
    page.on("request", lambda r: history.append(r.url) if "/events" in r.url else None)
    await page.context.set_offline(False)
    await page.get_by_role("status").filter(has_text="connected").wait_for()
    await log.get_by_text(f"line {lines}", exact=True).wait_for(timeout=60_000)
    shown = await log.locator("pre.line").all_text_contents()
    # The newest page and what followed, once each, in order, up to the last line.
    first = int(shown[0].split()[1])
    assert first > 10 and shown == [f"line {n}" for n in range(first, lines + 1)], shown[:3]
    assert [url for url in history if "before=" in url], history
    assert not [url for url in history if "after=" in url], "read forward, page after page"
    # What the page missed before that is scrolled back to, each line once.
    earlier = page.get_by_role("button", name="Load earlier entries")
    beginning = log.get_by_text("Beginning of the session")
    while not await beginning.count():
        await earlier.click()
        await wait_for(
            lambda: _settled(earlier, beginning), what="a page of earlier entries", timeout_s=30
        )
    shown = await log.locator("pre.line").all_text_contents()
    assert shown == [f"line {n}" for n in range(1, lines + 1)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "9-after-resync.png"))
    # While offline the page's socket failed to connect: the browser says so, nothing else.
    assert [e for e in errors if "ERR_INTERNET_DISCONNECTED" not in e] == []


async def _settled(earlier: Any, beginning: Any) -> bool:
    """The page read is over: its button is back (enabled), or there is nothing before."""
    if await beginning.count():
        return True
    return bool(await earlier.count()) and await earlier.is_enabled()
