"""Helpers for the agent daemon's unit tests: settings in a temporary state dir, waiting."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestra.settings import Settings


async def eventually(
    predicate: Callable[[], Any], deadline_s: float = 10.0, what: str = "condition"
) -> Any:
    """Poll `predicate` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def make_settings(state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_id": "agent-1",
        "agent_secret": "s3cret-value",
        "agent_name": "test agent",
        "agent_state_dir": state_dir,
        "worker_stop_grace_s": 0.5,
        "reconnect_delay_s": 0.05,
        "reconnect_max_delay_s": 0.2,
        "heartbeat_interval_s": 0.2,
        "connection_timeout_s": 3.0,
        "transports": ("websocket",),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "state")


def group_gone(pgid: int) -> bool:
    """No live process is left in the process group (zombies awaiting their reaper count as
    gone: they run nothing, and an orphan's reaper, pid 1, may take its time)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return False
        except (ProcessLookupError, psutil.Error):
            continue
    return True
