"""`ChildProcess`: the descendants that leave its process group are still ended with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from agent_client.workers.process import ChildProcess

from .conftest import eventually

# A shell that starts a sleeper in a session of its own (out of the shell's process group,
# as a tool's shell is), says its pid, and waits for the end of its input.
ESCAPE = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!; read _ || :"


def gone(process: psutil.Process) -> bool:
    """Ended (a zombie waiting for its reaper runs nothing: it counts as ended)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


@pytest_asyncio.fixture
async def escaped(tmp_path: Path) -> AsyncIterator[tuple[ChildProcess, psutil.Process]]:
    """A running shell and the sleeper it started in a new session, noted by the shell's
    `ChildProcess`."""
    proc = await ChildProcess.spawn(["/bin/sh", "-c", ESCAPE], cwd=tmp_path, env=os.environ)
    sleeper: psutil.Process | None = None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        sleeper = psutil.Process(int(line))
        pid = sleeper.pid
        await eventually(lambda: os.getsid(pid) == pid, what="the sleeper's own session")
        await eventually(lambda: pid in proc.descendants, what="the sleeper noted")
        yield proc, sleeper
    finally:
        proc.signal_group(signal.SIGKILL)
        await proc.wait()
        await proc.finish()
        if sleeper is not None:
            with contextlib.suppress(psutil.Error):
                sleeper.kill()


@pytest.mark.parametrize("end", ["exits", "is killed"])
async def test_finish_ends_descendants_that_left_the_group(
    escaped: tuple[ChildProcess, psutil.Process], end: str
) -> None:
    proc, sleeper = escaped
    if end == "exits":
        proc.close_stdin()
    else:
        proc.signal_group(signal.SIGKILL)
    code, _ = await asyncio.wait_for(proc.wait(), 10)
    assert code == (0 if end == "exits" else -signal.SIGKILL)
    assert not gone(sleeper)  # no signal to the group reaches it

    await proc.finish()
    await eventually(lambda: gone(sleeper), what="the sleeper ended")


async def test_finish_can_leave_them_to_kill_descendants_later(
    escaped: tuple[ChildProcess, psutil.Process],
) -> None:
    proc, sleeper = escaped
    proc.close_stdin()
    await asyncio.wait_for(proc.wait(), 10)

    await proc.finish(kill_descendants=False)
    assert not gone(sleeper)
    proc.kill_descendants()
    await eventually(lambda: gone(sleeper), what="the sleeper ended")


async def test_a_reused_pid_is_left_alone(escaped: tuple[ChildProcess, psutil.Process]) -> None:
    proc, sleeper = escaped
    noted = proc._descendants  # as if the sleeper's pid now named a younger process
    noted[sleeper.pid] -= 1.0
    proc.close_stdin()
    await asyncio.wait_for(proc.wait(), 10)

    await proc.finish()
    assert not gone(sleeper)
