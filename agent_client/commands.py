"""Commands from the gateway, each taken once however often it arrives (PROTOCOL.md §5).

Every command carries an integer `commandId`, strictly increasing per agent as the gateway
numbers them. They do not always arrive in that order: commands for different tasks are
written by different actors, which may run on different partitions and gateway nodes and
push them at the same moment. So the log keeps a mark (every command up to it was taken)
and the ids taken above it; a command at or below the mark, or among those, is a re-send:
acknowledged again and nothing else. Treating a late lower id as a re-send would lose it
(a `task:assign` whose worker never starts). Commands for one task come from one actor and
arrive in order.

The mark and the ids above it are kept in `<state dir>/last-command-id` (written
atomically, the mark first). The mark is reported as `lastCommandId` when the agent
registers, so the gateway re-sends what came after it and was not acknowledged. Ids more
than `WINDOW` below the newest one taken are taken to have come (a state folder made anew
meets the ids of an agent that took commands before), which keeps the file small.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["CommandLog"]

log = logging.getLogger(__name__)


#: how far below the newest command taken a missing one is still waited for
WINDOW = 1024


class CommandLog:
    """The durable record of the commands taken, and the one-at-a-time command lane."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last, self._above = self._load()  # the mark, and the ids taken above it
        # One command at a time, in arrival order (asyncio.Lock wakes its waiters in FIFO
        # order): an input must not overtake the assign that starts its task.
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[int, set[int]]:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0, set()
        try:
            numbers = [int(part) for part in text.split()]
            mark, above = max(0, numbers[0]), {n for n in numbers[1:] if n > numbers[0]}
        except (ValueError, IndexError):
            log.error("%s is unreadable (%r); starting from 0", self.path, text[:40])
            return 0, set()
        return mark, above

    def taken(self, command_id: int) -> bool:
        return command_id <= self.last or command_id in self._above

    def record(self, command_id: int) -> None:
        """Note `command_id` as taken, durably (temp file, fsync, rename)."""
        above = self._above | {command_id}
        mark = max(self.last, command_id - WINDOW)
        while mark + 1 in above:
            mark += 1
        above = {n for n in above if n > mark}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temp.open("w") as handle:
            handle.write(" ".join(str(n) for n in [mark, *sorted(above)]) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        self.last, self._above = mark, above

    async def take(self, command_id: int, action: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        """Run `action` unless this command was taken before; the ack to return either way.

        The record is written after the action: a crash in between makes the gateway send
        the command again, and the handlers tolerate that (a task already known is not
        started twice), whereas writing it first could lose a command outright.
        """
        async with self._lock:
            if self.taken(command_id):
                log.debug("command %d was taken before: acknowledged again", command_id)
                return {"commandId": command_id}
            try:
                await action()
            except Exception:
                # A command that breaks a handler would break it again when re-sent.
                log.exception("command %d failed; it is not retried", command_id)
            self.record(command_id)
            return {"commandId": command_id}
