"""Scrolling a long session back in the console (a real gateway, Redis, agent and worker,
and Debian's Chromium): the page keeps at most 10,000 entries; scrolled to the top it
reads the earlier ones over REST (`before=`), from the SQL archive and the Redis stream,
without the view jumping, until the session's first line; back at the bottom, or with
"Jump to newest", the live lines come again, each once, in order.

Screenshots go to `test-artifacts/console/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestra import keys, redis_client
from tests.console.conftest import needs_chromium, signed_in
from tests.e2e.test_rest import ok
from tests.support.processes import Deployment, wait_for
from tests.support.running import Running

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
LINES = 30_000
KEPT = 10_000  # the most entries the page keeps
CAP = 4_000  # the stream's; the rest of the history is in the SQL archive

pytestmark = [pytest.mark.sqlite_only, needs_chromium]

# The lines the page shows, in its order (textContent: blocks out of view are not laid out).
_SHOWN = "[...document.querySelectorAll('.log pre.line')].map((e) => e.textContent)"

# Scrolls the log to its top (as a user dragging the scrollbar there would) and marks the
# first line, to find it again; its distance from the top of the log.
_TO_TOP = """() => {
  const log = document.querySelector('.log');
  for (const old of log.querySelectorAll('[data-mark]')) delete old.dataset.mark;
  log.scrollTop = 0;
  const first = log.querySelector('pre.line');
  first.dataset.mark = '1';
  return first.getBoundingClientRect().top - log.getBoundingClientRect().top;
}"""

_MARKED_AT = """() => {
  const log = document.querySelector('.log');
  const marked = log.querySelector('[data-mark]');
  return marked.getBoundingClientRect().top - log.getBoundingClientRect().top;
}"""

_TO_BOTTOM = "document.querySelector('.log').scrollTop = 1e9"

# Resolves after two frames: whatever the browser lays out late (blocks coming into view)
# has been laid out by then.
_FRAMES = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


@pytest.fixture
def deployment(deployment: Deployment) -> Deployment:
    deployment.extra_env.update(
        ORCHESTRA_SESSION_STREAM_MAX_EVENTS=str(CAP), ORCHESTRA_STREAM_TRIM_INTERVAL_S="0.5"
    )
    return deployment


def consecutive(shown: list[str]) -> bool:
    """`line a` .. `line b`, each once, in order."""
    if not shown:
        return False
    start = int(shown[0].removeprefix("line "))
    return shown == [f"line {n}" for n in range(start, start + len(shown))]


async def test_scrolling_back_to_the_first_line_and_returning_to_live_ones(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url, token = running.gateway.url, running.token
    client = await running.client()
    redis = redis_client.connect(running.deployment.redis_url)
    try:
        started = await client.ok(
            "worker:start",
            {
                "agentId": running.agent_id,
                "tool": "custom",
                # The history, then a line for each line of input: the live ones.
                "command": f"seq -f 'line %g' 1 {LINES}; while read l; do echo \"live $l\"; done",
                "workingDirectory": str(tmp_path),
            },
        )
        sid = started["sessionId"]
        stream = keys.session_events(sid, running.deployment.partitions)

        async def printed_and_trimmed() -> bool:
            newest = await ok(
                "GET", f"{url}/api/sessions/{sid}/events?before={2**63 - 1}&limit=1", None, token
            )
            printed = [e["data"].get("data") for e in newest["events"]] == [f"line {LINES}"]
            return printed and int(await redis.xlen(stream)) <= CAP

        await wait_for(
            printed_and_trimmed, what="every line printed, the stream trimmed", timeout_s=240
        )

        page, errors = await signed_in(browser, running)
        await page.goto(f"{url}/#/s/{sid}")
        log = page.get_by_role("log")
        await log.get_by_text(f"line {LINES}", exact=True).wait_for(timeout=120_000)
        shown = await page.evaluate(_SHOWN)
        assert consecutive(shown) and shown[-1] == f"line {LINES}"
        assert len(shown) <= KEPT

        # To the top, again and again: each time the page before is read and put above,
        # and the line that was at the top stays where it was.
        for _ in range(LINES // 250):
            first = shown[0]
            if first == "line 1":
                break
            was_at = await page.evaluate(_TO_TOP)
            await page.wait_for_function(
                "(first) => document.querySelector('.log pre.line').textContent !== first",
                arg=first,
            )
            await page.evaluate(_FRAMES)
            assert abs(await page.evaluate(_MARKED_AT) - was_at) < 2, "the view jumped"
            shown = await page.evaluate(_SHOWN)
            assert consecutive(shown) and len(shown) <= KEPT
            assert int(shown[0].removeprefix("line ")) < int(first.removeprefix("line "))
        assert shown[0] == "line 1"
        await page.evaluate("document.querySelector('.log').scrollTop = 0")
        await log.get_by_text("Beginning of the session").wait_for()
        await page.screenshot(path=str(ARTIFACTS / "scrollback-1-first-line.png"))

        # Far back, the page no longer follows: a live line is counted, not shown...
        box = page.get_by_label("Input to the worker")
        await box.fill("alpha")
        await box.press("Enter")
        await page.get_by_text("1 new entry below").wait_for()
        assert await log.get_by_text("live alpha").count() == 0
        # ...until the user scrolls down to it: page by page, then live again.
        for _ in range(LINES // 250):
            if await log.get_by_text("live alpha", exact=True).count():
                break
            last = (await page.evaluate(_SHOWN))[-1]
            await page.evaluate(_TO_BOTTOM)
            await page.wait_for_function(
                "(last) => [...document.querySelectorAll('.log pre.line')].pop().textContent"
                " !== last",
                arg=last,
            )
            await page.evaluate(_FRAMES)
        await log.get_by_text("live alpha", exact=True).wait_for()
        shown = await page.evaluate(_SHOWN)
        assert consecutive(shown[:-1]) and shown[-2:] == [f"line {LINES}", "live alpha"]
        assert len(shown) <= KEPT
        # At the bottom, the page follows: each new line shows as it comes.
        await page.evaluate(_TO_BOTTOM)
        await box.fill("beta")
        await box.press("Enter")
        await log.get_by_text("live beta", exact=True).wait_for()

        # Back again, and "Jump to newest": the newest page, and what came meanwhile.
        for _ in range(LINES // 250):
            shown = await page.evaluate(_SHOWN)
            if int(shown[0].removeprefix("line ")) < LINES - KEPT:
                break
            await page.evaluate(_TO_TOP)
            await page.wait_for_function(
                "(first) => document.querySelector('.log pre.line').textContent !== first",
                arg=shown[0],
            )
            await page.evaluate(_FRAMES)
        await page.get_by_text("Newer entries are not shown").wait_for()
        await box.fill("gamma")
        await box.press("Enter")
        await page.get_by_text("1 new entry below").wait_for()
        # On a phone's screen too, nothing is cut off.
        await page.set_viewport_size({"width": 375, "height": 740})
        await page.screenshot(path=str(ARTIFACTS / "scrollback-2-behind-375px.png"), full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        await page.get_by_role("button", name="Jump to newest").click()
        await log.get_by_text("live gamma", exact=True).wait_for()
        await box.fill("delta")
        await box.press("Enter")
        await log.get_by_text("live delta", exact=True).wait_for()
        await page.screenshot(path=str(ARTIFACTS / "scrollback-3-back-to-live.png"))
        shown = await page.evaluate(_SHOWN)
        live = ["live alpha", "live beta", "live gamma", "live delta"]
        assert shown[-4:] == live and consecutive(shown[:-4]) and shown[-5] == f"line {LINES}"
        assert len(shown) <= KEPT
        # At the bottom: the view follows what arrives.
        assert await page.evaluate(
            "(() => { const l = document.querySelector('.log');"
            " return l.scrollHeight - l.scrollTop - l.clientHeight < 48; })()"
        )
        assert errors == []
    finally:
        await client.close()
        await redis.aclose()


_WINDOW = """
async () => {
  const { EntryWindow, MAX_BLOCKS, BLOCK, justAfter } = await import('/console/scrollback.js');
  const kept = MAX_BLOCKS * BLOCK;
  const id = (n) => `${1000 + Math.floor(n / 3)}-${n % 3}`;
  const entry = (n) => ({ key: id(n), kind: 'line', data: { type: 'stdout', data: `line ${n}` } });
  const same = (w, a, b) =>
    JSON.stringify(w.blocks.flat().map((e) => e.key)) ===
    JSON.stringify(Array.from({ length: b - a }, (_, i) => id(a + i)));
  const out = {};
  // Following at the bottom: at most `kept` entries, the newest; a repeat is not shown twice.
  const w = new EntryWindow();
  for (let n = 0; n < kept + 300; n++) w.live(id(n), entry(n), true);
  w.live(id(kept + 299), entry(kept + 299), true);
  const newest = kept + 300 - w.size;
  out.following = w.size <= kept && w.size > kept - BLOCK && same(w, newest, kept + 300);
  out.head = w.headId === id(newest) && w.tailId === id(kept + 299) && !w.atStart;
  // Scrolled up with the window full: a live entry stops the following, it is counted.
  for (let n = kept + 300; n < kept + 400; n++) w.live(id(n), entry(n), true);
  w.live(id(kept + 400), entry(kept + 400), false);
  out.detached = !w.following && w.missed === 1 && w.tailId === id(kept + 399);
  out.detached &&= same(w, 400, kept + 400);
  // A page before the head: put above; the newest blocks go; the rest stays in order.
  w.prepend(Array.from({ length: 300 }, (_, i) => entry(100 + i)), id(100), true);
  out.prepended = w.size <= kept && same(w, 100, 100 + w.size) && w.headId === id(100);
  out.tail = w.tailId === id(99 + w.size) && w.liveLastId === id(kept + 400);
  // Catching up: the live entries held aside go on after the newest page, each once.
  w.startCatchUp();
  for (let n = kept + 398; n < kept + 405; n++) w.live(id(n), entry(n), false);
  const page = Array.from({ length: 501 }, (_, i) => entry(kept - 100 + i));
  w.reset(page, id(kept - 100), true, id(kept + 400));
  w.caughtUp(true);
  out.caught = same(w, kept - 100, kept + 405);
  out.follows = w.following && w.tailId === id(kept + 404) && w.missed === 0;
  out.justAfter = justAfter('1700000000000-41') === '1700000000000-42';
  // Too much held aside: the window does not follow again, so nothing is skipped.
  const v = new EntryWindow();
  for (let n = 0; n < 10; n++) v.live(id(n), entry(n), true);
  v.following = false;
  v.startCatchUp();
  for (let n = 10; n < 5012; n++) v.live(id(n), entry(n), true);
  out.overflow = v.caughtUp(true) === false && !v.following && same(v, 0, 10);
  return out;
}
"""


async def test_the_window_shows_each_entry_once_in_order(browser: Any, running: Running) -> None:
    page = await browser.new_page()
    await page.goto(running.gateway.url + "/")
    checks = await page.evaluate(_WINDOW)
    assert checks == dict.fromkeys(checks, True) and len(checks) == 9, checks
