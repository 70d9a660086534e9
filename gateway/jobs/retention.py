"""The cluster-wide retention job: retire the event streams of sessions ended long ago.

A session ended longer than `session_stream_retention_s` ago needs its Redis stream no
more: its history is read from the SQL archive. The job finds such streams by SCAN (as
the trim job does), reads each one's session `status` and `endedAt` in one pipeline per
page, and tells those sessions `retire`; each session actor archives and removes its own
stream under its partition lease (`actors/retention.py`). A stream once removed is not
found again, so a job run twice, or by two nodes while the leadership moves, costs at
most a few idle turns.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from actors import ActorSystem, session_address
from actors.values import read_fields, text
from orchestra import keys
from orchestra.codec import parse_timestamp
from orchestra.redis_client import scan_pages

log = logging.getLogger(__name__)

_SCAN_PAGE = 1000


async def retire_ended_sessions(redis: Redis, system: ActorSystem, retention_s: float) -> int:
    """Tell `retire` to each session ended more than `retention_s` ago that still has an
    event stream; how many were told."""
    cutoff = time.time() - retention_s
    told: list[str] = []
    async for found in scan_pages(
        redis, keys.session_events_pattern(), count=_SCAN_PAGE, type_="stream"
    ):
        sessions = [s for s in (keys.session_of_events(text(key)) for key in found) if s]
        states = await read_fields(
            redis, [keys.session(s, system.partitions) for s in sessions], ["status", "endedAt"]
        )
        for session_id, state in zip(sessions, states, strict=True):
            ended_at = state.get("endedAt")
            if state.get("status") == "ended" and isinstance(ended_at, str):
                if parse_timestamp(ended_at).timestamp() <= cutoff:
                    await system.tell(session_address(session_id), "retire", {}, sender="retention")
                    told.append(session_id)
    if told:
        log.info(
            "retiring the event streams of %d session(s) ended over %g s ago (archived, then "
            "removed): %s",
            len(told),
            retention_s,
            ", ".join(told[:20]) + (" ..." if len(told) > 20 else ""),
        )
    return len(told)
