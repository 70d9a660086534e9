"""The cleanup jobs against a real Redis: they remove a dead node's leftovers and orphan
queue entries, leave what a live node or a live task holds, and a second run removes
nothing more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest_asyncio
from redis.asyncio import Redis

from actors.runtime import GROUP
from gateway.jobs.cleanup import (
    remove_dead_nodes,
    remove_dead_reply_lists,
    remove_orphan_queue_entries,
)
from orchestra import keys, redis_client
from orchestra.redis_server import RedisServer


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(redis.url)
    yield client
    await client.aclose()


async def test_a_dead_nodes_leftovers_go_and_a_live_nodes_stay(client: Redis) -> None:
    now_ms = int(time.time() * 1000)
    await client.zadd(keys.nodes(), {"live": now_ms + 60_000, "dead": now_ms - 1})
    mailbox = keys.mailbox(0, 1)  # the one partition of `partitions=1` below
    await client.xgroup_create(mailbox, GROUP, id="0", mkstream=True)
    entry_id = await client.xadd(mailbox, {"to": "x"})
    for node in ("live", "dead"):
        await client.xreadgroup(GROUP, node, {mailbox: "0"})  # a consumer of each
    await client.xreadgroup(GROUP, "dead", {mailbox: ">"})
    await client.xack(mailbox, GROUP, entry_id)  # its pending entry handled
    for node in ("live", "dead"):
        await client.zadd(keys.socket_slots("user", "u1"), {f"{node}:sid": now_ms + 60_000})
        await client.sadd(keys.node_socket_slots(node), keys.socket_slots("user", "u1"))
        await client.rpush(keys.replies(f"{node}:abc"), "answer")
    await asyncio.sleep(0.01)  # the dead consumer idle for longer than 2 lease times

    removed = await remove_dead_nodes(client, partitions=1, lease_ttl_s=0.001)
    assert removed == {
        "membership entries": 1,
        "stream consumers": 1,
        "socket slots": 1,
        "socket slot indexes": 1,
    }
    assert await remove_dead_reply_lists(client) == 1
    consumers = [c["name"] for c in await client.xinfo_consumers(mailbox, GROUP)]
    assert consumers == ["live"]
    assert await client.zrange(keys.nodes(), 0, -1) == ["live"]
    assert await client.zrange(keys.socket_slots("user", "u1"), 0, -1) == ["live:sid"]
    assert await client.exists(keys.node_socket_slots("live"), keys.node_socket_slots("dead")) == 1
    replies = [k async for k in redis_client.scan_keys(client, keys.replies("*"))]
    assert replies == [keys.replies("live:abc")]

    # Run again: nothing more goes.
    assert await remove_dead_nodes(client, partitions=1, lease_ttl_s=0.001) == {}
    assert await remove_dead_reply_lists(client) == 0


async def test_queue_entries_of_tasks_gone_are_removed_once(client: Redis) -> None:
    partitions = 16
    await client.hset(keys.task("s1", "t1", partitions), "status", '"queued"')
    queue = keys.dispatch_queue("normal", partitions)
    await client.zadd(queue, {"s1/t1": 1, "s1/gone": 2, "junk": 3})
    await client.zadd(keys.dispatch_queue("high", partitions), {"s2/gone": 1})
    assert await remove_orphan_queue_entries(client, partitions) == 3
    assert await client.zrange(queue, 0, -1) == ["s1/t1"]
    assert not await client.exists(keys.dispatch_queue("high", partitions))
    assert await remove_orphan_queue_entries(client, partitions) == 0
