"""The key-layout check and `orchestra redis migrate` on a real Redis Cluster: the data
layout 1 left (`tests/fixtures/layout1/`), put on the cluster key by key, is refused by a
node's start check, migrated across slots (DUMP, RESTORE, DEL), and ends as the same keys
with the same contents as the migration of the same data on one Redis server; and so
does a move to another partition count after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.keyspace import LayoutMismatch, ensure_layout, partitions_key
from gateway.migrate import Migration
from orchestra import keys
from orchestra.redis_client import connect, scan_keys
from orchestra.settings import Settings
from tests.support.layout1 import layout1_redis
from tests.support.redis_cluster import redis_cluster


async def contents(client: Redis) -> dict[str, Any]:
    """Every key with its type and contents (streams: ids and fields; sets sorted)."""
    raw: Any = client
    found: dict[str, Any] = {}
    async for key in scan_keys(client, "*"):
        kind = await raw.type(key)
        if kind == "stream":
            value: Any = await raw.xrange(key)
            groups = [(g["name"], g["last-delivered-id"]) for g in await raw.xinfo_groups(key)]
            value = (value, groups)
        elif kind == "hash":
            value = await raw.hgetall(key)
        elif kind == "zset":
            value = await raw.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await raw.smembers(key))
        elif kind == "list":
            value = await raw.lrange(key, 0, -1)
        else:
            value = await raw.get(key)
        found[key] = (kind, value)
    return found


async def test_layout_1_data_migrates_on_a_cluster_as_on_one_server(tmp_path: Path) -> None:
    settings = Settings.load({"ORCHESTRA_DATA_DIR": str(tmp_path)})
    async with layout1_redis(tmp_path / "single") as single_server:
        single = Redis.from_url(single_server.url, decode_responses=True)
        source: Any = Redis.from_url(single_server.url)  # bytes, for DUMP
        async with redis_cluster(tmp_path / "cluster") as cluster:
            target = connect(cluster.url, decode_responses=False)
            client = connect(cluster.url)
            try:
                async for key in source.scan_iter("*"):
                    ttl_ms = int(await source.pttl(key))
                    await target.restore(key, max(ttl_ms, 0), await source.dump(key))
                with pytest.raises(LayoutMismatch, match="orchestra redis migrate"):
                    await ensure_layout(client, settings)

                on_cluster = await Migration(client, settings.partitions).run()
                on_single = await Migration(single, settings.partitions).run()
                assert on_cluster == on_single and on_cluster.moved > 0
                assert await contents(client) == await contents(single)
                assert await client.get(keys.keyspace()) == keys.LAYOUT
                assert int(await client.get(partitions_key()) or 0) == settings.partitions
                await ensure_layout(client, settings)  # the node may start now
                again = await Migration(client, settings.partitions).run()
                assert not again.changed
                # Then to another partition count, on both alike.
                fewer = await Migration(client, 5).run()
                assert fewer == await Migration(single, 5).run() and fewer.moved > 0
                assert await contents(client) == await contents(single)
                await ensure_layout(client, settings.model_copy(update={"partitions": 5}))
            finally:
                await target.aclose()
                await client.aclose()
        await single.aclose()
        await source.aclose()
