"""A timer set on a node that is then SIGKILLed still fires, on the node that takes over.

The timer here is real: an agent's grace period, set by its actor when the agent's socket
closes. The node holding that actor's partition is killed right after; another node takes
the partition over and the timer queues the agent's task again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors import agent_address
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def holder_of(nodes: list[Gateway], partition: int) -> Gateway | None:
    for node in nodes:
        if not node.alive():
            continue
        status, health = await asyncio.to_thread(http, "GET", node.url + "/health")
        if status == 200 and partition in health["partitions"]:
            return node
    return None


async def test_a_grace_timer_fires_after_the_node_that_set_it_is_killed(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.extra_env.update(ORCHESTRA_AGENT_GRACE_PERIOD_S="4", ORCHESTRA_LEASE_TTL_S="3")
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    nodes = [await deployment.start_gateway(name) for name in ("gw1", "gw2", "gw3")]
    partition = agent_address(agent_id).partition(16)
    await wait_for(lambda: holder_of(nodes, partition), what="a holder of the agent's partition")
    holder = await holder_of(nodes, partition)
    assert holder is not None
    others = [n for n in nodes if n is not holder]
    agent = deployment.start_agent(agent_id, secret_file, others[0].url)
    watcher = WebClient()
    await watcher.connect(others[1].url, await login(others[1].url, "alice", PASSWORD))
    try:
        await wait_for(lambda: watcher.agent_status_is("online"), what="the agent online")
        started = await watcher.ok(
            "worker:start",
            {"agentId": agent_id, "tool": "custom", "command": "echo up; exec sleep 30",
             "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        await watcher.ok("session:join", {"sessionId": started["sessionId"]})
        await watcher.wait_for_event("task:stream", lambda d: d["data"] == "up")

        agent.kill()  # the agent actor sets its grace timer on the holder...
        await wait_for(lambda: watcher.agent_status_is("offline"), what="the agent offline")
        holder.kill()  # ...which dies before the timer is due
        requeued = await watcher.wait_for_event(
            "worker:status",
            lambda d: d["status"] == "queued" and "grace period" in (d.get("message") or ""),
            timeout_s=60,
        )
        assert requeued["taskId"] == started["taskId"]
        new_holder = await holder_of(others, partition)
        assert new_holder is not None and new_holder is not holder
    finally:
        await watcher.close()
