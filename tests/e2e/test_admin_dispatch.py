"""An admin's queued task (no `agentId`) goes to the admin's own agents, never to another
user's; an admin may still name another user's agent (PROTOCOL.md §7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.processes import Deployment, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_an_admins_queued_task_waits_for_the_admins_own_agent(
    deployment: Deployment, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("root", "root's password", admin=True)
    alices_agent, alices_secret = await deployment.create_agent("alices-box", owner="alice")
    roots_agent, roots_secret = await deployment.create_agent("roots-box", owner="root")
    gateway = await deployment.start_gateway("gw1")
    deployment.start_agent(alices_agent, alices_secret, gateway.url)
    token = await login(gateway.url, "root", "root's password")
    root = WebClient()
    await root.connect(gateway.url, token)
    try:
        await wait_for(
            lambda: root.agent_status_is("online", alices_agent), what="alice's agent online"
        )
        queued = await root.ok(
            "worker:start",
            {"tool": "custom", "command": "echo queued", "workingDirectory": str(tmp_path)},
        )
        assert queued["status"] == "queued" and queued["agentId"] is None
        await root.ok("session:join", {"sessionId": queued["sessionId"]})
        waiting = await root.wait_for_event(
            "worker:status",
            lambda d: (
                d["taskId"] == queued["taskId"] and d["status"] == "queued" and d.get("message")
            ),
        )
        assert "no agent is online" in waiting["message"]  # root has none: alice's is not his

        # Named explicitly, alice's agent does run an admin's task.
        named = await root.ok(
            "worker:start",
            {"agentId": alices_agent, "tool": "custom", "command": "echo named",
             "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        await root.ok("session:join", {"sessionId": named["sessionId"]})
        result = await root.wait_for_event("task:result", lambda d: d["taskId"] == named["taskId"])
        assert result["success"] is True and result["agentId"] == alices_agent
        status, body = await asyncio.to_thread(
            http, "GET", f"{gateway.url}/api/tasks/{queued['taskId']}", None, token
        )
        assert status == 200 and body["task"]["status"] == "queued", body
        assert body["task"].get("agentId") is None, body

        # The admin's own agent comes online: the queued task runs there.
        deployment.start_agent(roots_agent, roots_secret, gateway.url)
        line = await root.wait_for_event("task:stream", lambda d: d["taskId"] == queued["taskId"])
        assert line["data"] == "queued" and line["agentId"] == roots_agent
        result = await root.wait_for_event("task:result", lambda d: d["taskId"] == queued["taskId"])
        assert result["success"] is True
    finally:
        await root.close()
