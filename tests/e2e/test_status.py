"""`orchestra status` against a real deployment: two gateway nodes and an agent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.processes import Deployment, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import login

PARTITIONS = 16


@pytest.mark.sqlite_only
async def test_status_names_the_nodes_their_partitions_the_leader_and_the_agent(
    deployment: Deployment,
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateways = [await deployment.start_gateway("gw1"), await deployment.start_gateway("gw2")]
    deployment.start_agent(agent_id, secret_file, gateways[1].url)
    # A task no agent can take waits in the dispatch queue.
    token = await login(gateways[0].url, "alice", PASSWORD)
    status, started = await asyncio.to_thread(
        http,
        "POST",
        gateways[0].url + "/api/tasks",
        {"tool": "custom", "command": ["true"], "requiredCapabilities": ["gpu"]},
        token,
    )
    assert status == 201, started

    async def settled() -> dict[str, Any] | None:
        """`status --json` once both nodes hold their partitions and the agent is online."""
        found: dict[str, Any] = json.loads(
            await asyncio.to_thread(deployment.orchestra, "status", "--json")
        )
        nodes = {node["id"]: node for node in found["nodes"]}
        agents = {agent["id"]: agent for agent in found["agents"]}
        if sorted(nodes) != ["gw1", "gw2"] or not all(n["partitions"] for n in nodes.values()):
            return None
        if found["leader"] is None or agents.get(agent_id, {}).get("status") != "online":
            return None
        return found

    found = await wait_for(settled, interval_s=0.5, what="both nodes and the agent online")

    # What each node says of itself (`/health`) is what the status read from Redis.
    healths = {}
    for gateway in gateways:
        code, health = await asyncio.to_thread(http, "GET", gateway.url + "/health")
        assert code == 200, health
        healths[health["node"]] = health
    for node in found["nodes"]:
        assert node["partitions"] == sorted(healths[node["id"]]["partitions"])
    held = sorted(p for node in found["nodes"] for p in node["partitions"])
    assert held == list(range(PARTITIONS)) and found["partitions"]["unheld"] == []
    assert healths[found["leader"]]["leader"] is True
    assert [n["id"] for n in found["nodes"] if n["leader"]] == [found["leader"]]
    agent = next(a for a in found["agents"] if a["id"] == agent_id)
    assert (agent["name"], agent["healthy"], agent["running"]) == ("box", True, 0)
    assert found["queue"]["depth"] == 1 and found["queue"]["byPriority"]["normal"] == 1
    assert found["alerts"] == []

    # The same for a terminal.
    text = await asyncio.to_thread(deployment.orchestra, "status")
    lines = text.splitlines()
    assert lines[0].startswith(f"Nodes: 2 live, leader {found['leader']}, 16 partitions")
    leader_row = next(line.split() for line in lines if line.split()[:1] == [found["leader"]])
    assert leader_row[1] == "yes"
    follower = ({"gw1", "gw2"} - {found["leader"]}).pop()
    assert any(line.split()[:1] == [follower] for line in lines)
    agent_row = next(line.split() for line in lines if line.split()[:1] == [agent_id])
    assert agent_row[1:4] == ["box", "online", "yes"]
    assert "Agents: 1, 1 healthy" in lines
    assert any(line.startswith("Dispatch queue: 1 waiting") for line in lines)
    assert "Alerts firing: none" in lines
