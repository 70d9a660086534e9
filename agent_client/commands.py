"""Commands from the gateway, each taken once however often it arrives (PROTOCOL.md §5).

Every command carries an integer `commandId`, strictly increasing per agent. The highest
one taken is kept in `<state dir>/last-command-id` (written atomically) and reported as
`lastCommandId` when the agent registers, so the gateway re-sends only what came after.
A command at or below that mark is a re-send: it is acknowledged again and nothing else.
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


class CommandLog:
    """The durable mark of the last command taken, and the one-at-a-time command lane."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = self._load()
        # One command at a time, in arrival order (asyncio.Lock wakes its waiters in FIFO
        # order): an input must not overtake the assign that starts its task.
        self._lock = asyncio.Lock()

    def _load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return max(0, int(text))
        except ValueError:
            log.error("%s is unreadable (%r); starting from 0", self.path, text[:40])
            return 0

    def record(self, command_id: int) -> None:
        """Move the mark to `command_id`, durably (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temp.open("w") as handle:
            handle.write(f"{command_id}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        self.last = command_id

    async def take(self, command_id: int, action: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        """Run `action` unless this command was taken before; the ack to return either way.

        The mark moves after the action: a crash in between makes the gateway send the
        command again, and the handlers tolerate that (a task already known is not started
        twice), whereas moving it first could lose a command outright.
        """
        async with self._lock:
            if command_id <= self.last:
                log.debug("command %d was taken before: acknowledged again", command_id)
                return {"commandId": command_id}
            try:
                await action()
            except Exception:
                # A command that breaks a handler would break it again when re-sent.
                log.exception("command %d failed; it is not retried", command_id)
            self.record(command_id)
            return {"commandId": command_id}
