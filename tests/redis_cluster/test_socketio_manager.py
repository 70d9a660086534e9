"""Cross-node socket.io emits on a Redis Cluster (`gateway/sockets/cluster_manager.py`).

Two real socket.io servers in this process, each on its own port (an aiohttp app) with
its own `ClusterRedisManager` and cluster client, share a real six-node cluster; a real
python-socketio client connects to server B, whose connect handler puts it in a room, and
server A emits to that room. Also after the master holding the channel's slot is killed
(SIGKILL) or hands its slots over (CLUSTER FAILOVER on its replica).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio
from aiohttp import web

from gateway.sockets.cluster_manager import ClusterRedisManager
from gateway.sockets.metered import MeteredServer
from orchestra import metrics
from orchestra.redis_client import connect as connect_redis
from tests.support.processes import wait_for
from tests.support.redis_cluster import RedisClusterHarness, redis_cluster

CHANNEL = "orch:test:socketio"
ROOM = "watchers"
EVENT = "cluster-test"


@dataclass
class SioServer:
    sio: MeteredServer
    manager: ClusterRedisManager
    url: str


@dataclass
class Watcher:
    client: socketio.AsyncClient
    received: list[Any] = field(default_factory=list)


@asynccontextmanager
async def sio_server(redis_url: str, sharded: bool | None) -> AsyncIterator[SioServer]:
    """A socket.io server on a free port, its manager on its own cluster client."""
    client = connect_redis(redis_url)
    manager = ClusterRedisManager(redis_url, channel=CHANNEL, redis=client, sharded=sharded)
    sio = MeteredServer(async_mode="aiohttp", client_manager=manager)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield SioServer(sio, manager, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
        await manager.stop()
        await client.aclose()


@asynccontextmanager
async def watcher(server: SioServer) -> AsyncIterator[Watcher]:
    client = socketio.AsyncClient(reconnection=False)
    seen = Watcher(client)

    @client.on(EVENT)
    async def on_event(data: Any) -> None:
        seen.received.append(data)

    await client.connect(server.url, transports=["websocket"])
    try:
        await wait_for(
            lambda: ROOM in server.sio.rooms(client.get_sid() or "", "/"),
            what="the client to join the room",
        )
        # The first connection started the manager's listener (python-socketio starts it
        # then): wait until it has subscribed.
        await wait_for(lambda: server.manager.subscriptions >= 1, what="the manager to subscribe")
        yield seen
    finally:
        await client.disconnect()


@asynccontextmanager
async def two_servers(
    tmp_path: Path, sharded: bool | None
) -> AsyncIterator[tuple[RedisClusterHarness, SioServer, SioServer, Watcher]]:
    async with AsyncExitStack() as stack:
        cluster = await stack.enter_async_context(redis_cluster(tmp_path))
        a = await stack.enter_async_context(sio_server(cluster.url, sharded))
        b = await stack.enter_async_context(sio_server(cluster.url, sharded))
        on_b = await stack.enter_async_context(watcher(b))
        yield cluster, a, b, on_b


def sent_total() -> float:
    return metrics.EVENTS_OUT.labels("/", EVENT)._value.get()


async def emit_and_see(a: SioServer, on_b: Watcher, payload: dict[str, Any]) -> None:
    await a.sio.emit(EVENT, payload, room=ROOM)
    await wait_for(lambda: payload in on_b.received, timeout_s=10, what=f"{payload} on B")


MODES = [pytest.param(True, id="sharded"), pytest.param(False, id="classic")]


async def test_the_manager_takes_sharded_pubsub_on_redis_7(tmp_path: Path) -> None:
    async with two_servers(tmp_path, sharded=None) as (_, a, b, on_b):
        assert b.manager._channel is not None
        assert await b.manager._channel.sharded()  # Redis 7.0.15 on this machine
        before = sent_total()
        await emit_and_see(a, on_b, {"n": 1})
        # B's delivery to its socket is counted once (A has no socket in the room).
        await wait_for(lambda: sent_total() == before + 1, what="the delivery counted")
        # And the other way round: B emits, its own client hears it once.
        await b.sio.emit(EVENT, {"n": 2}, room=ROOM)
        await wait_for(lambda: {"n": 2} in on_b.received, what="B's own emit")
        assert on_b.received.count({"n": 1}) == 1


@pytest.mark.parametrize("sharded", MODES)
async def test_an_emit_on_one_server_reaches_a_client_of_another(
    tmp_path: Path, sharded: bool
) -> None:
    async with two_servers(tmp_path, sharded) as (_, a, _b, on_b):
        for n in range(5):
            await emit_and_see(a, on_b, {"n": n})
        assert on_b.received == [{"n": n} for n in range(5)]


@pytest.mark.parametrize("sharded", MODES)
async def test_emits_arrive_after_the_channel_master_is_killed(
    tmp_path: Path, sharded: bool
) -> None:
    async with two_servers(tmp_path, sharded) as (cluster, a, b, on_b):
        await emit_and_see(a, on_b, {"n": "before"})
        killed_at = time.monotonic()
        old = await cluster.kill_master_of(CHANNEL)
        new = await cluster.wait_promoted(CHANNEL, old)
        promoted_s = time.monotonic() - killed_at
        # Both listeners lost their subscription (classic: the one whose node died) and
        # took a new one; B's is the one that matters here.
        await wait_for(lambda: b.manager.subscriptions >= 2, what="B to subscribe again")
        resubscribed_s = time.monotonic() - killed_at
        await emit_and_see(a, on_b, {"n": "after"})
        print(
            f"\n[{'sharded' if sharded else 'classic'}] master :{old} killed; :{new} promoted "
            f"after {promoted_s:.2f} s; B subscribed again {resubscribed_s:.2f} s after the "
            f"kill (loss to new subscription: {b.manager.resubscribed_in_s:.2f} s)"
        )


async def test_emits_arrive_after_a_manual_failover(tmp_path: Path) -> None:
    """The old master lives on as a replica: Redis 7 ends its shard subscriptions
    (SUNSUBSCRIBE), and the listeners subscribe again on the new master."""
    async with two_servers(tmp_path, sharded=True) as (cluster, a, b, on_b):
        await emit_and_see(a, on_b, {"n": "before"})
        old = await cluster.master_of(CHANNEL)
        replicas = await wait_for(lambda: cluster.replicas_of(old), what="the master's replica")
        replica = replicas[0]
        node = aioredis.Redis(host="127.0.0.1", port=replica, decode_responses=True)
        try:
            assert await node.execute_command("CLUSTER", "FAILOVER") in ("OK", True)
        finally:
            await node.aclose()
        await wait_for(lambda: _master_is(cluster, replica), what="the replica promoted")
        await wait_for(lambda: b.manager.subscriptions >= 2, what="B to subscribe again")
        await emit_and_see(a, on_b, {"n": "after"})


async def _master_is(cluster: RedisClusterHarness, port: int) -> bool:
    return await cluster.master_of(CHANNEL) == port
