"""Exactly one gateway node leads the cluster-wide jobs; when it dies, another takes over."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from orchestra import keys
from tests.support.processes import Deployment, Gateway, http, wait_for


async def leading(gateway: Gateway) -> bool | None:
    """What a node's /health says of its leadership; None when it does not answer."""
    status, health = await asyncio.to_thread(http, "GET", gateway.url + "/health")
    return bool(health["leader"]) if status == 200 else None


@pytest.mark.sqlite_only
async def test_one_node_leads_and_another_takes_over_when_it_is_killed(
    deployment: Deployment,
) -> None:
    deployment.extra_env["ORCHESTRA_LEASE_TTL_S"] = "3"
    nodes = [await deployment.start_gateway(f"gw{i}") for i in (1, 2)]
    redis = Redis.from_url(deployment.redis_url, decode_responses=True)
    try:

        async def one_leader() -> list[bool] | None:
            flags = [await leading(node) for node in nodes]
            return (
                [bool(f) for f in flags] if flags.count(True) == 1 and None not in flags else None
            )

        flags = await wait_for(one_leader, what="exactly one node to lead")
        leader, other = (nodes[0], nodes[1]) if flags[0] else (nodes[1], nodes[0])
        holder = await redis.get(keys.leader())
        assert holder and holder.startswith(f"{leader.name.removeprefix('gateway-')}:")

        leader.kill()  # SIGKILL: no clean release, the lease must run out

        async def taken_over() -> bool:
            return await leading(other) is True

        await wait_for(taken_over, what="the other node to take over", timeout_s=30)
        holder = await redis.get(keys.leader())
        assert holder and holder.startswith(f"{other.name.removeprefix('gateway-')}:")
    finally:
        await redis.aclose()
