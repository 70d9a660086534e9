"""Delivering session event streams to the web sockets of this node (DESIGN.md §4).

Each socket watching a session has a cursor: the last eventId it was sent. Joining replays
the stream after the client's `lastEventId` straight to that socket, then hands it to the
session's tailer, which reads the stream as it grows (one blocking XREAD per watched
session) and sends each socket only what lies past its cursor. Replay and live delivery of
one session take turns under one lock, so a socket gets every event once and in order,
whatever pub/sub would have dropped, and wherever the event was written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors import streams
from orchestra import keys
from orchestra.aio import cancel_and_wait

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (socket, event, data)

_PAGE = 1000


def parse_id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def valid_id(event_id: str) -> bool:
    try:
        parse_id(event_id)
    except ValueError:
        return False
    return True


class SessionFeed:
    def __init__(self, redis: Redis, send: Send) -> None:
        self.redis = redis
        self.send = send
        self._cursors: dict[str, dict[str, tuple[int, int]]] = {}  # session -> socket -> cursor
        self._locks: dict[str, asyncio.Lock] = {}
        self._tailers: dict[str, asyncio.Task[None]] = {}

    def is_resumable(self, state: dict[str, Any], last_event_id: str) -> bool:
        """False when events after `last_event_id` may have been trimmed from the stream."""
        if not valid_id(last_event_id):
            return False
        trimmed_to = state.get("trimmedTo")
        return not trimmed_to or parse_id(last_event_id) >= parse_id(str(trimmed_to))

    async def join(self, session_id: str, socket: str, last_event_id: str | None) -> str | None:
        """Replay what `socket` missed, then keep it live. Returns the last eventId sent."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            start = f"({last_event_id}" if last_event_id else "-"
            last = last_event_id
            while True:
                page = await streams.xrange(
                    self.redis, keys.session_events(session_id), start, "+", _PAGE
                )
                for entry_id, fields in page:
                    last = entry_id
                    await self._deliver(socket, last, fields)
                if len(page) < _PAGE:
                    break
                start = f"({last}"
            cursor = parse_id(last) if last else (0, 0)
            self._cursors.setdefault(session_id, {})[socket] = cursor
            if session_id not in self._tailers:
                self._tailers[session_id] = asyncio.create_task(
                    self._tail(session_id, last or "0-0"), name=f"feed-{session_id}"
                )
        return last

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
        stream = keys.session_events(session_id)
        delay_s = 0.1
        while True:
            try:
                entries = await streams.xread(self.redis, stream, cursor, _PAGE, block_ms=5000)
                delay_s = 0.1
            except RedisError as exc:
                log.warning("feed of session %s: %s; retrying in %.1f s", session_id, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if not entries:
                continue
            lock = self._locks.get(session_id)
            if lock is None:
                return
            async with lock:
                watchers = self._cursors.get(session_id, {})
                for event_id, fields in entries:
                    position = parse_id(event_id)
                    for socket, seen in list(watchers.items()):
                        if position > seen:
                            watchers[socket] = position
                            await self._deliver(socket, event_id, fields)
                cursor = entries[-1][0]

    async def _deliver(self, socket: str, event_id: str, fields: dict[str, str]) -> None:
        event = fields.get("event", "")
        data = json.loads(fields.get("data") or "{}")
        data["eventId"] = event_id
        try:
            await self.send(socket, event, data)
        except Exception:
            log.exception("sending %s to %s failed", event, socket)
