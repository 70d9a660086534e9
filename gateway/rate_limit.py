"""Requests per user per window (the original design's 100 a minute), shared by all nodes.

A fixed window counted in Redis: one INCR and one EXPIRE per request, in one script call
on one key (`lua/count_in_window.lua`).
Applied to users' socket requests and REST calls. Agents are limited by `AgentRateLimiter`
instead: a token bucket per agent in the memory of the node the agent is connected to
(an agent is connected to one node at a time), since output arrives thousands of events
a second and must not cost a Redis round trip each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.lua_source import lua_source
from orchestra import keys
from orchestra.errors import RateLimited
from orchestra.settings import Settings


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.limit = settings.rate_limit_requests
        self.window_s = settings.rate_limit_window_s
        self._count: AsyncScript = redis.register_script(lua_source("count_in_window"))

    async def check(self, who: str) -> None:
        """Count one request of `who`; RATE_001 once over the limit in this window."""
        window = int(time.time() // self.window_s)
        key = keys.rate_limit(who, window)
        count = await self._count(keys=[key], args=[int(self.window_s) + 1])
        if int(count) > self.limit:
            retry_s = self.window_s - (time.time() % self.window_s)
            raise RateLimited(
                f"over {self.limit} requests in {self.window_s:g} s",
                {"retryAfterS": round(retry_s, 1)},
            )


class AgentRateLimiter:
    """Events per agent: a token bucket per agent, in this node's memory.

    Each event takes a token; a bucket holds at most `burst` tokens and gains `rate_per_s`
    a second. An event finding no token gets RATE_001 with `retryAfterS`, the time until
    the next token. Nothing is shared between nodes: an agent's socket lives on one node,
    and the agent reconnecting elsewhere starts with a full bucket there.
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # agent -> (tokens, at_s)

    def check(self, agent_id: str) -> None:
        """Take one token of the agent's bucket; RATE_001 when there is none."""
        now_s = self._clock()
        tokens, at_s = self._buckets.get(agent_id, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - at_s) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[agent_id] = (tokens, now_s)
            retry_s = math.ceil((1.0 - tokens) / self.rate_per_s * 1000) / 1000
            raise RateLimited(
                f"over {self.rate_per_s:g} events a second (bursts of {self.burst})",
                {"retryAfterS": retry_s},
            )
        self._buckets[agent_id] = (tokens - 1.0, now_s)

    def forget(self, agent_id: str) -> None:
        """Drop the agent's bucket (its socket is gone)."""
        self._buckets.pop(agent_id, None)
