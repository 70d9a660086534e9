"""The leader lease and the scheduler's cluster-wide jobs, against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from actors import Scripts
from gateway.jobs import Jobs, LeaderLease
from orchestra import keys, redis_client
from orchestra.redis_server import RedisServer
from tests.support.processes import wait_for

TTL_S = 1.0


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(redis.url)
    yield client
    await client.aclose()


def lease(client: Redis, node_id: str) -> LeaderLease:
    return LeaderLease(client, Scripts(client), node_id, TTL_S)


async def test_one_node_leads_until_it_stops_renewing_then_another_does(client: Redis) -> None:
    one, two = lease(client, "n1"), lease(client, "n2")
    await one.refresh()
    await two.refresh()
    assert (one.is_leader, two.is_leader) == (True, False)
    await one.refresh()  # renewing keeps it
    await two.refresh()
    assert (one.is_leader, two.is_leader) == (True, False)
    assert await client.get(keys.leader()) == one.token

    # n1 dies (renews no more): its own claim lapses with the lease, and n2 takes over.
    async def two_leads() -> bool:
        await two.refresh()
        return two.is_leader

    await wait_for(lambda: not one.is_leader, what="n1's claim to lapse", timeout_s=5)
    await wait_for(two_leads, what="n2 to take over", timeout_s=5)
    await one.refresh()  # back from the dead: it does not lead again while n2 renews
    assert (one.is_leader, two.is_leader) == (False, True)

    await two.release()  # a clean stop hands over at once
    assert not two.is_leader
    await one.refresh()
    assert one.is_leader


async def test_cluster_wide_jobs_run_on_the_leader_only(client: Redis) -> None:
    runs: dict[str, list[str]] = {"n1": [], "n2": []}
    jobs: list[Jobs] = []

    def recorder(node_id: str, kind: str) -> Callable[[], Any]:
        async def job() -> None:
            runs[node_id].append(kind)

        return job

    for node_id in ("n1", "n2"):
        node_jobs = Jobs(lease(client, node_id))
        node_jobs.add("cluster", 0.05, recorder(node_id, "cluster"), cluster_wide=True)
        node_jobs.add("local", 0.05, recorder(node_id, "local"), cluster_wide=False)
        await node_jobs.start()
        jobs.append(node_jobs)
    try:

        def ran_enough() -> bool:
            return all(runs[n].count("local") >= 3 for n in runs) and "cluster" in runs["n1"]

        await wait_for(ran_enough, what="both nodes' jobs to run a few times")
        assert jobs[0].lease.is_leader and not jobs[1].lease.is_leader
        assert "cluster" not in runs["n2"]

        # The leader stops: the other node takes over and runs the cluster-wide job.
        await jobs[0].stop()
        stopped_at = len(runs["n1"])
        await wait_for(lambda: "cluster" in runs["n2"], what="n2 to run the cluster-wide job")
        assert len(runs["n1"]) == stopped_at, "a stopped scheduler runs nothing more"
    finally:
        for node_jobs in jobs:
            await node_jobs.stop()
