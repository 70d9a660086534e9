"""Three gateway nodes on one Redis: exactly one runs the cluster-wide jobs, seen from
outside (its `/health` says it leads and counts the jobs' runs; the others count none; the
cleanup's log lines are in its log only). When it is SIGKILLed, exactly one other node
takes over within the lease time, its jobs run there, and the cleanup removes what the
dead node left. An ended session past its retention loses its Redis stream and its history
still reads, from the archive."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from actors.runtime import GROUP
from orchestra import keys, redis_client
from orchestra.codec import now_iso
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.web import WebClient, login

LEASE_TTL_S = 3
PASSWORD = "alice's long password"

pytestmark = [
    pytest.mark.sqlite_only,  # the SQL backend plays no part in leadership
    pytest.mark.orchestra_env(
        ORCHESTRA_LEASE_TTL_S=str(LEASE_TTL_S),
        ORCHESTRA_AGENT_PING_INTERVAL_S="0.5",
        ORCHESTRA_CLEANUP_INTERVAL_S="0.5",
        ORCHESTRA_SESSION_STREAM_RETENTION_S="1",
    ),
]


async def health(gateway: Gateway) -> dict[str, Any] | None:
    status, body = await asyncio.to_thread(http, "GET", gateway.url + "/health")
    return body if status == 200 else None


def cluster_runs(answer: dict[str, Any]) -> int:
    """How often the node ran cluster-wide jobs."""
    return sum(job["runs"] for job in answer["jobs"].values() if job["clusterWide"])


async def the_leader(nodes: list[Gateway]) -> Gateway | None:
    """The one node that says it leads and has run cluster-wide jobs, while every other
    says it does not and has run none; None until that holds."""
    answers = [await health(node) for node in nodes]
    if None in answers:
        return None
    leading = [n for n, a in zip(nodes, answers, strict=True) if a and a["leader"]]
    idle = [a for a in answers if a and not a["leader"] and cluster_runs(a) == 0]
    if len(leading) != 1 or len(idle) != len(nodes) - 1:
        return None
    ran = next(a for n, a in zip(nodes, answers, strict=True) if n is leading[0])
    return leading[0] if ran and ran["jobs"]["health-check"]["runs"] > 0 else None


def node_id(gateway: Gateway) -> str:
    return gateway.name.removeprefix("gateway-")


async def test_one_of_three_nodes_runs_the_jobs_and_another_takes_over_when_it_dies(
    deployment: Deployment,
) -> None:
    nodes = [await deployment.start_gateway(f"gw{i}") for i in (1, 2, 3)]
    await deployment.create_user("alice", PASSWORD, admin=True)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    redis = redis_client.connect(deployment.redis_url)
    watcher = WebClient()
    try:
        leader = await wait_for(lambda: the_leader(nodes), what="exactly one node to lead")
        assert str(await redis.get(keys.leader())).startswith(f"{node_id(leader)}:")
        others = [n for n in nodes if n is not leader]
        # An agent on another node than the leader: the health check's pings reach it.
        deployment.start_agent(agent_id, secret_file, others[0].url)

        # A cleanup job's effect, logged by the leader alone.
        queue = keys.dispatch_queue("normal", deployment.partitions)
        await redis.zadd(queue, {"no-session/no-task": time.time()})
        orphan_removed = "removed 1 queue entry of tasks that no longer exist: no-session/no-task"
        await wait_for(lambda: orphan_removed in leader.log(), what="the orphan entry removed")
        assert not await redis.zscore(queue, "no-session/no-task")
        assert not any(orphan_removed in n.log() for n in others)

        # The leader holds a socket (alice's) when it dies, and a reply list to a node.
        token = await login(leader.url, "alice", PASSWORD)
        await watcher.connect(leader.url, token)
        dead = node_id(leader)
        await redis.rpush(keys.replies(f"{dead}:0123456789ab"), "an answer nobody reads")
        assert await redis.exists(keys.node_socket_slots(dead))

        leader.kill()  # SIGKILL: no clean release, the lease must run out
        killed_at = time.monotonic()
        new_leader = await wait_for(
            lambda: the_leader(others), what="another node to take over", timeout_s=30
        )
        # Within the lease time and the next try (a third of it), with room for a busy host.
        assert time.monotonic() - killed_at < LEASE_TTL_S * 4 / 3 + 5
        assert str(await redis.get(keys.leader())).startswith(f"{node_id(new_leader)}:")

        # The new leader's health checks reach the agent (its pongs keep coming).
        since = now_iso()
        token = await login(new_leader.url, "alice", PASSWORD)

        async def checked() -> bool:
            _, body = await asyncio.to_thread(
                http, "GET", new_leader.url + "/health/agents", None, token
            )
            (agent,) = body["agents"]
            return bool(agent["healthy"] and agent["lastCheck"] > since and agent["latency"])

        await wait_for(checked, what="the agent checked since the takeover", timeout_s=30)

        # The dead node's leftovers go: its consumers in the mailboxes' groups, its socket
        # slots and their index, its reply list.
        async def leftovers() -> list[str]:
            found = []
            for partition in range(deployment.partitions):
                mailbox = keys.mailbox(partition, deployment.partitions)
                consumers = await redis.xinfo_consumers(mailbox, GROUP)
                found += [f"consumer {partition}" for c in consumers if c["name"] == dead]
            if await redis.exists(keys.node_socket_slots(dead)):
                found.append("socket slot index")
            async for key in redis_client.scan_keys(redis, keys.socket_slots("user", "*")):
                members = map(str, await redis.zrange(key, 0, -1))
                found += [f"slot {m}" for m in members if m.startswith(f"{dead}:")]
            found += [k async for k in redis_client.scan_keys(redis, keys.replies(f"{dead}:*"))]
            return found

        async def no_leftovers() -> bool:
            return await leftovers() == []

        assert await leftovers()
        await wait_for(no_leftovers, what="the dead node's leftovers removed", timeout_s=30)
        assert f"removed the leftovers of dead node(s) {dead}:" in new_leader.log()
        assert f"removed 1 ask reply list(s) of dead nodes: {keys.replies(dead)}" in (
            new_leader.log()
        )

        # A session ended longer ago than the retention (1 s): archived, then its stream
        # removed; its history reads the same over REST, now from the archive.
        status, created = await asyncio.to_thread(
            http, "POST", new_leader.url + "/api/sessions", {"title": "old"}, token
        )
        assert status == 201, created
        session_id = created["session"]["id"]
        status, _ = await asyncio.to_thread(
            http, "POST", f"{new_leader.url}/api/sessions/{session_id}/end", {}, token
        )
        assert status == 200
        stream = keys.session_events(session_id, deployment.partitions)
        await wait_for(
            lambda: _gone(redis, stream), what="the ended session's stream removed", timeout_s=30
        )
        status, history = await asyncio.to_thread(
            http, "GET", f"{new_leader.url}/api/sessions/{session_id}/events", None, token
        )
        assert status == 200, history
        updates = [
            e["data"]["status"] for e in history["events"] if e["event"] == "session:updated"
        ]
        assert updates == ["active", "ended"], history
        assert "retiring the event streams of 1 session(s)" in new_leader.log()
        assert all(
            "retiring the event streams" not in n.log() for n in nodes if n is not new_leader
        )
    finally:
        await watcher.close()
        await redis.aclose()


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
