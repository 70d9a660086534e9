"""Requests per user per window (the original design's 100 a minute), shared by all nodes.

A fixed window counted in Redis: one INCR and one EXPIRE per request, in one transaction.
(Not EXPIRE NX: the embedded Redis of `orchestra up` is 6.2, which lacks it; a key is
one window's, so renewing its expiry only keeps it a second past the window's end.)
Applied to users' socket requests and REST calls; agents' output is not limited here,
since a worker's stream is not a user's request.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from orchestra import keys
from orchestra.errors import RateLimited
from orchestra.settings import Settings


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.limit = settings.rate_limit_requests
        self.window_s = settings.rate_limit_window_s

    async def check(self, who: str) -> None:
        """Count one request of `who`; RATE_001 once over the limit in this window."""
        window = int(time.time() // self.window_s)
        key = keys.rate_limit(who, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, int(self.window_s) + 1)
            count, _ = await pipe.execute()
        if int(count) > self.limit:
            retry_s = self.window_s - (time.time() % self.window_s)
            raise RateLimited(
                f"over {self.limit} requests in {self.window_s:g} s",
                {"retryAfterS": round(retry_s, 1)},
            )
