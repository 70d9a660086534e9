"""Delivering session event streams to the web sockets of this node (DESIGN.md §4).

Each socket watching a session has a cursor: the last eventId it was sent. Joining replays
the stream after the client's `lastEventId` straight to that socket, then hands it to the
session's tailer, which reads the stream as it grows (one blocking XREAD per watched
session) and sends each socket only what lies past its cursor. Replay and live delivery of
one session take turns under one lock, so a socket gets every event once and in order,
whatever pub/sub would have dropped, and wherever the event was written.

The stream is capped (`actors/trim.py`). A join whose `lastEventId` is older than what the
stream keeps replays nothing (the client resyncs from REST); a replay or a tailer that
trimming overtakes while it runs goes on from the SQL archive (`gateway/history.py`), so
neither skips an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway.history import Event, History, resumable
from orchestra.aio import cancel_and_wait
from orchestra.codec import parse_event_id
from orchestra.errors import OrchestraError

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (socket, event, data)

_GATHER_S = 0.002
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Joined:
    """How a join went: `resumed` is False when the stream no longer holds every event
    after the client's lastEventId (nothing was sent: the client must resync)."""

    resumed: bool
    last_event_id: str | None = None


class SessionFeed:
    def __init__(self, history: History, send: Send) -> None:
        self.history = history
        self.send = send
        self._cursors: dict[str, dict[str, tuple[int, int]]] = {}  # session -> socket -> cursor
        self._locks: dict[str, asyncio.Lock] = {}
        self._tailers: dict[str, asyncio.Task[None]] = {}

    async def join(self, session_id: str, socket: str, last_event_id: str | None) -> Joined:
        """Replay what `socket` missed, then keep it live; or nothing, when events after
        `last_event_id` (from the start, without one) have been trimmed from the stream."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            # The first page and `trimmedTo` are read together: whether the client may
            # resume is decided before anything is sent, never halfway through.
            page, trimmed_to = await self.history.live(session_id, last_event_id, _PAGE)
            if not resumable(last_event_id, trimmed_to):
                return Joined(resumed=False)
            last = last_event_id
            while page:
                for event in page:
                    last = event.event_id
                    await self._deliver(socket, event)
                if len(page) < _PAGE:
                    break
                # A trim that passes this cursor meanwhile sends the rest from the archive.
                page = await self.history.page(session_id, last, _PAGE)
            cursor = parse_event_id(last) if last else (0, 0)
            self._cursors.setdefault(session_id, {})[socket] = cursor
            if session_id not in self._tailers:
                self._tailers[session_id] = asyncio.create_task(
                    self._tail(session_id, last or "0-0"), name=f"feed-{session_id}"
                )
        return Joined(resumed=True, last_event_id=last)

    async def leave(self, session_id: str, socket: str) -> None:
        watchers = self._cursors.get(session_id)
        if watchers is not None:
            watchers.pop(socket, None)
            if not watchers:
                await self._stop(session_id)

    async def drop_socket(self, socket: str) -> None:
        for session_id in [s for s, w in self._cursors.items() if socket in w]:
            await self.leave(session_id, socket)

    async def close(self) -> None:
        for session_id in list(self._tailers):
            await self._stop(session_id)

    async def _stop(self, session_id: str) -> None:
        self._cursors.pop(session_id, None)
        self._locks.pop(session_id, None)
        task = self._tailers.pop(session_id, None)
        if task is not None:
            await cancel_and_wait(task)

    async def _tail(self, session_id: str, cursor: str) -> None:
        delay_s = 0.1
        while True:
            try:
                events = await self.history.follow(session_id, cursor, _PAGE, block_ms=5000)
                delay_s = 0.1
            except (RedisError, OrchestraError) as exc:  # OrchestraError: the SQL archive
                log.warning("feed of session %s: %s; retrying in %.1f s", session_id, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if not events:
                continue
            lock = self._locks.get(session_id)
            if lock is None:
                return
            async with lock:
                watchers = self._cursors.get(session_id, {})
                for event in events:
                    position = parse_event_id(event.event_id)
                    for socket, seen in list(watchers.items()):
                        if position > seen:
                            watchers[socket] = position
                            await self._deliver(socket, event)
                cursor = events[-1].event_id
            # A moment before the next read lets a burst gather: one read then brings many
            # events instead of one each, for at most this much added delay.
            await asyncio.sleep(_GATHER_S)

    async def _deliver(self, socket: str, event: Event) -> None:
        try:
            # Each socket gets its own copy: the namespace adds the envelope to it.
            await self.send(socket, event.name, dict(event.data))
        except Exception:
            log.exception("sending %s to %s failed", event.name, socket)
