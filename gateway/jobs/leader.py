"""The leader lease: which one live node runs the cluster-wide jobs (DESIGN.md §5).

`orch:leader` holds the leader's token, with an expiry. Every node tries to take the key
when it is free (SET NX PX) and the holder renews it (only while the value is still its
token), a third of the lease time apart. A node counts itself the leader only until the
lease time has passed since it *sent* its last successful take or renewal: the key lives
at least that long, so no two nodes ever count themselves leaders at once, and a leader
that can no longer renew stops counting itself one before anybody else can take over.
When the leader dies, the key expires and another node takes it at its next try: within
the lease time plus a third of it.

Leadership saves duplicate work; it does not fence it. A job may still be running when its
node stops being the leader, so cluster-wide jobs must be harmless if run twice (the trim
job only asks session actors to trim, and they do that under their own partition lease).
"""

from __future__ import annotations

import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors import Scripts
from orchestra import keys

log = logging.getLogger(__name__)


class LeaderLease:
    def __init__(self, redis: Redis, scripts: Scripts, node_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.scripts = scripts
        self.ttl_s = ttl_s
        # A fresh token per run: a node restarted under the same id does not inherit the
        # lease of its previous life, which may still be running a job.
        self.token = f"{node_id}:{secrets.token_hex(8)}"
        self._until = 0.0  # time.monotonic() until which this node is the leader

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._until

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    async def refresh(self) -> None:
        """Renew the lease if this node holds it, else take it if it is free."""
        sent = time.monotonic()
        ttl_ms = int(self.ttl_s * 1000)
        try:
            held = bool(
                await self.scripts.lease_renew(keys=[keys.leader()], args=[self.token, ttl_ms])
            ) or bool(await self.redis.set(keys.leader(), self.token, nx=True, px=ttl_ms))
        except RedisError as exc:
            # Keep the deadline: this node stops leading when it passes, as it must.
            log.warning("leader lease: %s", exc)
            return
        was_leader = self.is_leader
        self._until = sent + self.ttl_s if held else 0.0
        if held and not was_leader:
            log.info("this node is now the leader (%s)", self.token)
        elif was_leader and not held:
            log.warning("this node is no longer the leader")

    async def release(self) -> None:
        """Give the lease up at once (a clean stop): another node need not wait it out."""
        self._until = 0.0
        try:
            await self.scripts.lease_release(keys=[keys.leader()], args=[self.token])
        except RedisError as exc:
            log.warning("leader lease not released, it will expire: %s", exc)
