"""Working directories are confined to the roots the agent allows (here: the test's folder),
with `..` and links resolved, and a refusal is PARAM_001 before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.running import Running
from tests.support.web import WebClient

pytestmark = pytest.mark.sqlite_only


def _start_request(running: Running, command: Any, directory: str | Path) -> dict[str, Any]:
    """`worker:start` of the custom tool on the agent, in `directory`."""
    return {"agentId": running.agent_id, "tool": "custom", "command": command,
            "workingDirectory": str(directory)}  # fmt: skip


async def _start_marker(
    client: WebClient, running: Running, directory: Path, marker: Path
) -> dict[str, Any]:
    """Start a command that prints its folder and touches `marker`, in `directory`, and
    join its session; the answer to `worker:start`."""
    command = ["/bin/sh", "-c", f"pwd; touch {marker}"]
    started = await client.ok("worker:start", _start_request(running, command, directory))
    await client.ok("session:join", {"sessionId": started["sessionId"]})
    return started


async def test_a_directory_outside_the_roots_is_refused_at_start(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        for outside in ("/etc", f"{tmp_path}/../..", f"{tmp_path}/a/../../x"):
            answer = await client.call("worker:start", _start_request(running, "true", outside))
            assert answer["success"] is False, outside
            assert answer["error"]["code"] == "PARAM_001"
            assert "outside the roots" in answer["error"]["message"]
        sessions = (await client.ok("user:sync", {}))["sessions"]
        assert sessions == []  # nothing was started, not even a session
    finally:
        await client.close()


async def test_a_link_that_leads_outside_the_roots_is_refused_before_the_worker_runs(
    running: Running, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")  # not under the agent's root
    (tmp_path / "escape").symlink_to(outside)
    marker = tmp_path / "ran"
    client = await running.client()
    try:
        started = await _start_marker(client, running, tmp_path / "escape", marker)
        status = await client.wait_for_event("worker:status", lambda d: d["status"] == "error")
        assert status["message"].startswith("PARAM_001: working directory")
        assert "outside the roots" in status["message"]
        task = await running.task(started["taskId"])
        assert task["status"] == "error" and task["attempts"] == 1  # not tried elsewhere
        assert not marker.exists()
        assert not any(n == "task:stream" for n, _ in client.session_events(started["sessionId"]))
    finally:
        await client.close()


async def test_a_link_inside_the_roots_is_followed(running: Running, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    marker = tmp_path / "ran"
    client = await running.client()
    try:
        started = await _start_marker(client, running, tmp_path / "alias", marker)
        result = await client.wait_for_event("task:result")
        assert result["success"] is True and marker.exists()
        lines = [
            d["data"] for n, d in client.session_events(started["sessionId"]) if n == "task:stream"
        ]
        assert lines == [str((tmp_path / "real").resolve())]
    finally:
        await client.close()
