"""The dispatcher with the real agent, session and task actors on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from actors import KINDS, ActorEnv, ActorSystem, Scripts, agent_address, task_address
from actors.turn_commit import load_state
from orchestra import redis_client
from orchestra.db import Store
from orchestra.redis_server import RedisServer
from orchestra.settings import Settings
from tests.support.processes import wait_for

OWNER = "u1"


class Unplugged:
    """No sockets here: commands are read from the agents' outboxes instead."""

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        return None

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        return None


@pytest_asyncio.fixture
async def start_node(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Any]:
    """Starts one actor node with every actor kind; settings may be overridden."""
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    client = redis_client.connect(redis.url)
    nodes: list[ActorSystem] = []

    async def start(**overrides: Any) -> ActorSystem:
        settings = Settings.load(
            {}, node_id="n1", redis_url=redis.url, data_dir=tmp_path, jwt_secret="x" * 32,
            **({"partitions": 4} | overrides),
        )  # fmt: skip
        env = ActorEnv(client, Scripts(client), store, settings, Unplugged())
        node = ActorSystem(env, KINDS)
        nodes.append(node)
        await node.start()
        return node

    yield start
    for node in nodes:
        await node.stop()
    await client.aclose()
    await store.close()


@pytest_asyncio.fixture
async def system(start_node: Any) -> ActorSystem:
    node: ActorSystem = await start_node()
    return node


async def connect_agent(system: ActorSystem, agent_id: str, slots: int = 1) -> None:
    await system.ref(agent_address(agent_id)).ask(
        "connected",
        {
            "ownerId": OWNER,
            "name": agent_id,
            "capabilities": ["custom"],
            "version": "test",
            "maxConcurrency": slots,
            "socketId": f"socket-{agent_id}",
            "node": "n1",
        },
    )


async def create_task(system: ActorSystem, tid: str, priority: str) -> None:
    await system.redis.hset("orch:tasks", tid, "s1")
    await system.ref(task_address("s1", tid)).ask(
        "create",
        {"ownerId": OWNER, "tool": "custom", "priority": priority, "parameters": {}},
    )


async def task_state(system: ActorSystem, tid: str) -> dict[str, Any]:
    return await load_state(system.redis, task_address("s1", tid), system.partitions)


async def test_waiting_tasks_leave_the_queue_by_priority_then_arrival(
    system: ActorSystem,
) -> None:
    for tid, priority in [("low1", "low"), ("normal1", "normal"), ("high1", "high"),
                          ("normal2", "normal"), ("high2", "high")]:  # fmt: skip
        await create_task(system, tid, priority)
    assert (await task_state(system, "high1"))["status"] == "queued"

    await connect_agent(system, "a1", slots=1)
    order = []
    for _ in range(5):

        async def next_assigned() -> str | None:
            for tid in ("low1", "normal1", "high1", "normal2", "high2"):
                state = await task_state(system, tid)
                if state["status"] == "assigned" and tid not in order:
                    return tid
            return None

        tid = await wait_for(next_assigned, what="the next task to be assigned")
        order.append(tid)
        # The agent finishes it, which frees its one slot for the next.
        await system.ref(task_address("s1", tid)).ask(
            "result", {"agentId": "a1", "success": True, "duration": 0.1}
        )
    assert order == ["high1", "high2", "normal1", "normal2", "low1"]


async def test_a_rejected_task_goes_to_the_next_agent(system: ActorSystem) -> None:
    await connect_agent(system, "a1")
    await create_task(system, "t1", "normal")
    first = await wait_for(lambda: _assigned_to(system, "t1"), what="the task to be assigned")
    await connect_agent(system, "a2")
    await system.ref(task_address("s1", "t1")).ask(
        "rejected", {"agentId": first, "reason": "busy with something else"}
    )
    other = "a2" if first == "a1" else "a1"
    await wait_for(lambda: _is_assigned_to(system, "t1", other), what="the other agent")
    state = await task_state(system, "t1")
    assert state["rejectedBy"] == [first]
    assert state["attempts"] == 2


async def _agent_runs_none(system: ActorSystem, aid: str) -> bool:
    state = await load_state(system.redis, agent_address(aid), system.partitions)
    return not state.get("running")


async def _assigned_to(system: ActorSystem, tid: str) -> str | None:
    state = await task_state(system, tid)
    return state.get("agentId") if state.get("status") == "assigned" else None


async def _is_assigned_to(system: ActorSystem, tid: str, agent_id: str) -> bool:
    return await _assigned_to(system, tid) == agent_id


async def test_tasks_are_lost_after_their_retries_when_agents_vanish(start_node: Any) -> None:
    system = await start_node(agent_grace_period_s=0.2)
    await connect_agent(system, "a1")
    await create_task(system, "t1", "normal")
    assert await wait_for(lambda: _assigned_to(system, "t1"), what="assigned") == "a1"
    for attempt in (1, 2):
        await system.ref(agent_address("a1")).ask("disconnected", {"socketId": "socket-a1"})
        expected = "queued" if attempt == 1 else "lost"
        await wait_for(
            lambda expected=expected: _status_is(system, "t1", expected),
            what=f"the task {expected} after loss {attempt}",
        )
        if attempt == 1:
            # The agent's actor has let the task go before the agent comes back, so that
            # only the dispatcher's memory of the first assignment could hold it back (it
            # must not: that attempt is over), well within its 30 s window.
            await wait_for(
                lambda: _agent_runs_none(system, "a1"), what="the agent's actor to let t1 go"
            )
            await connect_agent(system, "a1")
            await wait_for(lambda: _assigned_to(system, "t1"), what="assigned again", timeout_s=20)
    state = await task_state(system, "t1")
    assert state["attempts"] == 2
    assert "grace period" in state["error"]


async def _status_is(system: ActorSystem, tid: str, status: str) -> bool:
    return (await task_state(system, tid)).get("status") == status
