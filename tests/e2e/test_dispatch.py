"""Tasks without an agent: queued, told why they wait, dispatched when an agent fits."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import Deployment
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login


async def test_a_queued_task_runs_as_soon_as_an_agent_appears(
    deployment: Deployment, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    client = WebClient()
    await client.connect(gateway.url, await login(gateway.url, "alice", PASSWORD))
    try:
        started = await client.ok(
            "worker:start",
            {"tool": "custom", "command": "echo dispatched", "workingDirectory": str(tmp_path)},
        )
        assert started["status"] == "queued"
        assert started["agentId"] is None
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        waiting = await client.wait_for_event(
            "worker:status", lambda d: d["status"] == "queued" and d.get("message")
        )
        assert "no agent is online" in waiting["message"]

        deployment.start_agent(agent_id, secret_file, gateway.url)
        line = await client.wait_for_event("task:stream")
        assert line["data"] == "dispatched"
        assert line["agentId"] == agent_id
        result = await client.wait_for_event("task:result")
        assert result["success"] is True

        # A capability nobody offers: the task waits and says so.
        gpu = await client.ok(
            "worker:start",
            {
                "sessionId": started["sessionId"],
                "tool": "custom",
                "command": "true",
                "requiredCapabilities": ["gpu"],
            },
        )
        message = await client.wait_for_event(
            "worker:status",
            lambda d: d["taskId"] == gpu["taskId"] and "gpu" in (d.get("message") or ""),
        )
        assert message["status"] == "queued"
        unknown = await client.call("worker:start", {"tool": "custom", "command": "true",
                                                     "strategy": "fastest-please"})  # fmt: skip
        assert unknown["error"]["code"] == "PARAM_001"
        await client.ok("worker:stop", {"taskId": gpu["taskId"]})
        await client.wait_for_event(
            "worker:status", lambda d: d["taskId"] == gpu["taskId"] and d["status"] == "cancelled"
        )
    finally:
        await client.close()
