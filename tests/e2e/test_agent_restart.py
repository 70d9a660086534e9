"""The agent daemon dies (SIGKILL) while its worker prints, and is started again: the task
it can no longer follow ends as `error` with a message saying so, every line printed
before the end reaches the watcher once, and the worker left behind does not run on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.processes import process_alive, wait_for
from tests.support.running import Running
from tests.support.web import WebClient
from tests.support.workers import printer

LINES = 2000  # far more than gets printed before the kill: the worker must not finish

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def _kill_the_agent_mid_task(
    running: Running, watcher: WebClient, tmp_path: Path
) -> tuple[dict[str, Any], list[psutil.Process]]:
    """Start a long worker, then SIGKILL its daemon; the task and the orphaned worker."""
    started = await watcher.ok(
        "worker:start",
        {"agentId": running.agent_id, "tool": "custom", "command": printer(LINES, 0.02),
         "workingDirectory": str(tmp_path)},
    )  # fmt: skip
    await watcher.ok("session:join", {"sessionId": started["sessionId"]})
    await watcher.wait_for_event("task:stream", lambda d: d["data"] == "line 20")
    workers = psutil.Process(running.agent.popen.pid).children(recursive=True)
    assert workers, "the worker process should be running"
    running.agent.kill()  # SIGKILL: no chance to stop its worker or say goodbye
    return started, workers


def _lines_once_in_order(watcher: WebClient, session_id: str) -> int:
    lines = [d for n, d in watcher.session_events(session_id) if n == "task:stream"]
    assert [d["data"] for d in lines] == [f"line {n}" for n in range(1, len(lines) + 1)]
    assert [d["seq"] for d in lines] == list(range(1, len(lines) + 1))
    return len(lines)


async def test_a_restarted_agent_ends_the_task_its_old_self_was_running(
    running: Running, tmp_path: Path
) -> None:
    watcher = await running.client()
    try:
        started, orphans = await _kill_the_agent_mid_task(running, watcher, tmp_path)
        running.deployment.start_agent(running.agent_id, running.secret_file, running.gateway.url)
        result = await watcher.wait_for_event("task:result", timeout_s=90)
        assert result["success"] is False
        task = await running.task(started["taskId"])
        assert task["status"] == "error", task
        assert "the agent restarted while the worker was running" in task["error"]
        statuses = [
            d for n, d in watcher.session_events(started["sessionId"]) if n == "worker:status"
        ]
        assert statuses[-1]["status"] == "error"
        assert 20 <= _lines_once_in_order(watcher, started["sessionId"]) < LINES
        # The new daemon put an end to the worker its predecessor left running.
        await wait_for(lambda: not any(map(process_alive, orphans)), what="the orphan to end")
    finally:
        await watcher.close()


async def test_an_agent_that_lost_its_state_folder_gets_its_old_task_ended(
    running: Running, tmp_path: Path
) -> None:
    watcher = await running.client()
    try:
        started, orphans = await _kill_the_agent_mid_task(running, watcher, tmp_path)
        # A new machine, or a wiped disk: the daemon knows nothing of the task.
        for worker in orphans:
            worker.kill()
        shutil.rmtree(running.deployment.root / "agents" / running.agent_id)
        running.deployment.start_agent(running.agent_id, running.secret_file, running.gateway.url)
        status = await watcher.wait_for_event(
            "worker:status", lambda d: d["status"] == "error", timeout_s=90
        )
        assert "no longer has this task" in status["message"]
        task = await running.task(started["taskId"])
        assert task["status"] == "error", task
        assert "no longer has this task" in task["error"]
        assert _lines_once_in_order(watcher, started["sessionId"]) >= 20

        # The agent is free again: a new task runs on it.
        again = await watcher.ok(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom", "command": printer(3, 0.01),
             "sessionId": started["sessionId"], "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        await watcher.wait_for_event(
            "task:result", lambda d: d["taskId"] == again["taskId"], timeout_s=60
        )
    finally:
        await watcher.close()
