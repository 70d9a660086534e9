"""Redis restarted mid-run (append-only file on): the gateway, the agent and the client
find it again by themselves, and no acknowledged output is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestra.client import Client
from orchestra.redis_server import RedisServer
from tests.e2e.conftest import PASSWORD
from tests.support.processes import Deployment, wait_for
from tests.support.workers import printer

LINES = 60


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_a_run_completes_across_a_redis_restart(
    deployment: Deployment, redis: RedisServer, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    deployment.start_agent(agent_id, secret_file, gateway.url)
    client = await Client.login(gateway.url, "alice", PASSWORD)
    received: list[tuple[str, dict[str, Any]]] = []

    async def consume() -> None:
        async for event, data in client.events():
            received.append((event, data))

    consumer = asyncio.create_task(consume())
    try:

        async def online() -> bool:
            agents = (await client.request("agents:list", {}))["agents"]
            return bool(agents) and agents[0]["status"] == "online"

        await wait_for(online, what="the agent online")
        started = await client.start(
            tool="custom", agent_id=agent_id, command=printer(LINES),
            working_directory=str(tmp_path),
        )  # fmt: skip
        await client.join(started["sessionId"])
        await wait_for(lambda: any(d.get("data") == "line 5" for _, d in received), what="line 5")
        await redis.stop()  # a clean shutdown writes the append-only file out
        await redis.restart()
        await wait_for(
            lambda: any(e == "task:result" for e, _ in received), what="the result",
            timeout_s=120,
        )  # fmt: skip
        lines = [d for e, d in received if e == "task:stream"]
        assert [d["data"] for d in lines] == [f"line {n}" for n in range(1, LINES + 1)]
        assert [d["seq"] for d in lines] == list(range(1, LINES + 1))
    finally:
        await client.close()
        consumer.cancel()
