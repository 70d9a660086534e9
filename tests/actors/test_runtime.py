"""The actor runtime against a real Redis: turns, ordering, replies, takeover, fencing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors import Actor, ActorSystem, Address
from actors.turn import Turn
from orchestra.errors import ConnectionTimeout, InvalidParameters
from orchestra.redis_server import RedisServer
from tests.support.actor_systems import MakeSystem, actor_systems
from tests.support.processes import wait_for


class Counter(Actor):
    """A test actor: counts messages and remembers their order per sender."""

    kind = "counter"

    async def on_add(self, turn: Turn) -> int:
        body = turn.message.body
        seen = dict(turn.state.get("seen") or {})
        last = seen.get(body["sender"], 0)
        if body["n"] != last + 1:
            turn.set(outOfOrder=int(turn.state.get("outOfOrder", 0)) + 1)
        seen[body["sender"]] = body["n"]
        count = int(turn.state.get("count", 0)) + 1
        turn.set(count=count, seen=seen)
        return count

    async def on_remind(self, turn: Turn) -> None:
        turn.schedule(turn.message.body["delay_s"], "add", {"sender": "timer", "n": 1})
        turn.set(remindedAt=time.time())

    async def on_fail(self, turn: Turn) -> None:
        turn.set(count=-1000)  # must not be committed: the handler raises
        raise InvalidParameters("refused on purpose")


class NoSockets:
    """These tests' actors never reach sockets."""

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        raise AssertionError("unexpected socket emit")

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        raise AssertionError("unexpected socket emit")

    async def disconnect_agent(self, socket_id: str) -> None:
        raise AssertionError("unexpected socket emit")


@pytest_asyncio.fixture
async def make_system(redis: RedisServer, tmp_path: Path) -> AsyncIterator[MakeSystem]:
    kinds: dict[str, type[Actor]] = {"counter": Counter}
    async with actor_systems(
        redis.url, tmp_path, NoSockets(), kinds, partitions=4, lease_ttl_s=1.5
    ) as make:
        yield make


async def state(system: ActorSystem, address: Address) -> dict[str, Any]:
    from actors.turn_commit import load_state

    return await load_state(system.redis, address, system.partitions)


async def test_messages_are_handled_once_each_in_each_senders_order(make_system: Any) -> None:
    system = await make_system("n1")
    actors = [Address("counter", f"c{i}") for i in range(5)]
    for n in range(1, 41):
        for sender in ("a", "b"):
            for address in actors:
                await system.tell(address, "add", {"sender": sender, "n": n})

    async def all_counted() -> bool:
        counts = [(await state(system, a)).get("count") for a in actors]
        return counts == [80] * len(actors)

    await wait_for(all_counted, what="every message handled")
    for address in actors:
        final = await state(system, address)
        assert final["seen"] == {"a": 40, "b": 40}
        assert "outOfOrder" not in final


async def test_ask_answers_and_errors_change_nothing(make_system: Any) -> None:
    system = await make_system("n1")
    ref = system.ref(Address("counter", "x"))
    assert await ref.ask("add", {"sender": "s", "n": 1}) == 1
    with pytest.raises(InvalidParameters):
        await ref.ask("fail")
    with pytest.raises(InvalidParameters):
        await ref.ask("no-such-message")
    assert await ref.ask("add", {"sender": "s", "n": 2}) == 2
    assert (await state(system, ref.address))["count"] == 2


async def test_ask_fails_with_conn_002_when_nobody_answers(make_system: Any) -> None:
    sender = await make_system("sender-only", start=False)
    with pytest.raises(ConnectionTimeout) as raised:
        await sender.ask(Address("counter", "x"), "add", {"sender": "s", "n": 1}, timeout_s=0.5)
    assert raised.value.code == "CONN_002"


async def test_a_stopped_nodes_messages_are_handled_by_the_next_holder(make_system: Any) -> None:
    # Messages sent while no node runs are handled once a node takes the partitions.
    sender = await make_system("sender-only", start=False)
    address = Address("counter", "late")
    for n in range(1, 21):
        await sender.tell(address, "add", {"sender": "s", "n": n})
    first = await make_system("n1")
    await wait_for(lambda: _count_is(first, address, 20), what="the first node to handle all")
    await first.stop()
    for n in range(21, 31):
        await sender.tell(address, "add", {"sender": "s", "n": n})
    second = await make_system("n2")
    await wait_for(lambda: _count_is(second, address, 30), what="the second node to take over")
    assert "outOfOrder" not in await state(second, address)


async def test_partitions_are_spread_over_live_nodes(make_system: Any) -> None:
    one = await make_system("n1", partitions=8)
    two = await make_system("n2", partitions=8)

    def spread() -> bool:
        held = one.held_partitions + two.held_partitions
        return (
            sorted(held) == list(range(8))
            and bool(one.held_partitions)
            and bool(two.held_partitions)
        )

    await wait_for(spread, what="both nodes to hold a share of the partitions", timeout_s=30)


async def _count_is(system: ActorSystem, address: Address, expected: int) -> bool:
    return (await state(system, address)).get("count") == expected


async def test_a_timer_fires_after_its_delay_even_when_its_node_is_gone(make_system: Any) -> None:
    first = await make_system("n1")
    address = Address("counter", "reminded")
    await first.ref(address).ask("remind", {"delay_s": 1.0})
    await first.stop()  # the node that set the timer is gone before it is due
    second = await make_system("n2")
    await wait_for(lambda: _count_is(second, address, 1), what="the timer to fire")
    final = await state(second, address)
    assert final["seen"] == {"timer": 1}
    assert time.time() - final["remindedAt"] >= 1.0
