"""How many sockets one user (`/web`) or one agent (`/agent`) may hold open, on all nodes.

Each user and each agent has a sorted set in Redis of its open sockets, `<node>:<sid>`,
scored by an expiry time. A connection that passed authentication claims a slot there
(`socket_claim.lua`: forget expired members and those of nodes no longer alive, count,
add when under the cap) or is refused with RES_001; its slot is freed when it
disconnects. Each node refreshes the expiry of its sockets' slots every third of
`socket_slot_ttl_s` (a node job), so a node that dies without cleaning up holds its slots
until they expire, or until the claim of another node finds it gone from the live nodes,
whichever comes first. A node started again under the same id frees at once what its
earlier run held (`start`). Scores are milliseconds of the nodes' own clocks, which are
assumed to agree within a fraction of the time to live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.lua_source import lua_source
from gateway.outlet import AGENT, WEB
from gateway.sockets.base import ConnectionRefused
from orchestra import keys
from orchestra.errors import ResourceExhausted
from orchestra.settings import Settings

log = logging.getLogger(__name__)

# Whose slots a socket of each namespace takes.
_KINDS = {WEB: "user", AGENT: "agent"}


async def free_slots_of(redis: Redis, node_id: str) -> int:
    """Free every slot node `node_id` holds (an earlier run of this node, or a node that
    died: the cleanup job) and forget its index; how many slots were freed."""
    index = keys.node_socket_slots(node_id)
    prefix = f"{node_id}:"
    freed = 0
    for key in await redis.smembers(index):
        members = [
            member
            for member in map(str, await redis.zrange(key, 0, -1))
            if member.startswith(prefix) and ":" not in member[len(prefix) :]
        ]
        if members:
            freed += int(await redis.zrem(key, *members))
    await redis.delete(index)
    return freed


class SocketCaps:
    """The slots of the sockets open on this node; `alive(namespace, sid)` tells whether
    the socket is still connected to this node (a slot of one gone is freed)."""

    def __init__(self, redis: Redis, settings: Settings, alive: Callable[[str, str], bool]) -> None:
        self.redis = redis
        self.node_id = settings.node_id
        self.caps = {"user": settings.max_sockets_per_user, "agent": settings.max_sockets_per_agent}
        self.ttl_ms = int(settings.socket_slot_ttl_s * 1000)
        self.refresh_every_s = settings.socket_slot_ttl_s / 3
        self._alive = alive
        self._held: dict[tuple[str, str], str] = {}  # (namespace, sid) -> slot set
        self._claim: AsyncScript = redis.register_script(lua_source("socket_claim"))

    def _member(self, sid: str) -> str:
        return f"{self.node_id}:{sid}"

    async def start(self) -> None:
        """Free the slots an earlier run of this node id held (it was killed, say)."""
        await free_slots_of(self.redis, self.node_id)

    async def claim(self, namespace: str, sid: str, owner: str) -> None:
        """Take a slot of `owner` (a user id on `/web`, an agent id on `/agent`) for the
        socket, or refuse the connection with RES_001 when they are all taken. Two round
        trips under the cap (the claim, then this node's index); a full set is tried
        again with the live nodes, so that the slots of a node that died do not count."""
        kind = _KINDS[namespace]
        key = keys.socket_slots(kind, owner)
        allowed = await self._try_claim(kind, key, sid, [])
        if not allowed:
            now_ms = int(time.time() * 1000)
            found = await self.redis.zrangebyscore(keys.nodes(), now_ms, "+inf")
            live = sorted({str(node) for node in found} | {self.node_id})
            allowed = await self._try_claim(kind, key, sid, live)
        if not allowed:
            log.info("refused a %s socket of %s: %d open", kind, owner, self.caps[kind])
            raise ConnectionRefused(
                ResourceExhausted(
                    f"too many open connections: at most {self.caps[kind]} per {kind}",
                    {"max": self.caps[kind]},
                )
            )
        self._held[(namespace, sid)] = key

    async def _try_claim(self, kind: str, key: str, sid: str, live: list[str]) -> bool:
        index = keys.node_socket_slots(self.node_id)
        now_ms = int(time.time() * 1000)
        # The script on its own (a Redis Cluster pipeline refuses EVALSHA), then the index
        # (in another slot of a cluster).
        allowed = await self._claim(
            keys=[key],
            args=[
                self._member(sid),
                now_ms,
                now_ms + self.ttl_ms,
                self.caps[kind],
                self.ttl_ms,
                *live,
            ],
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(index, key)
            pipe.pexpire(index, self.ttl_ms)
            await pipe.execute()
        return bool(int(allowed))

    async def release(self, namespace: str, sid: str) -> None:
        """Free the socket's slot (it disconnected); nothing when it holds none."""
        key = self._held.pop((namespace, sid), None)
        if key is not None:
            await self.redis.zrem(key, self._member(sid))

    async def refresh(self) -> None:
        """The node job: renew the slots of this node's sockets, free those of sockets that
        are gone without a disconnect handled (refused after their claim, say)."""
        for namespace, sid in [s for s in self._held if not self._alive(*s)]:
            await self.release(namespace, sid)
        held = dict(self._held)
        expiry_ms = int(time.time() * 1000) + self.ttl_ms
        index = keys.node_socket_slots(self.node_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for (_, sid), key in held.items():
                pipe.zadd(key, {self._member(sid): expiry_ms})
            for key in set(held.values()):
                pipe.pexpire(key, self.ttl_ms)
            # The index lists what this node holds now, no more.
            pipe.delete(index)
            if held:
                pipe.sadd(index, *set(held.values()))
                pipe.pexpire(index, self.ttl_ms)
            await pipe.execute()
        # A socket that disconnected meanwhile had its slot freed before the renewal above
        # put it back: free it again.
        for (namespace, sid), key in held.items():
            if (namespace, sid) not in self._held:
                await self.redis.zrem(key, self._member(sid))
