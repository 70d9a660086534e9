"""Where an agent runs tasks, as its owner sees it in AgentView: the roots it allows
(`AGENT_ALLOWED_ROOTS`), the directories its tasks ran in lately (reported when they
change, and still there after the agent restarts), and its latency and system info."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Deployment, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

# The SQL backend plays no part here. Heartbeats every 30 s: what changes reaches the
# gateway at once, not with the next one (the gateway takes an agent for silent after
# three intervals, so all processes get the setting).
pytestmark = [pytest.mark.sqlite_only, pytest.mark.orchestra_env(HEARTBEAT_INTERVAL_S="30")]


async def _view(client: WebClient, agent_id: str) -> dict[str, Any]:
    agents = (await client.ok("agents:list", {}))["agents"]
    return next(a for a in agents if a["id"] == agent_id)


async def _run_in(client: WebClient, agent_id: str, directory: Path) -> None:
    """A custom task in `directory`, to its end."""
    started = await client.ok(
        "worker:start",
        {"agentId": agent_id, "tool": "custom", "command": "pwd",
         "workingDirectory": str(directory)},
    )  # fmt: skip
    await client.ok("session:join", {"sessionId": started["sessionId"]})
    result = await client.wait_for_event("task:result", lambda d: d["taskId"] == started["taskId"])
    assert result["success"] is True, result


async def test_an_agent_reports_its_roots_and_recent_directories_across_a_restart(
    deployment: Deployment, tmp_path: Path
) -> None:
    projects, scratch = tmp_path / "projects", tmp_path / "scratch"
    for folder in (projects / "one", projects / "two", scratch):
        folder.mkdir(parents=True)
    roots = {"ORCHESTRA_AGENT_ALLOWED_ROOTS": f"{projects}:{scratch}"}
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("bob", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url, env=roots)
    client, other = WebClient(), WebClient()
    await client.connect(gateway.url, await login(gateway.url, "alice", PASSWORD))
    await other.connect(gateway.url, await login(gateway.url, "bob", PASSWORD))
    try:
        await wait_for(lambda: client.agent_status_is("online", agent_id), what="online")
        view = await _view(client, agent_id)
        assert view["workdirs"] == {"roots": [str(projects), str(scratch)], "recent": []}
        assert (await other.ok("agents:list", {}))["agents"] == []  # only its owner's

        # A ping at registration (then the health check's): the pong measures the latency.
        measured = await wait_for(
            lambda: _measured(client, agent_id), what="the agent's latency and system info"
        )
        assert 0 <= measured["latency"] < 30_000
        assert set(measured["systemInfo"]) == {"cpu", "memory", "disk"}

        await _run_in(client, agent_id, projects / "one")
        await _run_in(client, agent_id, scratch)
        await _run_in(client, agent_id, projects / "one")  # again: first, and once
        expected = [str(projects / "one"), str(scratch)]
        # Told at once (an agents:updated to the owner), well before the next heartbeat.
        await client.wait_for_event(
            "agents:updated",
            lambda d: any((a.get("workdirs") or {}).get("recent") == expected for a in d["agents"]),
            timeout_s=20,
        )
        assert (await _view(client, agent_id))["workdirs"]["recent"] == expected

        # A new daemon on the same state folder registers with the same list.
        before = (await _view(client, agent_id))["connectedAt"]
        agent.stop()
        await wait_for(lambda: client.agent_status_is("offline", agent_id), what="offline")
        deployment.start_agent(agent_id, secret_file, gateway.url, env=roots)
        again = await wait_for(lambda: _registered_after(client, agent_id, before), what="back")
        assert again["workdirs"] == {"roots": [str(projects), str(scratch)], "recent": expected}

        await _run_in(client, agent_id, projects / "two")
        await wait_for(
            lambda: _recent_is(client, agent_id, [str(projects / "two"), *expected]),
            what="the newest directory first",
            timeout_s=20,
        )
    finally:
        await client.close()
        await other.close()


async def _measured(client: WebClient, agent_id: str) -> dict[str, Any] | None:
    view = await _view(client, agent_id)
    return view if view.get("latency") is not None and view.get("systemInfo") else None


async def _registered_after(client: WebClient, agent_id: str, before: str) -> dict[str, Any] | None:
    view = await _view(client, agent_id)
    return view if view["status"] == "online" and view["connectedAt"] != before else None


async def _recent_is(client: WebClient, agent_id: str, expected: list[str]) -> bool:
    return bool((await _view(client, agent_id))["workdirs"]["recent"] == expected)
