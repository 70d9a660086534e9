"""Task attempts (PROTOCOL.md §5, 1.1), from a hand-written agent: each assignment is an
attempt that `task:assign` names, and a report about an earlier attempt changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from tests.e2e.test_handshake import Gate, agent_auth, attempt, call, offline, rest
from tests.e2e.test_handshake import gate as gate  # the fixture: a gateway, alice, her agent
from tests.support.processes import wait_for
from tests.support.web import WebClient

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(ORCHESTRA_AGENT_GRACE_PERIOD_S="1"),
]


async def _agent(gate: Gate) -> tuple[socketio.AsyncClient, list[dict[str, Any]]]:
    """A hand-written agent, registered, and every `task:assign` it receives (each
    acknowledged as our daemon does), listened for from before it registers."""
    connected = await attempt(gate.url, "/agent", agent_auth(gate.agent_id, gate.secret))
    assert connected.connected, connected.error
    received: list[dict[str, Any]] = []

    async def on_assign(data: dict[str, Any]) -> dict[str, Any]:
        received.append(data)
        return {"commandId": data["commandId"]}

    connected.sio.on("task:assign", on_assign, namespace="/agent")
    registration = {"agentId": gate.agent_id, "name": "bench", "capabilities": ["custom"],
                    "agentVersion": "0"}  # fmt: skip
    answer = await call(connected.sio, "/agent", "agent:register", registration)
    assert answer["success"], answer
    return connected.sio, received


async def _report(sio: socketio.AsyncClient, event: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await call(sio, "/agent", event, body)
    return answer


async def test_a_report_about_an_earlier_attempt_changes_nothing(gate: Gate) -> None:
    web = WebClient()
    await web.connect(gate.url, gate.token)
    first, assigned = await _agent(gate)
    try:
        started = await web.ok(
            "worker:start", {"agentId": gate.agent_id, "tool": "custom", "command": "true"}
        )
        await web.ok("session:join", {"sessionId": started["sessionId"]})
        task_id = started["taskId"]
        await wait_for(lambda: assigned, what="the first assignment")
        assert assigned[0]["attempt"] == 1
        ids = {"taskId": task_id, "agentId": gate.agent_id}
        answer = await _report(first, "task:stream", ids | {
            "attempt": 1, "seq": 1, "type": "stdout", "data": "from attempt 1",
            "timestamp": "2026-01-01T00:00:00.000Z"})  # fmt: skip
        assert answer["data"] == {"persistedSeq": 1}

        # The agent goes away past its grace period: the command is queued again and comes
        # back to it, as attempt 2, when it returns.
        await first.disconnect()
        await offline(gate)
        await web.wait_for_event(
            "worker:status", lambda d: d["status"] == "queued" and "again" in d.get("message", "")
        )
        second, again = await _agent(gate)

        async def beating_and_assigned() -> bool:
            # Alive as an agent is: the dispatcher gives tasks to agents heard from lately.
            await call(second, "/agent", "agent:heartbeat", {"agentId": gate.agent_id})
            return bool(again)

        await wait_for(beating_and_assigned, what="the second assignment", interval_s=0.5)
        assert again[-1]["attempt"] == 2

        stale = await _report(second, "task:stream", ids | {
            "attempt": 1, "seq": 2, "type": "stdout", "data": "late, from attempt 1",
            "timestamp": "2026-01-01T00:00:01.000Z"})  # fmt: skip
        assert stale["data"] == {"stale": True, "persistedSeq": 1}
        for event, fields in [
            ("task:result", {"success": True, "duration": 1}),
            ("worker:status", {"status": "completed"}),
            ("worker:permission", {"permissionId": "p1", "tool": "Bash", "input": {}}),
        ]:
            answer = await _report(second, event, ids | {"attempt": 1, **fields})
            assert answer["data"] == {"stale": True}, (event, answer)
        status, task = await rest("GET", f"{gate.url}/api/tasks/{task_id}", token=gate.token)
        assert (status, task["task"]["status"]) == (200, "assigned"), task
        never = await _report(second, "task:accepted", ids | {"attempt": 3})
        assert never["error"]["code"] == "AUTH_002"

        # The current attempt's output is numbered on from the first attempt's.
        fresh = await _report(second, "task:stream", ids | {
            "attempt": 2, "seq": 1, "type": "stdout", "data": "from attempt 2",
            "timestamp": "2026-01-01T00:00:02.000Z"})  # fmt: skip
        assert fresh["data"] == {"persistedSeq": 1}
        done = await _report(second, "task:result", ids | {"attempt": 2, "success": True,
                                                           "duration": 1})  # fmt: skip
        assert done["success"] is True
        await web.wait_for_event("task:result", lambda d: d["taskId"] == task_id)
        lines = [(d["seq"], d["data"]) for n, d in web.events if n == "task:stream"]
        assert lines == [(1, "from attempt 1"), (2, "from attempt 2")]
        assert not [n for n, _ in web.events if n == "worker:permission"]
        status, task = await rest("GET", f"{gate.url}/api/tasks/{task_id}", token=gate.token)
        assert (task["task"]["status"], task["task"]["attempts"]) == ("completed", 2)
        await second.disconnect()
    finally:
        await web.close()
        await asyncio.gather(first.disconnect(), return_exceptions=True)
