"""`gateway/pubsub.py` on one Redis and on a cluster: a subscription kept alive while idle
(its PINGs answered), and one whose server stops answering given up."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.pubsub import Channel, SubscriptionLost
from orchestra.redis_client import connect
from tests.support.redis import redis_server
from tests.support.redis_cluster import redis_cluster

SILENT_S = 0.3


@asynccontextmanager
async def a_client(tmp_path: Path, kind: str) -> AsyncIterator[Redis]:
    """A client of a fresh Redis of `kind` (one server, or a cluster)."""
    if kind == "single":
        async with redis_server(tmp_path) as server:
            client = connect(server.url)
            try:
                yield client
            finally:
                await client.aclose()
        return
    async with redis_cluster(tmp_path) as cluster:
        client = connect(cluster.url)
        try:
            yield client
        finally:
            await client.aclose()


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_an_idle_subscription_stays_and_delivers(tmp_path: Path, kind: str) -> None:
    async with a_client(tmp_path, kind) as client:
        channel = Channel(client, "orch:test:pubsub")
        assert await channel.sharded() == (kind == "cluster")
        subscription = await channel.subscribe(silent_after_s=SILENT_S)
        try:
            # Several silent periods: each PING is answered, nothing is lost.
            idle_until = time.monotonic() + SILENT_S * 6
            while time.monotonic() < idle_until:
                assert await subscription.get(SILENT_S) is None
            assert await channel.publish("hello") == 1
            assert await subscription.get(5.0) == "hello"
        finally:
            await subscription.close()


async def test_a_subscription_whose_server_hangs_is_given_up(tmp_path: Path) -> None:
    async with redis_cluster(tmp_path) as cluster:
        client = connect(cluster.url)
        try:
            channel = Channel(client, "orch:test:pubsub")
            subscription = await channel.subscribe(silent_after_s=SILENT_S)
            cluster.pause(await cluster.master_of(channel.name))
            started = time.monotonic()
            with pytest.raises(SubscriptionLost):
                while True:
                    await subscription.get(1.0)
            # One silent period to send the PING, one to wait for its answer.
            assert time.monotonic() - started < SILENT_S * 2 + 1.0
            await subscription.close()
        finally:
            await client.aclose()
