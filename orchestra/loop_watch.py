"""Saying when the event loop stalls, and where: a watchdog for a daemon's one thread.

Everything a gateway node or an agent does runs on one event loop, so one callback that
holds it (a long encode, a synchronous SQL call, a garbage collection of a big heap)
delays every socket of the process. A `LoopWatch` notices: a task on the loop stamps a
heartbeat every `tick_s`; a thread beside it looks at the stamp, and when it is older than
`threshold_s` takes the loop thread's stack as it is at that moment. When the loop comes
back, one warning says how long it was held and by what:

    event loop held for 182 ms; at: gateway/feed.py:201 _deliver_frames < ...

Collections of the garbage collector that take longer than the threshold are reported
too (with their generation), since they stop the loop without any frame of ours on the
stack. The watch costs a wake-up every `tick_s` on each side; off by default
(`loop_stall_warn_ms` = 0), on where an operator is after latency.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any

from orchestra.aio import cancel_and_wait
from orchestra.logs import Throttled

__all__ = ["LoopWatch", "settle_heap"]

log = logging.getLogger(__name__)

_STACK_FRAMES = 8


class LoopWatch:
    def __init__(self, threshold_s: float, *, tick_s: float | None = None) -> None:
        self.threshold_s = threshold_s
        self.tick_s = tick_s if tick_s is not None else max(0.005, threshold_s / 5)
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._stalled_at: str | None = None  # where the loop was when the stall was seen
        self._beater: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gc_started = 0.0
        self._log = Throttled(log, interval_s=1.0)

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._beater = asyncio.create_task(self._beat_forever(), name="loop-watch")
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()
        gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        if self._beater is not None:
            await cancel_and_wait(self._beater)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def _beat_forever(self) -> None:
        while True:
            now = time.monotonic()
            held_s = now - self._beat - self.tick_s
            if held_s > self.threshold_s:
                where = self._stalled_at or "(not seen: it ended between two looks)"
                self._log.log(
                    logging.WARNING, "event loop held for %.0f ms; at: %s", held_s * 1000, where
                )
            self._stalled_at = None
            self._beat = now
            await asyncio.sleep(self.tick_s)

    def _watch(self) -> None:
        while not self._stop.wait(self.tick_s):
            if self._stalled_at is None and time.monotonic() - self._beat > (
                self.tick_s + self.threshold_s
            ):
                frame = sys._current_frames().get(self._loop_thread)
                self._stalled_at = _describe(frame)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took_s = time.perf_counter() - self._gc_started
        if took_s > self.threshold_s:
            self._log.log(
                logging.WARNING,
                "garbage collection of generation %s took %.0f ms (%s objects collected)",
                info.get("generation"),
                took_s * 1000,
                info.get("collected"),
            )


def _describe(frame: FrameType | None) -> str:
    """The innermost frames of a stack, innermost first, on one line."""
    if frame is None:
        return "(no stack)"
    # Innermost first; the source lines are not read (they would fill the line cache).
    summary = traceback.StackSummary.extract(
        traceback.walk_stack(frame), limit=_STACK_FRAMES, lookup_lines=False
    )
    return " < ".join(f"{_short(entry.filename)}:{entry.lineno} {entry.name}" for entry in summary)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    parts = path.rsplit("/", 2)
    return "/".join(parts[-2:])


def settle_heap() -> None:
    """Collect once, then leave every object alive now out of later collections.

    A daemon's objects at the end of its start (modules, classes, the libraries' tables:
    about 120,000 in a gateway) live as long as it does, yet every collection of the
    oldest generation walks them all again: 80-250 ms on this project's machines, each
    one holding the event loop, several a second under a stream of output. Frozen
    (`gc.freeze`), they are not walked; what the daemon makes afterwards still is."""
    gc.collect()
    gc.freeze()
