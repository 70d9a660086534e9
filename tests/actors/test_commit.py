"""The one-script commit and the batches of turns it commits, on a real Redis: fencing,
turns held back and committed together, what handlers see meanwhile, `ask` replies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from actors import Actor, ActorSystem, Address, Scripts, streams
from actors.home import Home
from actors.messages import Message
from actors.replies import encode_reply
from actors.turn import Turn
from actors.turn_commit import Plan, commit
from actors.values import read_state
from actors.writes import record
from orchestra import keys, redis_client
from orchestra.errors import OrchestraError
from orchestra.redis_server import RedisServer
from tests.support.actor_systems import MakeSystem, actor_systems
from tests.support.processes import wait_for

SEEN: list[tuple[str, Any]] = []  # what the actors below saw, in order


class Counter(Actor):
    kind = "counter"

    async def on_add(self, turn: Turn) -> int:
        count = int(turn.state.get("count", 0)) + 1
        turn.set(count=count)
        return count

    async def on_bump(self, turn: Turn) -> None:
        """A raw write to its own hash, besides its changes."""
        key = turn.address.state_key(self.env.settings.partitions)
        turn.write(lambda pipe: pipe.hincrby(key, "bumps", 1))

    async def on_look(self, turn: Turn) -> None:
        SEEN.append((str(turn.address), (turn.state.get("count"), turn.state.get("bumps"))))

    async def on_read(self, turn: Turn) -> None:
        """Reads another actor's state from Redis, as the dispatcher does."""
        other = Address("counter", turn.message.body["other"])
        state = await read_state(self.env.redis, other.state_key(self.env.settings.partitions))
        SEEN.append(("read", state.get("count")))

    async def on_effect(self, turn: Turn) -> None:
        async def slowly(_: Any) -> None:
            await asyncio.sleep(0.2)
            SEEN.append(("effect", turn.message.body["n"]))

        turn.after_commit(slowly)

    async def on_emit(self, turn: Turn) -> None:
        await self.env.outlet.to_room("r", "e", {"n": turn.message.body["n"]})

    async def on_bad_write(self, turn: Turn) -> None:
        turn.set(count=-1)
        turn.write(lambda pipe: pipe.delete("a", "b"))  # two keys: not a write a turn may do


class Recorder:
    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        SEEN.append(("push", data))

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        SEEN.append(("emit", data["n"]))

    async def disconnect_agent(self, socket_id: str) -> None:
        return None


@pytest_asyncio.fixture
async def make_system(redis: RedisServer, tmp_path: Path) -> AsyncIterator[MakeSystem]:
    SEEN.clear()
    kinds: dict[str, type[Actor]] = {"counter": Counter}
    async with actor_systems(
        redis.url, tmp_path, Recorder(), kinds, partitions=PARTITIONS, lease_ttl_s=1.5
    ) as make:
        yield make


PARTITIONS = 1  # of the systems made here, and of the plans committed by hand
STREAM, LEASE = keys.mailbox(0, PARTITIONS), keys.lease(0, PARTITIONS)


async def _taken_turn(client: Redis) -> tuple[str, Turn]:
    """One message to counter:x, taken from partition 0's mailbox under the lease "n1:1",
    and a turn of it that sets `count`, tells counter:y and commands agent a1: its entry
    id and the turn, not committed."""
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await streams.xadd(client, STREAM, Message(to="counter:x", type="add").fields())
    read: Any = await client.xreadgroup("g", "c", {STREAM: ">"})
    [[_, [(entry_id, fields)]]] = read
    await client.set(LEASE, "n1:1")
    turn = Turn(address=Address("counter", "x"), message=Message.from_fields(fields), state={})
    turn.set(count=1)
    turn.tell(Address("counter", "y"), "add")
    turn.command("a1", "task:assign", {"taskId": "t1"})
    return entry_id, turn


async def test_a_commit_under_a_lost_lease_writes_nothing(redis: RedisServer) -> None:
    client = redis_client.connect(redis.url)
    scripts = Scripts(client)
    stream, lease = STREAM, LEASE
    entry_id, turn = await _taken_turn(client)
    address = turn.address

    plan = Plan(Home(0, PARTITIONS), "n1:1", "g")
    plan.add_turn(entry_id, turn, {"ok": 1})
    await client.set(lease, "n2:2")  # another node took the partition meanwhile
    assert await commit(scripts, plan) is None
    assert await client.hgetall(address.state_key(PARTITIONS)) == {}
    assert await client.xlen(keys.agent_outbox("a1", PARTITIONS)) == 0
    assert await client.xlen(stream) == 1
    assert (await client.xpending(stream, "g"))["pending"] == 1

    await client.set(lease, "n1:1")  # (a holder with this token may commit)
    committed = await commit(scripts, plan, read_back=address.state_key(PARTITIONS))
    assert committed is not None
    assert committed.read_back == {"count": "1"}
    assert [r.command_ids for r in committed.results] == [[1]]
    assert await client.xlen(stream) == 2  # the message to counter:y
    assert (await client.xpending(stream, "g"))["pending"] == 0
    await client.aclose()


async def test_a_commit_sent_again_commits_once_and_answers_the_same(redis: RedisServer) -> None:
    """A client that lost its connection after sending a commit sends it again (redis-py
    retries on a connection error): the turn must not be applied twice, nor be reported
    as lost, and a holder that took the partition since gets nothing of it."""
    client = redis_client.connect(redis.url)
    scripts = Scripts(client)
    stream, lease = STREAM, LEASE
    entry_id, turn = await _taken_turn(client)
    address = turn.address
    turn.write(lambda pipe: pipe.hincrby(address.state_key(PARTITIONS), "bumps", 1))
    plan = Plan(Home(0, PARTITIONS), "n1:1", "g")
    plan.add_turn(entry_id, turn, {"ok": 1})

    first = await commit(scripts, plan, read_back=address.state_key(PARTITIONS))
    again = await commit(scripts, plan, read_back=address.state_key(PARTITIONS))
    assert first is not None and again is not None
    assert [r.command_ids for r in again.results] == [r.command_ids for r in first.results] == [[1]]
    assert again.read_back == first.read_back == {"count": "1", "bumps": "1"}
    assert await client.hget(address.state_key(PARTITIONS), "bumps") == "1"
    assert await client.xlen(keys.agent_outbox("a1", PARTITIONS)) == 1
    assert await client.hget(keys.agent("a1", PARTITIONS), "commandSeq") == "1"
    assert await client.xlen(stream) == 2  # the message, and the one to counter:y once

    await client.set(lease, "n2:2")  # another node holds the partition now
    stale = Plan(Home(0, PARTITIONS), "n2:2", "g", entry_ids=[entry_id])
    assert await commit(scripts, stale) is None
    await client.aclose()


async def test_a_mailbox_read_sent_again_gives_the_same_mail_first(redis: RedisServer) -> None:
    """A read whose answer was lost with the connection, sent again, gets the entries
    the first one took (before any newer): none is left pending behind later mail."""
    client = redis_client.connect(redis.url)
    scripts = Scripts(client)
    stream, lease, timers = STREAM, LEASE, keys.timers(0, PARTITIONS)
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    for n in range(3):
        await streams.xadd(client, stream, Message(to=f"counter:{n}", type="add").fields())
    await client.set(lease, "n1:1")

    async def read() -> list[str]:
        answer: Any = await scripts.mailbox_read(
            keys=[lease, stream, timers], args=["n1:1", "g", "n1", 2, 0]
        )
        assert int(answer[0]) == 1, answer
        return [entry_id for entry_id, _ in answer[1]]

    first = await read()
    assert len(first) == 2
    assert await read() == first  # sent again: the same two, not the third
    await client.xack(stream, "g", *first)
    [third] = await read()
    assert third not in first
    await client.aclose()


def test_writes_are_recorded_with_redis_py_arguments_one_key_each() -> None:
    writes = record(
        [
            lambda pipe: pipe.zadd("q", {"m": 1.5}),
            lambda pipe: pipe.xadd("s", {"a": "b"}, maxlen=10, approximate=True),
        ]
    )
    assert [(w.command, w.key, w.args) for w in writes] == [
        ("ZADD", "q", (1.5, "m")),
        ("XADD", "s", (b"MAXLEN", b"~", "10", "*", "a", "b")),
    ]
    with pytest.raises(ValueError):
        record([lambda pipe: pipe.delete("a", "b")])
    with pytest.raises(ValueError):
        record([lambda pipe: pipe.get("a")])  # not a write


Mail = list[tuple[str, str, dict[str, Any]]]  # (counter id, message type, body)


async def _send_then_start(make: Callable[..., Any], messages: Mail) -> ActorSystem:
    """Queue every message before any node runs, so that one batch takes them all."""
    sender: ActorSystem = await make("sender", start=False)
    for actor_id, type, body in messages:
        await sender.tell(Address("counter", actor_id), type, body)
    system: ActorSystem = await make("n1")
    return system


async def test_a_batch_of_tells_is_handled_in_order_each_turn_seeing_the_last(
    make_system: Any,
) -> None:
    messages: Mail = [("a", "add", {}), ("b", "add", {}), ("a", "add", {}), ("a", "look", {})]
    messages += [("a", "bump", {}), ("a", "add", {}), ("a", "look", {})]
    system = await _send_then_start(make_system, messages)
    await wait_for(lambda: len(SEEN) == 2, what="both looks")
    # The second look sees the raw write of `bump` too: read back from its commit.
    assert SEEN == [("counter:a", (2, None)), ("counter:a", (3, 1))]
    state = await read_state(system.redis, Address("counter", "a").state_key(system.partitions))
    assert state == {"count": 3, "bumps": 1}


async def test_a_handler_that_reads_redis_sees_the_turns_before_it(make_system: Any) -> None:
    messages: Mail = [("a", "add", {})] * 5 + [("b", "read", {"other": "a"})]
    await _send_then_start(make_system, messages)
    await wait_for(lambda: bool(SEEN), what="the read")
    assert SEEN == [("read", 5)]


async def test_after_commit_effects_run_before_a_later_handler_reaches_out(
    make_system: Any,
) -> None:
    messages: Mail = [("a", "effect", {"n": 1}), ("b", "emit", {"n": 2}), ("a", "effect", {"n": 3})]
    await _send_then_start(make_system, messages)
    await wait_for(lambda: len(SEEN) == 3, what="the effects and the emit")
    assert SEEN == [("effect", 1), ("emit", 2), ("effect", 3)]


async def test_a_turn_whose_write_cannot_commit_fails_alone(make_system: Any) -> None:
    system: ActorSystem = await make_system("n1")
    ref = system.ref(Address("counter", "x"))
    with pytest.raises(OrchestraError) as raised:
        await ref.ask("bad_write")
    assert raised.value.code == "SYS_001"
    assert await ref.ask("add") == 1  # nothing of the failed turn, and the loop goes on


async def test_a_late_reply_is_dropped_and_the_next_ask_answered(make_system: Any) -> None:
    system: ActorSystem = await make_system("n1")
    inbox = keys.replies(system.replies.name)
    await system.redis.rpush(inbox, encode_reply("nobody-waits", {"ok": 1}), "not json")
    assert await system.ref(Address("counter", "x")).ask("add") == 1
    assert await system.ref(Address("counter", "x")).ask("add") == 2
    assert json.loads(encode_reply("m1", {"ok": 2})) == {"id": "m1", "ok": 2}
