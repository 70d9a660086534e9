"""The key-layout mark a gateway node checks at start (`gateway/keyspace.py`), and the
migration from layout 1 (`gateway/migrate.py`) on hand-made layout-1 keys: mail not yet
handled (pending and new), timers, fences, keys that move whole, keys dropped, and a
run interrupted then made again. On a real Redis server."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from gateway.keyspace import MIGRATING, LayoutMismatch, ensure_layout, partitions_key
from gateway.migrate import Migration, MigrationRefused
from orchestra import keys
from orchestra.placement import partition_of
from orchestra.redis_server import RedisServer
from orchestra.settings import Settings


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    connection: Any = Redis.from_url(redis.url, decode_responses=True)
    yield connection
    await connection.aclose()


def settings(tmp_path: Path, partitions: int) -> Settings:
    return Settings.load({"ORCHESTRA_DATA_DIR": str(tmp_path)}, partitions=partitions)


def old_partition(address: str) -> int:
    """Layout 1's placement, 16 partitions: every actor by its own address."""
    return zlib.crc32(address.encode()) % 16


async def test_a_fresh_redis_is_marked_and_another_partition_count_refused(
    client: Any, tmp_path: Path
) -> None:
    await client.hset(keys.task_index(), "t1", "s1")  # named alike in both layouts
    await ensure_layout(client, settings(tmp_path, 8))
    assert await client.get(keys.keyspace()) == keys.LAYOUT
    assert await client.get(partitions_key()) == "8"
    await ensure_layout(client, settings(tmp_path, 8))  # the next start: fine
    with pytest.raises(LayoutMismatch) as refused:
        await ensure_layout(client, settings(tmp_path, 16))
    message = str(refused.value)
    assert "8 partitions" in message and "16" in message and "orchestra redis migrate" in message
    assert "\n" not in message
    assert await client.get(partitions_key()) == "8"


@pytest.mark.parametrize(
    "key", ["orch:mbox:3", "orch:{s:abc}:events", "orch:queue:normal", "orch:agents:online"]
)
async def test_data_of_layout_1_refuses_the_start(client: Any, tmp_path: Path, key: str) -> None:
    if key.startswith("orch:mbox") or key.endswith(":events"):
        await client.xadd(key, {"to": "session:abc"})
    elif key.startswith("orch:queue"):
        await client.zadd(key, {"s/t": 1})
    else:
        await client.sadd(key, "a1")
    with pytest.raises(LayoutMismatch, match="orchestra redis migrate") as refused:
        await ensure_layout(client, settings(tmp_path, 16))
    assert key in str(refused.value)
    assert await client.get(keys.keyspace()) is None


@pytest.mark.parametrize("mark", [MIGRATING, "1", "3"])
async def test_another_mark_refuses_the_start(client: Any, tmp_path: Path, mark: str) -> None:
    await client.set(keys.keyspace(), mark)
    with pytest.raises(LayoutMismatch, match="orchestra redis migrate"):
        await ensure_layout(client, settings(tmp_path, 16))


async def test_the_migration_carries_unfinished_mail_timers_and_fences(client: Any) -> None:
    partitions = 8
    task, session, agent = "task:s1/t1", "session:s1", "agent:a1"
    task_box = f"orch:mbox:{old_partition(task)}"
    session_box = f"orch:mbox:{old_partition(session)}"
    assert task_box != session_box  # layout 1 put them apart; layout 2 together
    # The task's old mailbox: m1 handled, m2 and m3 taken but not acknowledged, m4 new.
    await client.xgroup_create(task_box, "actors", id="0", mkstream=True)
    for n in (1, 2, 3, 4):
        await client.xadd(task_box, {"to": task, "type": "work", "id": f"m{n}"})
    taken = await client.xreadgroup("actors", "gw1", {task_box: ">"}, count=3)
    await client.xack(task_box, "actors", taken[0][1][0][0])
    await client.xadd(session_box, {"to": session, "type": "hello", "id": "m5"})  # no group
    member = json.dumps({"to": agent, "type": "grace:expired", "id": "t1"})
    await client.zadd(f"orch:timers:{old_partition(agent)}", {member: 123})
    await client.set("orch:lease:3:fence", 41)
    await client.set("orch:lease:9:fence", 7)
    dropped = [
        "orch:lease:3:released",
        f"{task_box}:commit:1-0",
        "orch:replies:gw1",
        "orch:{a:a1}:tasks",
    ]
    for key in dropped:
        await client.set(key, "x")
    # Keys that move whole keep their contents, time to live and consumer groups.
    await client.xadd("orch:{s:s1}:events", {"event": "e"})
    await client.xgroup_create("orch:{s:s1}:events", "readers", id="0")
    await client.hset("orch:{s:s1}:task:t1", "status", '"running"')
    await client.hset("orch:{a:a1}", "commandSeq", 4)
    await client.xadd("orch:{a:a1}:outbox", {"event": "task:assign"}, id="0-4")
    await client.hset("orch:actor:dispatcher:default", "pending", "{}")
    await client.sadd("orch:agents:online", "a1")
    await client.zadd("orch:queue:high", {"s1/t2": 5})
    await client.set("orch:{s:s1}", "x", px=600_000)
    before_box = await client.dump(task_box)

    # A live node, or a held lease, stops it before it changes anything.
    await client.zadd(keys.nodes(), {"gw9": int(time.time() * 1000) + 60_000})
    with pytest.raises(MigrationRefused, match="gw9"):
        await Migration(client, partitions).run()
    await client.delete(keys.nodes())
    await client.set("orch:lease:2", "gw9:3", px=60_000)
    with pytest.raises(MigrationRefused, match="orch:lease:2"):
        await Migration(client, partitions).run()
    await client.delete("orch:lease:2")
    assert await client.get(keys.keyspace()) is None

    dry = await Migration(client, partitions, dry_run=True).run()
    assert dry.moved == 8 and dry.mail == 4 and dry.timers == 1
    assert await client.get(keys.keyspace()) is None and await client.exists(task_box)

    report = await Migration(client, partitions).run()
    assert (report.moved, report.mail, report.timers) == (8, 4, 1)
    assert await client.get(keys.keyspace()) == keys.LAYOUT
    home = keys.mailbox(partition_of(session, partitions), partitions)
    assert home == keys.mailbox(partition_of(task, partitions), partitions)
    await _check_mail(client, home)
    timers = keys.timers(partition_of(agent, partitions), partitions)
    assert await client.zrange(timers, 0, -1, withscores=True) == [(member, 123.0)]
    for partition in range(partitions):
        assert await client.get(keys.lease_fence(partition, partitions)) == "41"
    for key in [*dropped, task_box, session_box, "orch:lease:3:fence", "orch:lease:9:fence"]:
        assert not await client.exists(key), key
    events = keys.session_events("s1", partitions)
    assert [g["name"] for g in await client.xinfo_groups(events)] == ["readers"]
    assert await client.hget(keys.task("s1", "t1", partitions), "status") == '"running"'
    assert await client.xrange(keys.agent_outbox("a1", partitions)) == [
        ("0-4", {"event": "task:assign"})
    ]
    assert await client.hget(keys.actor_state("dispatcher:default", partitions), "pending")
    assert await client.smembers(keys.agents_online(partitions)) == {"a1"}
    assert await client.zrange(keys.dispatch_queue("high", partitions), 0, -1) == ["s1/t2"]
    assert 0 < await client.pttl(keys.session("s1", partitions)) <= 600_000

    # Interrupted after the mail was added, before the old mailbox was deleted: run again.
    await client.restore(task_box, 0, before_box)
    await client.set(keys.keyspace(), MIGRATING)
    again = await Migration(client, partitions).run()
    assert again.mail == 0 and again.moved == 0
    await _check_mail(client, home)
    assert not await client.exists(task_box)
    assert (await Migration(client, partitions).run()).line().startswith("nothing to migrate")
    # Another partition count is a move of its own (tests/unit/test_repartition.py).
    assert (await Migration(client, 16).run()).changed
    assert await client.get(partitions_key()) == "16"


async def _check_mail(client: Any, mailbox: str) -> None:
    """The unfinished mail, once each, each actor's in the order sent (two actors' mail
    sent in one millisecond may interleave either way); group `actors` at its start."""
    entries = await client.xrange(mailbox)
    assert sorted(fields["id"] for _, fields in entries) == ["m2", "m3", "m4", "m5"]
    assert [f["id"] for _, f in entries if f["to"].startswith("task:")] == ["m2", "m3", "m4"]
    (group,) = await client.xinfo_groups(mailbox)
    assert (group["name"], group["last-delivered-id"], group["pending"]) == ("actors", "0-0", 0)
