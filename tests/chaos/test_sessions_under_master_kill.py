"""The chaos test of sessions under node kills (test_sessions_under_node_kills.py) on a Redis
Cluster of its own, three masters and three replicas with ``appendfsync always``, where
besides the gateways' SIGKILLs a Redis master is SIGKILLed mid-run and its replica promoted,
twice (issue 13, docs/redis-cluster.md §3.6 and §5.3): first the master of a busy session's
partition, then the master of the dispatcher's partition, each dead node restarted (it
rejoins as a replica) before the next kill. With ``redis_wait_replicas`` 1 nothing that was
acknowledged is lost or doubled: the same checks as there, and at the end every partition's
outgoing stream is empty and every partition is held by a live node."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from orchestra import keys
from orchestra.placement import DISPATCHER_ADDRESS, partition_of
from orchestra.redis_client import connect
from tests.chaos.test_sessions_under_node_kills import SessionsRun, run_sessions_under_kills
from tests.support.processes import Deployment, http, wait_for
from tests.support.redis_cluster import RedisClusterHarness, redis_cluster

FIRST_KILL_AFTER_S = 2.0  # output flows by then
BETWEEN_KILLS_S = 1.0  # after the first dead node is back in sync
#: `settings.redis_wait_replicas`: 1, what the test is about. An experiment may set
#: ORCHESTRA_TEST_WAIT_REPLICAS=0 to see what asynchronous replication loses (it may fail).
WAIT_REPLICAS = os.environ.get("ORCHESTRA_TEST_WAIT_REPLICAS", "1")

pytestmark = pytest.mark.sqlite_only


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RedisClusterHarness]:
    """A cluster of this test's own (not the shared one: a master of it is killed)."""
    async with redis_cluster(tmp_path / "cluster", appendfsync="always") as started:
        yield started


@pytest.fixture
def deployment(
    tmp_path: Path, cluster: RedisClusterHarness, database_url: str
) -> Iterator[Deployment]:
    """Gateways and agents on `cluster`, each write that leaves its slot waiting for a
    replica (named `deployment` so that a failure's report carries the processes' logs)."""
    deployment = Deployment(root=tmp_path, redis_url=cluster.url, database_url=database_url)
    deployment.extra_env["ORCHESTRA_REDIS_WAIT_REPLICAS"] = WAIT_REPLICAS
    try:
        yield deployment
    finally:
        deployment.stop_all()


async def test_nothing_acknowledged_is_lost_or_doubled_when_a_master_fails_over(
    deployment: Deployment, cluster: RedisClusterHarness, tmp_path: Path
) -> None:
    partitions = deployment.partitions
    failovers: list[str] = []

    async def fail_over(key: str, what: str) -> None:
        started, killed_at = time.monotonic(), time.strftime("%H:%M:%S")
        port = await cluster.kill_master_of(key)
        promoted = await cluster.wait_promoted(key, port)
        promoted_s = time.monotonic() - started
        await cluster.restart(port)  # back as `promoted`'s replica, in sync
        failovers.append(
            f"{killed_at} {what}: master :{port} killed, :{promoted} promoted after "
            f"{promoted_s:.1f} s, settled after {time.monotonic() - started:.1f} s"
        )
        print(failovers[-1])  # in the report of a failure too

    async def kill_masters(run: SessionsRun) -> None:
        busy_session = next(iter(run.tasks.values()))
        dispatcher = partition_of(DISPATCHER_ADDRESS, partitions)
        await asyncio.sleep(FIRST_KILL_AFTER_S)
        await fail_over(keys.session_events(busy_session, partitions), "busy session")
        await asyncio.sleep(BETWEEN_KILLS_S)
        await fail_over(keys.mailbox(dispatcher, partitions), "dispatcher")

    run = await run_sessions_under_kills(deployment, tmp_path, extra_disruption=kill_masters)
    assert len(failovers) == 2

    redis = connect(cluster.url)
    try:

        async def outgoing_left() -> dict[int, int]:
            lengths = [await redis.xlen(keys.outgoing(p, partitions)) for p in range(partitions)]
            return {p: n for p, n in enumerate(lengths) if n}

        async def outgoing_empty() -> bool:
            return not await outgoing_left()

        try:
            await wait_for(outgoing_empty, timeout_s=30, what="every outgoing stream empty")
        except AssertionError as exc:
            exc.add_note(f"entries left (partition: count): {await outgoing_left()}")
            raise
    finally:
        await redis.aclose()

    async def held() -> list[int]:
        found: list[int] = []
        for gateway in run.nodes.values():
            assert gateway.alive(), f"{gateway.name} died"
            status, health = await asyncio.to_thread(http, "GET", gateway.url + "/health")
            assert status == 200, health
            found += health.get("partitions") or []
        return sorted(found)

    async def each_held_once() -> bool:
        return await held() == list(range(partitions))

    try:
        await wait_for(each_held_once, timeout_s=30, what="each partition held by one live node")
    except AssertionError as exc:
        exc.add_note(f"partitions held: {await held()}")
        raise
