"""The metrics a job measures (`orchestra/metrics.py`): this node's, and the cluster's.

Every node, every `metrics_interval_s` (`NodeMetrics.probe`, a node job): one Redis PING
and one SQL `SELECT 1`, timed, and the depth of the mailboxes of the partitions it holds.
The partitions it holds are read when scraped.

The leader, as often (`ClusterGauges.refresh`, a cluster-wide job): tasks by status and
the dispatch queue's depth; the archive's lag (events held in session streams beyond
their cap) is set by the trim job, which measures every stream anyway. They are
exported only while this node leads and its last run is recent (`exported`), so a node
that lost the lead does not go on exporting what it counted then, and Prometheus's sum
over the nodes counts each figure once.

Cost of a leader run: three ZCARDs, and an HSCAN of the task index with, per page of 1000
tasks, one pipeline of HGETs of their status. At most `MAX_PAGES` pages per run: a
larger cluster is counted over several runs, and its figures change when a whole pass
is done.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors import ActorSystem
from actors.dispatcher import PRIORITIES
from actors.task_lifecycle import WIRE_STATUS
from actors.values import text
from gateway.jobs.leader import LeaderLease
from orchestra import keys, metrics
from orchestra.db import Store
from orchestra.errors import OrchestraError

log = logging.getLogger(__name__)

PAGE = 1000
MAX_PAGES = 100  # per run: 100,000 tasks
#: statuses a task hash may hold (anything else is counted as `other`)
STATUSES = (*WIRE_STATUS, "rejected")


class NodeMetrics:
    """What one node measures of itself, and (when it leads) of the cluster."""

    def __init__(
        self,
        redis: Redis,
        store: Store,
        system: ActorSystem,
        lease: LeaderLease,
        interval_s: float,
    ) -> None:
        self.redis = redis
        self.store = store
        self.system = system
        self.cluster = ClusterGauges(redis, lease, interval_s, system.partitions)
        metrics.PARTITIONS_HELD.set_function(lambda: len(system.held_partitions))

    async def probe(self) -> None:
        """Time a Redis and a SQL round trip (one that fails is not observed: the health
        check tells of it), and count the held mailboxes' waiting messages."""
        try:
            started = time.perf_counter()
            await self.redis.ping()
            metrics.REDIS_ROUND_TRIP.observe(time.perf_counter() - started)
            metrics.MAILBOX_DEPTH.set(await self.system.mailbox_depth())
        except RedisError as exc:
            log.debug("metrics: Redis: %s", type(exc).__name__)
        try:
            started = time.perf_counter()
            await self.store.ping()
            metrics.SQL_ROUND_TRIP.observe(time.perf_counter() - started)
        except OrchestraError as exc:
            log.debug("metrics: SQL: %s", exc.code)


@dataclass
class _Scan:
    """One SCAN-like pass, carried on over runs: its cursor and what it counted so far."""

    cursor: int = 0
    counted: Counter[str] = field(default_factory=Counter)


class ClusterGauges:
    """The cluster-wide figures, counted by the leader (see the module docstring)."""

    def __init__(
        self, redis: Redis, lease: LeaderLease, interval_s: float, partitions: int
    ) -> None:
        self.redis = redis
        self.lease = lease
        self.interval_s = interval_s
        self.partitions = partitions
        self._last_run = float("-inf")  # time.monotonic() of the last successful run
        self._tasks = _Scan()

    def exported(self) -> bool:
        """Whether this node's figures are the cluster's now: it leads, and counted lately."""
        fresh = time.monotonic() - self._last_run <= 3 * self.interval_s + 1.0
        return self.lease.is_leader and fresh

    async def refresh(self) -> None:
        if time.monotonic() - self._last_run > 3 * self.interval_s + 1.0:
            # Leading anew (or after failures): counts from back then are no use now.
            self._tasks = _Scan()
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in PRIORITIES:
                pipe.zcard(keys.dispatch_queue(priority, self.partitions))
            depths = await pipe.execute()
        metrics.QUEUE_DEPTH.set(sum(int(d) for d in depths))
        if await self._count_tasks():
            for status in (*STATUSES, "other"):
                metrics.TASKS.labels(status).set(self._tasks.counted.get(status, 0))
            self._tasks = _Scan()
        self._last_run = time.monotonic()

    async def _count_tasks(self) -> bool:
        """Go on with the pass over the task index; True once it is complete."""
        scan = self._tasks
        for _ in range(MAX_PAGES):
            scan.cursor, page = await self.redis.hscan(keys.task_index(), scan.cursor, count=PAGE)
            if isinstance(page, dict) and page:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for task_id, session_id in page.items():
                        key = keys.task(text(session_id), text(task_id), self.partitions)
                        pipe.hget(key, "status")
                    statuses = await pipe.execute()
                for raw in statuses:
                    if raw is not None:
                        scan.counted[_status(text(raw))] += 1
            if int(scan.cursor) == 0:
                return True
        return False


def _status(raw: str) -> str:
    """A task hash's status field (JSON text) as a label."""
    try:
        status = json.loads(raw)
    except ValueError:
        status = raw
    return status if status in STATUSES else "other"
