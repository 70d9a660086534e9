"""Whether the console stays responsive while a worker floods it, and its memory bounded.

    python -m benchmarks.console_render [--lines 50000] [--rate 2000]

A real gateway, Redis and agent daemon, and the console in Debian's Chromium (Playwright).
A `custom` worker prints `--lines` lines at `--rate` lines/s while the page shows its
session. In the page, a requestAnimationFrame loop records the time between frames (a
frame that took long shows as a long gap), and the JavaScript heap is sampled twice a
second (`performance.memory`, Chromium's). The baseline, measured in the same run with the
same page: the console showing a session with nothing arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from benchmarks._report import percentile, print_table
from orchestra.redis_server import RedisServer
from tests.support.console import sign_in
from tests.support.processes import Deployment
from tests.support.running import Running, start_running

_PROBE = """
window.__frames = []; window.__heap = [];
(() => {
  let last = performance.now();
  const frame = (now) => {
    window.__frames.push(now - last);
    last = now;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const heap = () => performance.memory && window.__heap.push(performance.memory.usedJSHeapSize);
  setInterval(heap, 500);
})();
"""


def _worker(lines: int, rate: int) -> list[str]:
    """Prints `lines` lines at `rate` lines/s, in bursts every 10 ms."""
    program = (
        "import sys, time\n"
        f"lines, rate = {lines}, {rate}\n"
        "start = time.monotonic()\n"
        "n = 0\n"
        "while n < lines:\n"
        "    due = min(lines, int((time.monotonic() - start) * rate) + 1)\n"
        "    while n < due:\n"
        "        n += 1\n"
        "        sys.stdout.write(f'line {n} ' + 'x' * 60 + '\\n')\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(0.01)\n"
    )
    return [sys.executable, "-c", program]


async def _measure(page: Any, seconds: float | None, until: str | None) -> dict[str, Any]:
    await page.evaluate("window.__frames = []; window.__heap = [];")
    started = time.perf_counter()
    if until is not None:
        await page.get_by_role("log").get_by_text(until, exact=True).wait_for(timeout=600_000)
    else:
        await asyncio.sleep(seconds or 5.0)
    took = time.perf_counter() - started
    frames: list[float] = await page.evaluate("window.__frames.slice(1)")
    heap: list[int] = await page.evaluate("window.__heap")
    shown = await page.locator(".log pre.line").count()
    return {"frames": frames, "heap": heap, "seconds": took, "shown": shown}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--baseline-s", type=float, default=10.0)
    args = parser.parse_args()
    chromium = os.environ.get("ORCHESTRA_TEST_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        raise SystemExit("Chromium is needed: apt-get install chromium")
    root = Path(tempfile.mkdtemp(prefix="orchestra-console-render-"))
    async with RedisServer(data_dir=root / "redis", appendonly=False) as redis:
        deployment = Deployment(root / "o", redis.url, f"sqlite+aiosqlite:///{root / 'o.db'}")
        deployment.root.mkdir(parents=True)
        # The stream keeps every line, so the page's replay never needs the archive.
        deployment.extra_env["ORCHESTRA_SESSION_STREAM_MAX_EVENTS"] = str(args.lines + 1000)
        deployment.extra_env["ORCHESTRA_AGENT_RATE_LIMIT_PER_S"] = "1000000"
        try:
            running = await start_running(deployment)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium, args=["--enable-precise-memory-info"]
                )
                page = await _page(browser, running)
                client = await running.client()
                idle = await client.ok(
                    "worker:start",
                    {"agentId": running.agent_id, "tool": "custom",
                     "command": [sys.executable, "-c", "print('ready')"]},
                )  # fmt: skip
                await page.goto(f"{running.gateway.url}/#/s/{idle['sessionId']}")
                await page.get_by_role("log").get_by_text("ready").wait_for()
                baseline = await _measure(page, args.baseline_s, None)

                flood = await client.ok(
                    "worker:start",
                    {"agentId": running.agent_id, "tool": "custom",
                     "command": _worker(args.lines, args.rate)},
                )  # fmt: skip
                await page.goto(f"{running.gateway.url}/#/s/{flood['sessionId']}")
                streaming = await _measure(page, None, f"line {args.lines} " + "x" * 60)
                await client.close()
                await browser.close()
        finally:
            deployment.stop_all()
    _report(args, baseline, streaming)


async def _page(browser: Any, running: Running) -> Any:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    await page.add_init_script(_PROBE)
    await sign_in(page, running.gateway.url)
    return page


def _report(args: argparse.Namespace, baseline: dict[str, Any], streaming: dict[str, Any]) -> None:
    def frame(run: dict[str, Any], fraction: float) -> float:
        return percentile(run["frames"], fraction) if run["frames"] else 0.0

    def mib(values: list[int], pick: Any) -> float | None:
        return pick(values) / 2**20 if values else None

    print(
        f"\n{args.lines:,} lines at {args.rate:,} lines/s took {streaming['seconds']:.1f} s to "
        f"show; the page holds {streaming['shown']:,} of them (the rest are in the history)\n"
    )
    runs = (streaming, baseline)
    rows = [
        ("frame time p50, ms", [frame(run, 0.5) for run in runs], ",.1f"),
        ("frame time p95, ms", [frame(run, 0.95) for run in runs], ",.1f"),
        ("frame time max, ms", [max(run["frames"] or [0]) for run in runs], ",.1f"),
        ("frames measured", [len(run["frames"]) for run in runs], ",.0f"),
        ("JS heap at the end, MiB", [mib(run["heap"], lambda v: v[-1]) for run in runs], ",.1f"),
        ("JS heap peak, MiB", [mib(run["heap"], max) for run in runs], ",.1f"),
    ]
    print_table(["streaming", "idle page (baseline)"], "streaming / idle", rows)
    p95 = frame(streaming, 0.95)
    verdict = "under" if p95 < 50 else "OVER"
    print(f"\nframe time p95 while streaming: {p95:.1f} ms, {verdict} the 50 ms goal")


if __name__ == "__main__":
    asyncio.run(main())
