"""Moving a layout-2 Redis to another partition count (`gateway/repartition.py`) on
hand-made keys of 4 partitions: what the outgoing streams still held is delivered, the
actors' keys move, unfinished mail and timers go to the new partitions, fences carry
over, the old partitions' keys go; and a run cut short in any phase, made again, ends the
same. On a real Redis server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from gateway.keyspace import partitions_key
from gateway.migrate import FROM_PARTITIONS, Migration
from gateway.repartition import PHASE, Repartition
from orchestra import keys
from orchestra.placement import partition_of, partition_tag, slot_tag
from orchestra.redis_server import RedisServer

OLD, NEW = 4, 8
TASK, SESSION, AGENT = "task:s1/t1", "session:s1", "agent:a1"


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    connection: Any = Redis.from_url(redis.url, decode_responses=True)
    yield connection
    await connection.aclose()


def mail(to: str, ident: str) -> list[str]:
    return ["to", to, "type", "work", "body", "{}", "sender", "", "id", ident]


async def seed(client: Any) -> None:
    """Layout 2 with 4 partitions, as nodes that stopped would leave it."""
    await client.set(keys.keyspace(), keys.LAYOUT)
    await client.set(partitions_key(), OLD)
    events = keys.session_events("s1", OLD)
    await client.xadd(events, {"event": "e"})
    await client.xgroup_create(events, "readers", id="0")
    await client.hset(keys.session("s1", OLD), "trimmedTo", '"0-0"')
    await client.hset(keys.task("s1", "t1", OLD), "status", '"running"')
    await client.hset(keys.agent("a1", OLD), "commandSeq", 4)
    await client.xadd(keys.agent_outbox("a1", OLD), {"event": "task:assign"}, id="0-4")
    await client.hset(keys.actor_state("dispatcher:default", OLD), "pending", "{}")
    await client.zadd(keys.dispatch_queue("normal", OLD), {"s1/t2": 5})
    await client.sadd(keys.agents_online(OLD), "a1")
    box = keys.mailbox(partition_of(TASK, OLD), OLD)
    await client.xgroup_create(box, "actors", id="0", mkstream=True)
    for n in (1, 2, 3, 4):
        await client.xadd(box, dict(zip(*[iter(mail(TASK, f"m{n}"))] * 2, strict=True)))
    taken = await client.xreadgroup("actors", "gw1", {box: ">"}, count=3)
    await client.xack(box, "actors", taken[0][1][0][0])
    await client.xadd(box, dict(zip(*[iter(mail(SESSION, "m5"))] * 2, strict=True)))
    member = json.dumps({"to": AGENT, "type": "grace:expired", "id": "t1"})
    await client.zadd(keys.timers(partition_of(AGENT, OLD), OLD), {member: 123})
    await client.set(keys.lease_fence(0, OLD), 41)
    await client.set(keys.lease_fence(3, OLD), 7)
    await client.set(keys.lease_released(2, OLD), 1)
    await client.set(keys.commit_memo(box, "1-0"), "x")
    # An outgoing stream its holder had not forwarded: mail to the task, a command to the
    # agent; and a receiver's mark of an earlier delivery.
    sender = next(n for n in range(OLD) if n != partition_of(TASK, OLD))
    out = keys.outgoing(sender, OLD)
    agent_key = keys.agent("a1", OLD)
    writes = [
        (box, ["C", box, "XADD", "*", *mail(TASK, "m6")]),
        (agent_key, ["O", agent_key, keys.agent_outbox("a1", OLD), "task:cancel", "{}", "a1"]),
    ]
    for key, write in writes:
        await client.xadd(out, {"to": slot_tag(key), "w": json.dumps(write)})
    await client.hset(keys.inbound(partition_tag(sender, OLD)), "x", "1-0")


async def check(client: Any) -> None:
    assert await client.get(keys.keyspace()) == keys.LAYOUT
    assert await client.get(partitions_key()) == str(NEW)
    assert not await client.exists(FROM_PARTITIONS, PHASE)
    events = keys.session_events("s1", NEW)
    assert [g["name"] for g in await client.xinfo_groups(events)] == ["readers"]
    assert await client.hget(keys.task("s1", "t1", NEW), "status") == '"running"'
    assert await client.hget(keys.agent("a1", NEW), "commandSeq") == "5"
    outbox = await client.xrange(keys.agent_outbox("a1", NEW))
    assert [(i, f["event"]) for i, f in outbox] == [("0-4", "task:assign"), ("0-5", "task:cancel")]
    assert await client.hget(keys.actor_state("dispatcher:default", NEW), "pending") == "{}"
    assert await client.zrange(keys.dispatch_queue("normal", NEW), 0, -1) == ["s1/t2"]
    assert await client.smembers(keys.agents_online(NEW)) == {"a1"}
    box = keys.mailbox(partition_of(TASK, NEW), NEW)
    entries = await client.xrange(box)
    assert sorted(f["id"] for _, f in entries) == ["m2", "m3", "m4", "m5", "m6"]
    assert [f["id"] for _, f in entries if f["to"] == TASK] == ["m2", "m3", "m4", "m6"]
    (group,) = await client.xinfo_groups(box)
    assert (group["last-delivered-id"], group["pending"]) == ("0-0", 0)
    timers = keys.timers(partition_of(AGENT, NEW), NEW)
    assert [m for m, _ in await client.zrange(timers, 0, -1, withscores=True)] == [
        json.dumps({"to": AGENT, "type": "grace:expired", "id": "t1"})
    ]
    for n in range(NEW):
        assert await client.get(keys.lease_fence(n, NEW)) == "41"
    new_names = {keys.mailbox(n, NEW) for n in range(NEW)} | {
        keys.timers(n, NEW) for n in range(NEW)
    } | {keys.lease_fence(n, NEW) for n in range(NEW)}  # fmt: skip
    for n in range(OLD):
        for old in (keys.mailbox(n, OLD), keys.timers(n, OLD), keys.lease_fence(n, OLD),
                    keys.lease_released(n, OLD), keys.outgoing(n, OLD)):  # fmt: skip
            assert old in new_names or not await client.exists(old), old
    left = [k async for k in client.scan_iter("orch:*")]
    assert not [k for k in left if "migrate" in k or k.endswith(":inbound") or ":commit:" in k]
    assert not [k for k in left if k.startswith("orch:{p:") and not _is_new(k)]


def _is_new(key: str) -> bool:
    tag = slot_tag(key)
    return any(tag == partition_tag(n, NEW) for n in range(NEW))


async def test_a_new_partition_count_moves_everything(client: Any) -> None:
    await seed(client)
    dry = await Migration(client, NEW, dry_run=True).run()
    assert dry.mail == 4 and dry.timers == 1  # (the undelivered m6 is not counted dry)
    assert await client.get(partitions_key()) == str(OLD)
    report = await Migration(client, NEW).run()
    assert (report.mail, report.timers, report.moved) == (5, 1, 8)
    await check(client)
    assert not (await Migration(client, NEW).run()).changed


class CutInStaging(Repartition):
    async def _rebuild_timers(self, timers: dict[int, str]) -> None:
        raise RuntimeError("cut")


class CutInCleaning(Repartition):
    async def _drop(self, names: list[str], *, counted: bool = True) -> None:
        await super()._drop(names[: len(names) // 2], counted=counted)
        raise RuntimeError("cut")


class CutInPlacing(Repartition):
    async def _carry_fences(self, fences: list[str], into: list[str] | None = None) -> None:
        raise RuntimeError("cut")


@pytest.mark.parametrize("cut", [CutInStaging, CutInCleaning, CutInPlacing])
async def test_a_run_cut_short_is_made_again(client: Any, cut: type[Repartition]) -> None:
    await seed(client)
    with pytest.raises(RuntimeError, match="cut"):
        await cut(client, OLD, NEW).run()
    assert await client.get(keys.keyspace()) == "migrating"
    with pytest.raises(Exception, match="--partitions 8"):
        await Migration(client, 16).run()
    await Migration(client, NEW).run()
    await check(client)
