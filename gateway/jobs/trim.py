"""The cluster-wide trim job: tell each session whose event stream is over its cap to trim.

The job only finds the long streams; each session actor archives and trims its own under
its partition lease (`actors/trim.py`), so a job run twice, or by two nodes during a
change of leader, costs a few idle turns and nothing else. Streams are found by SCAN
(with MATCH and TYPE, a page at a time) and measured by XLEN in one pipeline per page.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from actors import ActorSystem, session_address
from actors.values import text
from orchestra import keys, metrics
from orchestra.redis_client import scan_pages

log = logging.getLogger(__name__)

_SCAN_PAGE = 1000


async def trim_session_streams(redis: Redis, system: ActorSystem, max_events: int) -> int:
    """Send `trim` to every session whose stream holds more than `max_events`; how many.
    The events over the caps it found are the archive's lag (`orchestra_archive_lag_events`,
    which only the leader, running this job, exports)."""
    told = lag = 0
    async for found in scan_pages(
        redis, keys.session_events_pattern(), count=_SCAN_PAGE, type_="stream"
    ):
        streams = [text(key) for key in found]
        if streams:
            async with redis.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xlen(stream)
                lengths = await pipe.execute()
            for stream, length in zip(streams, lengths, strict=True):
                session_id = keys.session_of_events(stream)
                if session_id is not None and int(length) > max_events:
                    await system.tell(session_address(session_id), "trim", {}, sender="trim-job")
                    told += 1
                    lag += int(length) - max_events
    metrics.ARCHIVE_LAG.set(lag)
    if told:
        log.info("asked %d session(s) to trim their event streams", told)
    return told
