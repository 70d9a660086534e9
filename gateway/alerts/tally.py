"""Socket requests answered, ok or with an error, counted across the cluster for the
error-rate rule.

Each node counts the acks it gives in memory (`RequestTally.count`, called by the one
place every socket request is answered: `gateway.sockets.base.BaseNamespace`), by time
bucket of `BUCKET_S`, and adds its counts to Redis every few seconds (`flush`, a node
job): one hash `{ok, error}` per bucket for the whole cluster (`keys.alert_requests`),
expiring after the window. The rule reads the window's buckets (`window_counts`). No
Redis round trip per request; a node that dies loses at most its last few seconds.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.alerts.rules import RequestCounts
from orchestra import keys

__all__ = ["BUCKET_S", "RequestTally", "window_counts"]

log = logging.getLogger(__name__)

BUCKET_S = 10


def _bucket(now_s: float) -> int:
    return int(now_s // BUCKET_S)


class RequestTally:
    """This node's requests since its last flush, by bucket: [ok, error]."""

    def __init__(self, redis: Redis, window_s: float) -> None:
        self._redis = redis
        self._ttl_s = int(window_s) + 3 * BUCKET_S
        self._counts: dict[int, list[int]] = {}

    def count(self, *, error: bool) -> None:
        """One request answered (with an error when `error`)."""
        bucket = _bucket(time.time())
        counts = self._counts.get(bucket)
        if counts is None:
            counts = self._counts[bucket] = [0, 0]
        counts[error] += 1

    async def flush(self) -> None:
        """Add the counts to the cluster's; kept for the next flush when Redis fails."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for bucket, (ok, error) in counts.items():
                    key = keys.alert_requests(bucket * BUCKET_S)
                    if ok:
                        pipe.hincrby(key, "ok", ok)
                    if error:
                        pipe.hincrby(key, "error", error)
                    pipe.expire(key, self._ttl_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("request counts not flushed, kept for the next try: %s", exc)
            for bucket, (ok, error) in counts.items():
                kept = self._counts.setdefault(bucket, [0, 0])
                kept[0] += ok
                kept[1] += error


async def window_counts(redis: Redis, window_s: float, now_s: float) -> RequestCounts:
    """The cluster's requests answered in the last `window_s` (whole buckets: the window
    reaches back at most one bucket further)."""
    first, last = _bucket(now_s - window_s), _bucket(now_s)
    async with redis.pipeline(transaction=False) as pipe:
        for bucket in range(first, last + 1):
            pipe.hmget(keys.alert_requests(bucket * BUCKET_S), ["ok", "error"])
        replies = await pipe.execute()
    ok = sum(int(reply[0] or 0) for reply in replies)
    error = sum(int(reply[1] or 0) for reply in replies)
    return RequestCounts(ok=ok, error=error)
