"""An agent that dies and stays away: its running command is queued again (a custom task
gets one retry) and watchers are told why; the agent's slot is free again."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import PASSWORD
from tests.support.processes import Deployment, wait_for
from tests.support.web import WebClient, login


async def test_a_task_is_lost_when_its_agent_does_not_come_back(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.extra_env["ORCHESTRA_AGENT_GRACE_PERIOD_S"] = "2"
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url)
    client = WebClient()
    await client.connect(gateway.url, await login(gateway.url, "alice", PASSWORD))
    try:

        async def agent_status() -> str:
            agents = (await client.ok("agents:list", {}))["agents"]
            return str(agents[0]["status"]) if agents else "none"

        await wait_for(lambda: _is(agent_status(), "online"), what="the agent online")
        started = await client.ok(
            "worker:start",
            {
                "agentId": agent_id,
                "tool": "custom",
                "command": "echo working; exec sleep 30",  # outlives its killed daemon briefly
                "workingDirectory": str(tmp_path),
            },
        )
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:stream", lambda d: d["data"] == "working")

        agent.kill()  # the daemon dies without a word
        await wait_for(lambda: _is(agent_status(), "offline"), what="the agent offline")
        requeued = await client.wait_for_event(
            "worker:status",
            lambda d: d["status"] == "queued" and "grace period" in (d.get("message") or ""),
        )
        assert requeued["taskId"] == started["taskId"]
        assert (await client.ok("agents:list", {}))["agents"][0]["load"]["running"] == 0

        task = (await client.ok("user:sync", {}))["sessions"][0]["tasks"][0]
        assert task["status"] == "queued"
        assert task["agentId"] is None
        assert task["attempts"] == 1
    finally:
        await client.close()


async def _is(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]
