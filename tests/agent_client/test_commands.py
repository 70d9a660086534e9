"""Commands are taken once by commandId, also across a restart of the command log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_client.commands import CommandLog


def _temp_files(directory: Path) -> list[Path]:
    return list(directory.glob(".*tmp"))


async def test_a_command_is_handled_once_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "last-command-id"
    handled: list[int] = []

    async def act(n: int) -> None:
        handled.append(n)

    log = CommandLog(path)
    assert log.last == 0
    assert await log.take(1, lambda: act(1)) == {"commandId": 1}
    assert await log.take(2, lambda: act(2)) == {"commandId": 2}
    assert await log.take(2, lambda: act(2)) == {"commandId": 2}  # re-sent: acked again
    assert handled == [1, 2]

    restarted = CommandLog(path)  # the daemon restarts
    assert restarted.last == 2
    assert await restarted.take(1, lambda: act(1)) == {"commandId": 1}
    assert await restarted.take(2, lambda: act(2)) == {"commandId": 2}
    assert await restarted.take(3, lambda: act(3)) == {"commandId": 3}
    assert handled == [1, 2, 3]
    assert path.read_text().strip() == "3"
    assert _temp_files(tmp_path) == []


async def test_commands_run_one_at_a_time_in_arrival_order(tmp_path: Path) -> None:
    log = CommandLog(tmp_path / "last-command-id")
    order: list[str] = []
    gate = asyncio.Event()

    async def slow() -> None:
        order.append("1 start")
        await gate.wait()
        order.append("1 end")

    async def fast() -> None:
        order.append("2")

    first = asyncio.create_task(log.take(1, slow))
    second = asyncio.create_task(log.take(2, fast))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, second)
    assert order == ["1 start", "1 end", "2"]


async def test_a_failing_command_is_still_taken(tmp_path: Path) -> None:
    log = CommandLog(tmp_path / "last-command-id")

    async def broken() -> None:
        raise RuntimeError("bug")

    assert await log.take(5, broken) == {"commandId": 5}
    assert CommandLog(tmp_path / "last-command-id").last == 5


def test_an_unreadable_mark_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "last-command-id"
    path.write_text("garbage")
    assert CommandLog(path).last == 0
