"""An agent that dies and stays away: its running command is queued again (a custom task
gets one retry) and watchers are told why; the agent's slot is free again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import wait_for
from tests.support.running import Running


@pytest.mark.orchestra_env(ORCHESTRA_AGENT_GRACE_PERIOD_S="2")
async def test_a_task_is_lost_when_its_agent_does_not_come_back(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started = await client.ok(
            "worker:start",
            {
                "agentId": running.agent_id,
                "tool": "custom",
                "command": "echo working; exec sleep 30",  # outlives its killed daemon briefly
                "workingDirectory": str(tmp_path),
            },
        )
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:stream", lambda d: d["data"] == "working")

        running.agent.kill()  # the daemon dies without a word
        await wait_for(lambda: client.agent_status_is("offline"), what="the agent offline")
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
