"""Which gateway nodes are alive, and which partitions each should hold.

Nodes keep an entry in the sorted set `orch:nodes` scored by its expiry time. Partitions
are spread over the live nodes by rendezvous hashing, so a node joining or leaving moves
only the partitions it gains or loses.
"""

from __future__ import annotations

import hashlib
import time

from redis.asyncio import Redis

from orchestra import keys


def rendezvous_owner(partition: int, nodes: list[str]) -> str | None:
    """The node that should hold `partition` among `nodes` (highest hash wins)."""
    if not nodes:
        return None
    return max(nodes, key=lambda node: hashlib.blake2b(f"{node}/{partition}".encode()).digest())


class Membership:
    """This node's heartbeat in `orch:nodes` and the list of live nodes."""

    def __init__(self, redis: Redis, node_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.node_id = node_id
        self.ttl_s = ttl_s

    async def beat(self) -> list[str]:
        """Renew this node's entry, forget expired ones, and return the live nodes."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.nodes(), {self.node_id: now_ms + int(self.ttl_s * 1000)})
            pipe.zremrangebyscore(keys.nodes(), "-inf", now_ms)
            pipe.zrange(keys.nodes(), 0, -1)
            results = await pipe.execute()
        return sorted(str(n) for n in results[2])

    async def leave(self) -> None:
        await self.redis.zrem(keys.nodes(), self.node_id)
