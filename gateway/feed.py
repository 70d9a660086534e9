"""Delivering session event streams to the web sockets of this node (DESIGN.md §4).

Each socket watching a session has a cursor: the last eventId it was sent. Joining replays
the stream after the client's `lastEventId` straight to that socket, then hands it to the
session's tailer, which reads the stream as it grows (one blocking XREAD per watched
session) and sends each socket only what lies past its cursor. Replay and live delivery of
one session take turns under one lock, so a socket gets every event once and in order,
whatever pub/sub would have dropped, and wherever the event was written.

A socket that joined with `batch: true` gets the same events as `session:events` frames
(`{sessionId, events: [{event, data}]}`): each burst the tailer reads, and each page of a
replay, as few frames as `frames` cuts it into. The sockets of one burst that had the
same cursor share each frame: it is built, enveloped, compressed and encoded once for
them all (`SendFrame`), not once per socket.

The stream is capped (`actors/trim.py`). A join whose `lastEventId` is older than what the
stream keeps replays nothing (the client resyncs from REST); a replay or a tailer that
trimming overtakes while it runs goes on from the SQL archive (`gateway/history.py`), so
neither skips an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway.history import Event, History, resumable
from orchestra import metrics
from orchestra.aio import cancel_and_wait
from orchestra.codec import parse_event_id, parse_timestamp
from orchestra.errors import OrchestraError
from orchestra.frames import FRAME_EVENT

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (socket, event, data)
# (sockets, event, data): one payload for several sockets, encoded once
SendFrame = Callable[[Sequence[str], str, dict[str, Any]], Awaitable[None]]

#: A frame holds at most this many events, and this many bytes of JSON give or take one
#: event (a frame always holds at least one): big enough that framing costs nothing per
#: event, small enough that encoding one frame does not hold the loop for long.
FRAME_MAX_EVENTS = 1000
FRAME_MAX_BYTES = 512 * 1024

_GATHER_S = 0.002
_PAGE = 1000
#: How long one read of an idle session's stream waits. Well under redis-py's socket
#: timeout (5 s by default in the redis-py we use), which otherwise ends each idle wait with a
#: timeout error, a dropped connection and a warning.
_IDLE_WAIT_MS = 2000


@dataclass(frozen=True, slots=True)
class Joined:
    """How a join went: `resumed` is False when the stream no longer holds every event
    after the client's lastEventId (nothing was sent: the client must resync)."""

    resumed: bool
    last_event_id: str | None = None


class SessionFeed:
    def __init__(self, history: History, send: Send, send_frame: SendFrame) -> None:
        self.history = history
        self.send = send
        self.send_frame = send_frame
        self._cursors: dict[str, dict[str, tuple[int, int]]] = {}  # session -> socket -> cursor
        self._batched: dict[str, set[str]] = {}  # session -> sockets that take frames
        self._locks: dict[str, asyncio.Lock] = {}
        self._tailers: dict[str, asyncio.Task[None]] = {}

    async def join(
        self, session_id: str, socket: str, last_event_id: str | None, *, batch: bool = False
    ) -> Joined:
        """Replay what `socket` missed, then keep it live; or nothing, when events after
        `last_event_id` (from the start, without one) have been trimmed from the stream.
        With `batch`, the socket gets both as `session:events` frames (until it joins
        again without)."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            # The first page and `trimmedTo` are read together: whether the client may
            # resume is decided before anything is sent, never halfway through.
            page, trimmed_to = await self.history.live(session_id, last_event_id, _PAGE)
            if not resumable(last_event_id, trimmed_to):
                return Joined(resumed=False)
            last = last_event_id
            while page:
                if batch:
                    await self._deliver_frames(session_id, [socket], page)
                    last = page[-1].event_id
                else:
                    for event in page:
                        last = event.event_id
                        await self._deliver(socket, event)
                if len(page) < _PAGE:
                    break
                # A trim that passes this cursor meanwhile sends the rest from the archive.
                page = await self.history.page(session_id, last, _PAGE)
            cursor = parse_event_id(last) if last else (0, 0)
            self._cursors.setdefault(session_id, {})[socket] = cursor
            if batch:
                self._batched.setdefault(session_id, set()).add(socket)
            else:
                self._batched.get(session_id, set()).discard(socket)
            if session_id not in self._tailers:
                self._tailers[session_id] = asyncio.create_task(
                    self._tail(session_id, last or "0-0"), name=f"feed-{session_id}"
                )
        return Joined(resumed=True, last_event_id=last)

    async def leave(self, session_id: str, socket: str) -> None:
        watchers = self._cursors.get(session_id)
        if watchers is not None:
            watchers.pop(socket, None)
            self._batched.get(session_id, set()).discard(socket)
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
        self._batched.pop(session_id, None)
        lock = self._locks.get(session_id)
        if lock is not None and not lock.locked():
            # A held lock stays: a join replaying under it starts the next tailer, which
            # must take turns with later joins under that same lock.
            del self._locks[session_id]
        task = self._tailers.pop(session_id, None)
        if task is not None:
            await cancel_and_wait(task)

    async def _tail(self, session_id: str, cursor: str) -> None:
        delay_s = 0.1
        while True:
            try:
                events = await self.history.follow(
                    session_id, cursor, _PAGE, block_ms=_IDLE_WAIT_MS
                )
                delay_s = 0.1
            except (RedisError, OrchestraError) as exc:  # OrchestraError: the SQL archive
                log.warning("feed of session %s: %s; retrying in %.1f s", session_id, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            except Exception:
                # A bug (or a client library's surprise) must not silence the session on
                # this node for good: say so and read again.
                log.exception("feed of session %s failed; retrying in %.1f s", session_id, delay_s)
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
                batched = self._batched.get(session_id)
                if batched:
                    # Their cursors move past the burst: the loop below skips them.
                    await self._frame_burst(session_id, watchers, batched, events)
                if not batched or len(batched) < len(watchers):  # sockets of single events
                    for event in events:
                        position = parse_event_id(event.event_id)
                        for socket, seen in list(watchers.items()):
                            if position > seen:
                                watchers[socket] = position
                                await self._deliver(socket, event)
                if watchers:
                    _time_output(events)
                cursor = events[-1].event_id
            # A moment before the next read lets a burst gather: one read then brings many
            # events instead of one each, for at most this much added delay.
            await asyncio.sleep(_GATHER_S)

    async def _frame_burst(
        self,
        session_id: str,
        watchers: dict[str, tuple[int, int]],
        batched: set[str],
        events: list[Event],
    ) -> None:
        """Send each batch-mode socket the part of `events` past its cursor, in frames
        shared by the sockets whose part begins at the same event (usually all of them)."""
        positions = [parse_event_id(event.event_id) for event in events]
        starts: dict[int, list[str]] = {}
        for socket in list(batched):
            seen = watchers.get(socket)
            if seen is None:
                continue
            start = bisect_right(positions, seen)  # eventIds strictly increase
            if start < len(events):
                starts.setdefault(start, []).append(socket)
                watchers[socket] = positions[-1]
        for start, sockets in starts.items():
            await self._deliver_frames(session_id, sockets, events[start:] if start else events)

    async def _deliver(self, socket: str, event: Event) -> None:
        try:
            # Each socket gets its own copy: the namespace adds the envelope to it.
            await self.send(socket, event.name, dict(event.data))
        except Exception:
            log.exception("sending %s to %s failed", event.name, socket)

    async def _deliver_frames(
        self, session_id: str, sockets: Sequence[str], events: Sequence[Event]
    ) -> None:
        for chunk in frames(events):
            # The events' data go in as they are: nothing downstream changes them.
            frame = {
                "sessionId": session_id,
                "events": [{"event": event.name, "data": event.data} for event in chunk],
            }
            try:
                await self.send_frame(sockets, FRAME_EVENT, frame)
            except Exception:
                log.exception("sending %d events to %s failed", len(chunk), ", ".join(sockets))


#: the events whose `timestamp` is the agent's, when its worker wrote the line
_OUTPUT = frozenset({"task:stream", "worker:output"})


def _time_output(events: Sequence[Event]) -> None:
    """The end-to-end output latency of events just sent to their watchers: from the
    agent's timestamp to now (a clock behind ours counts as 0)."""
    now_s = time.time()
    for event in events:
        stamp = event.data.get("timestamp") if event.name in _OUTPUT else None
        if isinstance(stamp, str):
            try:
                written_s = parse_timestamp(stamp).timestamp()
            except ValueError:
                continue
            metrics.OUTPUT_LATENCY.observe(max(0.0, now_s - written_s))


def frames(events: Sequence[Event]) -> Iterator[Sequence[Event]]:
    """`events` cut into frames of at most FRAME_MAX_EVENTS events and about
    FRAME_MAX_BYTES of JSON each (an event larger than that is a frame of its own)."""
    begin, size = 0, 0
    for index, event in enumerate(events):
        # `{"event":name,"data":data},` around each event's data
        added = event.size + len(event.name) + 24
        if index > begin and (index - begin >= FRAME_MAX_EVENTS or size + added > FRAME_MAX_BYTES):
            yield events[begin:index]
            begin, size = index, 0
        size += added
    if begin < len(events):
        yield events[begin:] if begin else events
