"""An agent's acknowledgement takes exactly the command it names out of the outbox.

Commands for different tasks are written by different actors and may be pushed, and
acknowledged, out of their order: the acknowledgement of a later command must not count
an earlier one, still on its way, as taken (it would never be sent again if lost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors import streams
from orchestra import keys, redis_client
from tests.e2e.test_handshake import Gate, agent_auth, attempt, call
from tests.e2e.test_handshake import gate as gate  # the fixture: a gateway, alice, her agent
from tests.support.processes import wait_for
from tests.support.web import WebClient

pytestmark = [pytest.mark.sqlite_only]


async def test_a_later_ack_leaves_an_earlier_command_waiting(gate: Gate) -> None:
    connected = await attempt(gate.url, "/agent", agent_auth(gate.agent_id, gate.secret))
    assert connected.connected, connected.error
    agent = connected.sio
    received: list[int] = []
    release_first = asyncio.Event()

    async def on_assign(data: dict[str, Any]) -> dict[str, Any]:
        received.append(data["commandId"])
        if len(received) == 1:
            await release_first.wait()  # the first one is slow to be taken
        return {"commandId": data["commandId"]}

    agent.on("task:assign", on_assign, namespace="/agent")
    registration = {"agentId": gate.agent_id, "name": "acks", "capabilities": ["custom"],
                    "agentVersion": "0", "maxConcurrency": 4}  # fmt: skip
    assert (await call(agent, "/agent", "agent:register", registration))["success"]
    web = WebClient()
    await web.connect(gate.url, gate.token)
    redis = redis_client.connect(gate.deployment.redis_url)
    outbox = keys.agent_outbox(gate.agent_id, gate.deployment.partitions)

    async def waiting() -> list[int]:
        return [int(entry_id.split("-")[1]) for entry_id, _ in await streams.xrange(redis, outbox)]

    try:
        start = {"agentId": gate.agent_id, "tool": "custom", "command": "true"}
        await web.ok("worker:start", start)
        await wait_for(lambda: len(received) == 1, what="the first assignment")
        await web.ok("worker:start", start)
        await wait_for(lambda: len(received) == 2, what="the second assignment")
        first, second = received
        assert second > first

        async def second_acknowledged() -> bool:
            return second not in await waiting()

        await wait_for(second_acknowledged, what="the second command acknowledged")
        assert await waiting() == [first], "the first command is still unacknowledged"
        release_first.set()

        async def all_acknowledged() -> bool:
            return await waiting() == []

        await wait_for(all_acknowledged, what="the first command acknowledged")
    finally:
        release_first.set()
        await web.close()
        await agent.disconnect()
        await redis.aclose()
