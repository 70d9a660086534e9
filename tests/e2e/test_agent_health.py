"""The leader's health check: an agent frozen with SIGSTOP stops answering pings and is
marked unhealthy within a few seconds, while still online; silent for three heartbeats,
it goes offline; after SIGCONT it registers again and is online and healthy. `/health`
counts the agents and says `degraded` while one is unhealthy."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from tests.support.processes import http, wait_for
from tests.support.running import Running
from tests.support.web import login

PING_S, PONG_TIMEOUT_S = 0.5, 1.0

# The SQL backend plays no part here: SQLite only.
pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(
        ORCHESTRA_AGENT_PING_INTERVAL_S=str(PING_S),
        ORCHESTRA_AGENT_PONG_TIMEOUT_S=str(PONG_TIMEOUT_S),
        # Offline after three missed heartbeats: 6 to 12 s after the freeze, well after
        # the missing pong (1 to 2 s), even on a busy host.
        ORCHESTRA_HEARTBEAT_INTERVAL_S="3",
    ),
]


async def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(http, "GET", url, None, token)


async def test_a_frozen_agent_is_unhealthy_then_offline_and_healthy_again(
    running: Running,
) -> None:
    url = running.gateway.url
    await running.deployment.create_user("root", "root's long password", admin=True)
    root = await login(url, "root", "root's long password")

    async def agent_health() -> dict[str, Any]:
        status, body = await get(url + "/health/agents", root)
        assert status == 200, body
        (agent,) = body["agents"]
        return agent

    async def agent_is(status: str, healthy: bool) -> dict[str, Any] | None:
        agent = await agent_health()
        return agent if (agent["status"], agent["healthy"]) == (status, healthy) else None

    agent = await wait_for(lambda: agent_is("online", True), what="the agent online and healthy")
    assert agent["latency"] is not None and 0 <= agent["latency"] < PONG_TIMEOUT_S * 1000
    _, health = await get(url + "/health")
    assert (health["status"], health["agents"]) == ("healthy", {"total": 1, "healthy": 1})
    assert health["jobs"]["health-check"]["runs"] > 0  # this lone node leads

    os.kill(running.agent.popen.pid, signal.SIGSTOP)  # connected, and answering nothing
    try:
        # No pong within the timeout: unhealthy, while still online.
        agent = await wait_for(
            lambda: agent_is("online", False), what="the agent unhealthy", timeout_s=10
        )
        assert agent["error"] == f"no pong within {PONG_TIMEOUT_S:g} s"
        _, health = await get(url + "/health")
        assert (health["status"], health["agents"]) == ("degraded", {"total": 1, "healthy": 0})
        assert health["reasons"] == ["1 connected agent(s) unhealthy"]
        # Silent past three heartbeats: offline (and still not healthy).
        agent = await wait_for(
            lambda: agent_is("offline", False), what="the agent offline", timeout_s=30
        )
        assert agent["error"] == "offline"
        _, health = await get(url + "/health")
        assert (health["status"], health["agents"]) == ("healthy", {"total": 0, "healthy": 0})
    finally:
        os.kill(running.agent.popen.pid, signal.SIGCONT)

    await wait_for(lambda: agent_is("online", True), what="the agent back, healthy", timeout_s=30)
    # AgentView says so too (an optional field: clients that do not know it ignore it).
    _, listed = await get(url + "/api/agents", running.token)
    (view,) = listed["agents"]
    assert (view["status"], view["healthy"]) == ("online", True)
