"""An agent that goes silent without closing its socket (here: its daemon is frozen with
SIGSTOP) is taken offline after three missed heartbeats. Once its grace period is over
its task is queued again; when the agent comes back the task runs on it anew, and the
watcher's output numbering goes on from the first attempt without a gap."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.support.processes import http, process_alive, wait_for
from tests.support.running import Running
from tests.support.workers import printer

LINES = 40

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(ORCHESTRA_AGENT_GRACE_PERIOD_S="2"),
]


async def test_a_silent_agent_goes_offline_and_its_task_runs_again_when_it_returns(
    running: Running, tmp_path: Path
) -> None:
    watcher = await running.client()
    agent = running.agent

    try:
        started = await watcher.ok(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom", "command": printer(LINES, 0.1),
             "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        session_id, task_id = started["sessionId"], started["taskId"]
        await watcher.ok("session:join", {"sessionId": session_id})
        await watcher.wait_for_event("task:stream", lambda d: d["data"] == "line 5")
        first_worker = psutil.Process(agent.popen.pid).children(recursive=True)

        os.kill(agent.popen.pid, signal.SIGSTOP)  # alive, connected, and saying nothing
        try:
            await wait_for(lambda: watcher.agent_status_is("offline"), what="the agent offline")
            await watcher.wait_for_event(
                "worker:status",
                lambda d: d["status"] == "queued" and "queued again" in (d.get("message") or ""),
            )
        finally:
            os.kill(agent.popen.pid, signal.SIGCONT)

        result = await watcher.wait_for_event("task:result", timeout_s=90)
        assert result["success"] is True
        _, body = await asyncio.to_thread(
            http, "GET", f"{running.gateway.url}/api/tasks/{task_id}", None, running.token
        )
        assert body["task"]["status"] == "completed", body
        assert body["task"]["attempts"] == 2, body
        lines = [d for n, d in watcher.session_events(session_id) if n == "task:stream"]
        texts = [d["data"] for d in lines]
        # The first attempt's lines, then the whole of the second, numbered on without a gap.
        restart = len(texts) - LINES
        assert restart >= 5
        assert texts[:restart] == [f"line {n}" for n in range(1, restart + 1)]
        assert texts[restart:] == [f"line {n}" for n in range(1, LINES + 1)]
        assert [d["seq"] for d in lines] == list(range(1, len(lines) + 1))
        # The first attempt's worker did not run on beside the second.
        assert not any(map(process_alive, first_worker))
    finally:
        await watcher.close()
