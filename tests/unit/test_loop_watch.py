"""The loop watch names what held the event loop, and stays quiet while nothing does."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from orchestra.loop_watch import LoopWatch, settle_heap
from tests.support.processes import wait_for


def hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # a synchronous call in a coroutine: what the watch is for


def _stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event loop held" in r.getMessage()]


async def test_a_stall_is_reported_with_the_function_that_held_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="orchestra.loop_watch")
    watch = LoopWatch(threshold_s=0.05)
    await watch.start()
    try:
        for _ in range(5):
            await asyncio.sleep(0.01)  # a loop that keeps turning: nothing to say
        assert _stalls(caplog) == []
        hold_the_loop_for(0.3)
        await wait_for(lambda: bool(_stalls(caplog)), interval_s=0.01, what="the report")
    finally:
        await watch.stop()
    (report,) = _stalls(caplog)
    held_ms = float(report.split("held for ")[1].split(" ms")[0])
    assert 200 <= held_ms < 5000, report
    assert "hold_the_loop_for" in report and "test_loop_watch.py" in report, report


async def test_stop_leaves_no_thread_or_gc_hook_behind() -> None:
    watch = LoopWatch(threshold_s=0.05)
    hooks = len(gc.callbacks)
    await watch.start()
    assert len(gc.callbacks) == hooks + 1
    await watch.stop()
    assert len(gc.callbacks) == hooks
    assert watch._thread is not None and not watch._thread.is_alive()


def test_settle_heap_keeps_what_exists_out_of_collections() -> None:
    gc.unfreeze()
    try:
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules, classes and tables of this process
        assert len(gc.get_objects(generation=2)) < frozen // 10
    finally:
        gc.unfreeze()
