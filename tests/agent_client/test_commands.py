"""Commands are taken once by commandId, also across a restart of the command log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_client.commands import WINDOW, CommandLog


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
    assert CommandLog(tmp_path / "last-command-id").taken(5)  # not run again when re-sent


def test_an_unreadable_mark_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "last-command-id"
    path.write_text("garbage")
    assert CommandLog(path).last == 0


async def test_a_lower_command_arriving_late_is_still_taken(tmp_path: Path) -> None:
    """Commands for different tasks may be pushed out of their order: the assign numbered 7
    arriving after the one numbered 8 must still start its worker."""
    path = tmp_path / "last-command-id"
    handled: list[int] = []

    async def act(n: int) -> None:
        handled.append(n)

    log = CommandLog(path)
    for n in (1, 2, 3, 4, 5, 6, 8):
        await log.take(n, lambda n=n: act(n))
    assert log.last == 6  # reported at registration: the gateway sends again what is after
    restarted = CommandLog(path)
    assert await restarted.take(8, lambda: act(8)) == {"commandId": 8}  # a re-send
    assert await restarted.take(7, lambda: act(7)) == {"commandId": 7}  # late, not lost
    assert handled == [1, 2, 3, 4, 5, 6, 8, 7]
    assert restarted.last == 8 and path.read_text().strip() == "8"


async def test_a_gap_that_never_fills_is_given_up_after_the_window(tmp_path: Path) -> None:
    """A state folder made anew meets ids far above 1: what lies more than WINDOW below the
    newest id taken is counted as taken, so the record stays small."""
    path = tmp_path / "last-command-id"
    log = CommandLog(path)

    async def nothing() -> None:
        return None

    for n in range(500, 500 + WINDOW + 10):
        await log.take(n, nothing)
    assert log.last == 500 + WINDOW + 9
    assert len(path.read_text().split()) == 1
