"""Several gateway nodes on one Redis are one system: an agent on one node, its watcher on
another, commands and output cross between them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.e2e.test_walking_skeleton import WORKER
from tests.support.processes import Deployment, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login


async def test_a_worker_on_one_node_is_driven_and_watched_from_another(
    deployment: Deployment, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    nodes = [await deployment.start_gateway(f"gw{i}") for i in (1, 2, 3)]
    deployment.start_agent(agent_id, secret_file, nodes[0].url)  # the agent talks to gw1

    async def partitions_spread() -> bool:
        held: list[int] = []
        for node in nodes:
            status, health = await asyncio.to_thread(http, "GET", node.url + "/health")
            if status != 200 or not health["partitions"]:
                return False
            held += health["partitions"]
        return sorted(held) == list(range(16))

    await wait_for(partitions_spread, what="every partition held by exactly one node")

    driver = WebClient()  # starts the worker and types into it through gw2
    await driver.connect(nodes[1].url, await login(nodes[1].url, "alice", PASSWORD))
    watcher = WebClient()  # only watches, through gw3
    await watcher.connect(nodes[2].url, await login(nodes[2].url, "alice", PASSWORD))
    try:
        await wait_for(
            lambda: driver.agent_status_is("online"), what="the agent online, from another node"
        )
        started = await driver.ok(
            "worker:start",
            {
                "agentId": agent_id,
                "tool": "custom",
                "command": [sys.executable, str(WORKER)],
                "workingDirectory": str(tmp_path),
            },
        )
        await watcher.ok("session:join", {"sessionId": started["sessionId"]})
        await watcher.wait_for_event(
            "task:stream", lambda d: d["data"] == "worker: waiting for 2 lines"
        )
        for text in ("from gw2", "again from gw2"):
            await driver.ok("worker:input", {"taskId": started["taskId"], "input": text})
        result = await watcher.wait_for_event("task:result")
        assert result["success"] is True
        lines = [d for n, d in watcher.session_events(started["sessionId"]) if n == "task:stream"]
        assert [d["seq"] for d in lines] == list(range(1, 7))
        assert [d["data"] for d in lines if d["data"].startswith("echo")] == [
            "echo 1: from gw2",
            "echo 2: again from gw2",
        ]
    finally:
        await driver.close()
        await watcher.close()
