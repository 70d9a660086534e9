"""A session's whole history, archived then live, read forward with no gap and no repeat.

Trimming (`actors/trim.py`) archives the oldest events to SQL before it removes them from
the stream, and sets the session's `trimmedTo` (the last id removed) in the transaction
that removes them. So at any instant every event up to `trimmedTo` is in the archive and
every event after it is in the stream. A read after a cursor at or past `trimmedTo` is
served by the stream, read in one transaction with `trimmedTo` so that the two agree; a
read after an older cursor is served by the archive (which may hold a little more than was
trimmed yet: the same entries with the same data), then goes on in the stream.

Read backwards (`before`), the same holds from the other side: the stream, read newest
first in one transaction with `trimmedTo`, has every event after `trimmedTo`; once it has
given all it holds before the cursor, the rest are older than the oldest it gave, and all
of those are in the archive (which may have archived more meanwhile: only entries the
stream gave, or newer ones, so never one twice).

An event reads the same from either place: `data` is the payload with its `eventId`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from actors import streams
from actors.trim import TRIMMED_TO
from orchestra import keys
from orchestra.codec import from_json, json_size, parse_event_id
from orchestra.db import Store
from orchestra.db.models import SessionEventRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    name: str
    data: dict[str, Any]  # as clients get it, `eventId` included
    size: int = 0  # about how many bytes `data` takes as JSON (frames are cut by it)

    def wire(self) -> dict[str, Any]:
        return {"eventId": self.event_id, "event": self.name, "data": self.data}


def _full(event_id: str | None) -> str | None:
    """An id in the "<ms>-<seq>" form that the SQL archive expects."""
    return None if event_id is None else "{}-{}".format(*parse_event_id(event_id))


def resumable(after: str | None, trimmed_to: str | None) -> bool:
    """Whether the stream still holds every event after `after` (after None: every event)."""
    if not trimmed_to:
        return True
    return after is not None and parse_event_id(after) >= parse_event_id(trimmed_to)


class History:
    def __init__(self, redis: Redis, store: Store, partitions: int) -> None:
        self.redis = redis
        self.store = store
        self.partitions = partitions  # `settings.partitions`: where sessions' keys live

    async def live(
        self, session_id: str, after: str | None, count: int
    ) -> tuple[list[Event], str | None]:
        """The stream's events after `after` (from its start when None), and `trimmedTo`
        as it was when they were read: they are all there are only if `resumable`."""
        entries, raw = await streams.xrange_with_field(
            self.redis,
            keys.session_events(session_id, self.partitions),
            f"({after}" if after else "-",
            count,
            keys.session(session_id, self.partitions),
            TRIMMED_TO,
        )
        return [_from_stream(entry_id, fields) for entry_id, fields in entries], _decode(raw)

    async def page(self, session_id: str, after: str | None, limit: int) -> list[Event]:
        """Up to `limit` events after `after`: from the archive while `after` is older than
        what the stream keeps, then from the stream."""
        events: list[Event] = []
        after = _full(after)
        while len(events) < limit:
            live, trimmed_to = await self.live(session_id, after, limit - len(events))
            if resumable(after, trimmed_to):
                return events + live
            archived = await self.store.list_events(
                session_id, after=after, limit=limit - len(events)
            )
            if not archived:
                # `trimmedTo` itself is archived before it is trimmed, so this is a lost
                # archive (an SQL store swapped under a live Redis): say so, go on live.
                log.error("session %s: events up to %s are not archived", session_id, trimmed_to)
                after = trimmed_to
                continue
            events += [_from_record(record) for record in archived]
            after = events[-1].event_id
        return events

    async def page_before(
        self, session_id: str, before: str, limit: int
    ) -> tuple[list[Event], bool]:
        """Up to `limit` events just before `before`, in order, and whether there are
        earlier ones: from the stream read backwards, then from the archive."""
        before = "{}-{}".format(*parse_event_id(before))
        want = limit + 1  # one more than asked for tells whether there are earlier ones
        entries, raw = await streams.xrevrange_with_field(
            self.redis,
            keys.session_events(session_id, self.partitions),
            f"({before}",
            want,
            keys.session(session_id, self.partitions),
            TRIMMED_TO,
        )
        newest_first = [_from_stream(entry_id, fields) for entry_id, fields in entries]
        if len(newest_first) < want and _decode(raw):
            # The stream gave all it keeps before `before`: the rest is in the archive.
            edge = newest_first[-1].event_id if newest_first else before
            archived = await self.store.list_events_before(
                session_id, before=edge, limit=want - len(newest_first)
            )
            newest_first += [_from_record(record) for record in archived]
        events = newest_first[:limit]
        events.reverse()
        return events, len(newest_first) > limit

    async def follow(self, session_id: str, after: str, count: int, block_ms: int) -> list[Event]:
        """Events after `after` as they come, waiting up to `block_ms` for the first. A
        follower so far behind that trimming passed it gets them from the archive."""
        entries, raw = await streams.xread_then_field(
            self.redis,
            keys.session_events(session_id, self.partitions),
            after,
            count,
            block_ms,
            keys.session(session_id, self.partitions),
            TRIMMED_TO,
        )
        # `trimmedTo` was read after the entries: if it is not past `after` now, it was not
        # when they were read either, and nothing after `after` was missing then.
        if not entries or resumable(after, _decode(raw)):
            return [_from_stream(entry_id, fields) for entry_id, fields in entries]
        return await self.page(session_id, after, count)


def _decode(raw: str | None) -> str | None:
    """A state field as the actor wrote it (JSON-encoded, see `actors.turn.encode_field`)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return str(value) if value else None


def _from_stream(entry_id: str, fields: dict[str, str]) -> Event:
    raw = fields.get("data") or "{}"
    data = from_json(raw)
    data["eventId"] = entry_id
    # The stored JSON and the eventId beside it: close enough to the size sent.
    return Event(entry_id, fields.get("event", ""), data, len(raw) + len(entry_id) + 14)


def _from_record(record: SessionEventRecord) -> Event:
    data = {**record.payload, "eventId": record.event_id}
    return Event(record.event_id, record.event, data, json_size(data))
