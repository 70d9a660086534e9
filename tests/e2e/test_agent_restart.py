"""The agent daemon dies (SIGKILL) while its worker prints, and is started again: the task
it can no longer follow ends as `error` with a message saying so, every line printed
before the end reaches the watcher once, and the worker left behind does not run on."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import PASSWORD
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.web import WebClient, login
from tests.support.workers import printer

LINES = 2000  # far more than gets printed before the kill: the worker must not finish

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def _run_until_killed(
    deployment: Deployment, tmp_path: Path
) -> tuple[WebClient, str, dict[str, Any], list[psutil.Process], Path, str]:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url)
    token = await login(gateway.url, "alice", PASSWORD)
    watcher = WebClient()
    await watcher.connect(gateway.url, token)

    async def online() -> bool:
        agents = (await watcher.ok("agents:list", {}))["agents"]
        return bool(agents) and agents[0]["status"] == "online"

    await wait_for(online, what="the agent online")
    started = await watcher.ok(
        "worker:start",
        {"agentId": agent_id, "tool": "custom", "command": printer(LINES, 0.02),
         "workingDirectory": str(tmp_path)},
    )  # fmt: skip
    await watcher.ok("session:join", {"sessionId": started["sessionId"]})
    await watcher.wait_for_event("task:stream", lambda d: d["data"] == "line 20")
    workers = psutil.Process(agent.popen.pid).children(recursive=True)
    assert workers, "the worker process should be running"
    agent.kill()  # SIGKILL: no chance to stop its worker or say goodbye
    return watcher, token, started, workers, secret_file, agent_id


async def _ended_with_error(
    watcher: WebClient, gateway_url: str, token: str, started: dict[str, Any]
) -> str:
    result = await watcher.wait_for_event("task:result", timeout_s=90)
    assert result["success"] is False
    status, body = await asyncio.to_thread(
        http, "GET", f"{gateway_url}/api/tasks/{started['taskId']}", None, token
    )
    assert status == 200, body
    assert body["task"]["status"] == "error", body
    lines = [d for n, d in watcher.session_events(started["sessionId"]) if n == "task:stream"]
    count = len(lines)
    assert [d["data"] for d in lines] == [f"line {n}" for n in range(1, count + 1)]
    assert [d["seq"] for d in lines] == list(range(1, count + 1))
    assert count < LINES
    error: str = body["task"]["error"]
    return error


async def test_a_restarted_agent_ends_the_task_its_old_self_was_running(
    deployment: Deployment, tmp_path: Path
) -> None:
    watcher, token, started, orphans, secret_file, agent_id = await _run_until_killed(
        deployment, tmp_path
    )
    gateway_url = _gateway_url(deployment)
    try:
        deployment.start_agent(agent_id, secret_file, gateway_url)
        error = await _ended_with_error(watcher, gateway_url, token, started)
        assert "the agent restarted while the worker was running" in error
        statuses = [
            d for n, d in watcher.session_events(started["sessionId"]) if n == "worker:status"
        ]
        assert statuses[-1]["status"] == "error"
        # The new daemon put an end to the worker its predecessor left running.
        await wait_for(lambda: not any(_alive(p) for p in orphans), what="the orphan to end")
    finally:
        await watcher.close()


async def test_an_agent_that_lost_its_state_folder_gets_its_old_task_ended(
    deployment: Deployment, tmp_path: Path
) -> None:
    watcher, token, started, orphans, secret_file, agent_id = await _run_until_killed(
        deployment, tmp_path
    )
    gateway_url = _gateway_url(deployment)
    try:
        # A new machine, or a wiped disk: the daemon knows nothing of the task.
        for worker in orphans:
            worker.kill()
        shutil.rmtree(deployment.root / "agents" / agent_id)
        deployment.start_agent(agent_id, secret_file, gateway_url)
        status = await watcher.wait_for_event(
            "worker:status", lambda d: d["status"] == "error", timeout_s=90
        )
        assert "no longer has this task" in status["message"]
        _, body = await asyncio.to_thread(
            http, "GET", f"{gateway_url}/api/tasks/{started['taskId']}", None, token
        )
        assert body["task"]["status"] == "error", body
        assert "no longer has this task" in body["task"]["error"]

        # The agent is free again: a new task runs on it.
        again = await watcher.ok(
            "worker:start",
            {"agentId": agent_id, "tool": "custom", "command": printer(3, 0.01),
             "sessionId": started["sessionId"], "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        await watcher.wait_for_event(
            "task:result", lambda d: d["taskId"] == again["taskId"], timeout_s=60
        )
    finally:
        await watcher.close()


def _gateway_url(deployment: Deployment) -> str:
    return next(p.url for p in deployment.processes if isinstance(p, Gateway))


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
