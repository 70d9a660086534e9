"""What Orchestra asks of Redis, on a real six-node Redis Cluster (and on one server where
it costs nothing): the client factory, `call_replicated`, the scans, the barrier's guarded
client, and the gateway's operations that a cluster used to refuse (docs/redis-cluster.md
1.3): the login limiter, the notification consumers' acknowledgement, socket slots. Last,
a master killed under a client: its commands wait for the promotion instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException

from actors import streams
from actors.actor import ActorEnv
from actors.barrier import GuardedCluster, GuardedRedis, guarded_env
from actors.notifications import notification_fields
from actors.scripts import Scripts
from gateway.login_limit import LoginLimiter
from gateway.notify_consumer import Notification, NotificationConsumer
from gateway.outlet import WEB
from gateway.socket_caps import SocketCaps
from gateway.sockets.base import ConnectionRefused
from orchestra import keys
from orchestra.db import Store
from orchestra.errors import RateLimited
from orchestra.redis_client import (
    FAILOVER_BUDGET_S,
    FailoverCluster,
    call_replicated,
    cluster_nodes,
    connect,
    is_cluster,
    run_script_replicated,
    scan_keys,
    scan_pages,
)
from orchestra.settings import Settings
from tests.support.processes import wait_for
from tests.support.redis import redis_server
from tests.support.redis_cluster import RedisClusterHarness, redis_cluster

INCR_SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisClusterHarness]:
    async with redis_cluster(tmp_path_factory.mktemp("conformance")) as found:
        yield found


@pytest_asyncio.fixture(params=["single", "cluster"])
async def client(
    request: pytest.FixtureRequest, cluster: RedisClusterHarness, tmp_path: Path
) -> AsyncIterator[Redis]:
    """A client from the factory, on one server or on the (emptied) cluster."""
    if request.param == "cluster":
        await cluster.heal()
        await cluster.flushall()
        made = connect(cluster.url)
        yield made
        await made.aclose()
        return
    async with redis_server(tmp_path) as server:
        made = connect(server.url)
        yield made
        await made.aclose()


@pytest_asyncio.fixture
async def on_cluster(cluster: RedisClusterHarness) -> AsyncIterator[Redis]:
    await cluster.heal()
    await cluster.flushall()
    made = connect(cluster.url)
    yield made
    await made.aclose()


def wait_timeouts() -> float:
    return REGISTRY.get_sample_value("orchestra_redis_wait_timeouts_total") or 0.0


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load({}, data_dir=tmp_path, jwt_secret="x" * 32, **overrides)


# -- the factory -----------------------------------------------------------------------------


def test_cluster_urls_name_their_nodes_credentials_and_options() -> None:
    assert cluster_nodes("redis+cluster://a:7000,b:7001,[::1]:7002,c") == [
        ("a", 7000),
        ("b", 7001),
        ("::1", 7002),
        ("c", 6379),
    ]
    made = connect("rediss+cluster://us%3Aer:p%40ss@h1:7000,h2:7001/?socket_timeout=2.5")
    assert isinstance(made, FailoverCluster) and is_cluster(made)
    assert [(n.host, n.port) for n in made.startup_nodes] == [("h1", 7000), ("h2", 7001)]
    kwargs = made.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("us:er", "p@ss")
    assert kwargs["socket_timeout"] == 2.5 and kwargs["decode_responses"] is True
    assert made.startup_nodes[0].connection_class.__name__ == "GuardedSSLConnection"
    with pytest.raises(ValueError, match="database 0"):
        connect("redis+cluster://h1:7000/3")
    single = connect("redis://127.0.0.1:1/0")
    assert not is_cluster(single)


async def test_commands_pipelines_and_scripts_across_the_slots(
    on_cluster: Redis, cluster: RedisClusterHarness
) -> None:
    client = on_cluster
    names = [f"conformance:{i}" for i in range(120)]
    for i, name in enumerate(names):
        await client.set(name, i)
    assert [int(await client.get(name) or -1) for name in names] == list(range(120))
    masters = {client.get_node_from_key(name).port for name in names}  # type: ignore[attr-defined]
    assert masters == set(await cluster.masters()) and len(masters) == 3
    assert await cluster.master_of(names[0]) == client.get_node_from_key(names[0]).port  # type: ignore[attr-defined]
    # A non-transactional pipeline spans every master; the answers keep their order.
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.incr(name)
        answers = await pipe.execute()
    assert answers == list(range(1, 121))
    assert await client.delete(*names) == 120
    # A script's keys share a slot (a hash tag); another slot among them is refused.
    script = client.register_script("return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)")
    assert await script(keys=["{t}:a", "{t}:b"]) in (True, "OK")
    with pytest.raises(RedisClusterException):
        await script(keys=["a", "b"])
    # A master without the script (flushed, or new after a failover): loaded again.
    for port in await cluster.masters():
        node = client.get_node(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
        await client.execute_command("SCRIPT FLUSH", target_nodes=node)
    assert await script(keys=["{t}:a", "{t}:b"]) in (True, "OK")


async def test_scans_find_each_key_once(client: Redis) -> None:
    names = {f"scan:{i}" for i in range(300)}
    for name in names:
        await client.set(name, 1)
    await client.set("other:1", 1)
    await client.xadd("scan:stream", {"a": "1"})
    found = [key async for key in scan_keys(client, "scan:*", count=50)]
    assert sorted(found) == sorted(names | {"scan:stream"})
    streams = [page async for page in scan_pages(client, "scan:*", count=1000, type_="stream")]
    assert streams == [["scan:stream"]]


# -- a write, then WAIT ---------------------------------------------------------------------


async def test_call_replicated_waits_for_the_replica_of_the_write(
    on_cluster: Redis, cluster: RedisClusterHarness
) -> None:
    client = on_cluster
    script = client.register_script(INCR_SCRIPT)
    before = wait_timeouts()
    assert await run_script_replicated(client, script, ["{w}:n"], [2], 1, 2000) == 2
    assert wait_timeouts() == before  # the replica had it: WAIT answered 1 at once
    # With the replica of {w}'s master stopped, WAIT answers 0 after its timeout: it waited
    # for this write, on its master (another master's replica would have answered 1).
    master = await cluster.master_of("{w}:n")
    (replica,) = await cluster.replicas_of(master)
    cluster.pause(replica)
    try:
        started = time.monotonic()
        assert await run_script_replicated(client, script, ["{w}:n"], [3], 1, 300) == 5
        assert time.monotonic() - started >= 0.3
        assert wait_timeouts() == before + 1
    finally:
        cluster.resume(replica)
    # NOSCRIPT on the master: loaded, run again (once).
    node = client.get_node(host="127.0.0.1", port=master)  # type: ignore[attr-defined]
    await client.execute_command("SCRIPT FLUSH", target_nodes=node)
    assert await run_script_replicated(client, script, ["{w}:n"], [1], 1, 2000) == 6
    # Any command; and 0 replicas is the command alone.
    assert await call_replicated(client, "{w}:s", ("SET", "{w}:s", "v"), 1, 2000) in (True, "OK")
    assert await run_script_replicated(client, script, ["{w}:n"], [1], 0, 2000) == 7
    assert wait_timeouts() == before + 1


async def test_call_replicated_on_one_server_counts_the_missing_replica(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as server:
        client = connect(server.url)
        script = client.register_script(INCR_SCRIPT)
        before = wait_timeouts()
        assert await run_script_replicated(client, script, ["n"], [2], 0, 50) == 2
        assert await run_script_replicated(client, script, ["n"], [2], 1, 50) == 4
        assert wait_timeouts() == before + 1  # no replica to answer
        await client.script_flush()
        assert await run_script_replicated(client, script, ["n"], [1], 1, 50) == 5
        await client.aclose()


# -- the barrier ------------------------------------------------------------------------------


class _NoSockets:
    """An outlet to no sockets (the barrier's tests send nothing to any)."""

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        return None

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        return None

    async def disconnect_agent(self, socket_id: str) -> None:
        return None

    async def ping_agent(self, agent_id: str, timestamp_ms: int) -> None:
        return None


async def test_the_guarded_client_waits_for_the_barrier_on_the_same_connections(
    client: Redis, tmp_path: Path
) -> None:
    opened = asyncio.Event()
    waits = 0

    async def barrier() -> None:
        nonlocal waits
        waits += 1
        await opened.wait()

    await client.set("{g}:a", 1)  # connections and slot map in place before counting
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    env = ActorEnv(client, Scripts(client), store, settings(tmp_path), _NoSockets())
    guarded = guarded_env(env, barrier).redis
    await store.close()
    assert isinstance(guarded, GuardedCluster if is_cluster(client) else GuardedRedis)
    assert is_cluster(guarded) == is_cluster(client)
    pending: asyncio.Future[Any] = asyncio.ensure_future(guarded.get("{g}:a"))
    await wait_for(lambda: waits == 1, what="the command to meet the barrier")
    assert not pending.done()
    opened.set()
    assert await pending == "1"
    async with guarded.pipeline(transaction=False) as pipe:
        pipe.incr("{g}:a")
        pipe.incr("{g}:b")
        assert await pipe.execute() == [2, 1]
    script = guarded.register_script(INCR_SCRIPT)
    assert await script(keys=["{g}:a"], args=[5]) == 7
    assert [k async for k in scan_keys(guarded, "{g}:*")] != []
    assert waits >= 4
    # Nothing of its own: the node client's connections carry it all.
    if is_cluster(client):
        own = {node.name: len(node._connections) for node in client.get_nodes()}  # type: ignore[attr-defined]
        assert {n.name: len(n._connections) for n in guarded.get_nodes()} == own  # type: ignore[attr-defined]
        assert guarded.nodes_manager is client.nodes_manager  # type: ignore[attr-defined]
    else:
        assert guarded.connection_pool is client.connection_pool


# -- the gateway's operations ------------------------------------------------------------------


async def test_the_login_limiter_counts_and_refuses(client: Redis, tmp_path: Path) -> None:
    limiter = LoginLimiter(
        client,
        settings(tmp_path, login_max_failures_per_account=2, login_max_failures_per_address=3),
    )
    await limiter.check("alice", "10.0.0.1")
    await limiter.failed("alice", "10.0.0.1")
    await limiter.failed("Alice", "10.0.0.2")
    with pytest.raises(RateLimited):
        await limiter.check("ALICE", "10.0.0.3")  # the account: 2 failures
    await limiter.failed("bob", "10.0.0.1")
    await limiter.failed("carol", "10.0.0.1")
    with pytest.raises(RateLimited):
        await limiter.check("dave", "10.0.0.1")  # the address: 3 failures
    await limiter.succeeded("alice")
    await limiter.check("alice", "10.0.0.3")
    for key in limiter._keys("bob", "10.0.0.1"):
        assert 0 < await client.ttl(key) <= 901  # every count expires


async def test_socket_slots_are_claimed_refused_and_freed(client: Redis, tmp_path: Path) -> None:
    config = settings(tmp_path, node_id="n1", max_sockets_per_user=1)
    await client.zadd(keys.nodes(), {"n1": int(time.time() * 1000) + 60_000})
    caps = SocketCaps(client, config, lambda _ns, _sid: True)
    await caps.claim(WEB, "s1", "alice")
    with pytest.raises(ConnectionRefused):
        await caps.claim(WEB, "s2", "alice")
    await caps.release(WEB, "s1")
    await caps.claim(WEB, "s2", "alice")
    assert await client.smembers(keys.node_socket_slots("n1")) == {
        keys.socket_slots("user", "alice")
    }


class _Recorder(NotificationConsumer[str]):
    group = "conformance"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.delivered: list[tuple[str, str]] = []

    async def targets(self, note: Notification) -> list[str]:
        return ["t1", "t2"]

    def target_id(self, target: str) -> str:
        return target

    async def attempt(self, note: Notification, target: str) -> str | None:
        self.delivered.append((note.entry_id, target))
        return None


async def test_a_notification_is_delivered_acknowledged_and_forgotten(
    client: Redis, tmp_path: Path
) -> None:
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    consumer = _Recorder(client, store, settings(tmp_path, node_id="n1"))
    fields: dict[Any, Any] = notification_fields("task.completed", "u1", "task:1", {"t": "1"})
    entry_id = str(await client.xadd(keys.webhook_events(), fields))
    await consumer.start()
    try:
        await wait_for(lambda: len(consumer.delivered) == 2, what="both deliveries")

        async def acknowledged() -> bool:
            pending = await client.xpending(keys.webhook_events(), "conformance")
            return int(pending["pending"]) == 0 and not await client.exists(
                keys.notification_delivered("conformance", entry_id)
            )

        await wait_for(acknowledged, what="the XACK and the delivered set's DEL")
    finally:
        await consumer.stop()
        await store.close()
    assert sorted(consumer.delivered) == [(entry_id, "t1"), (entry_id, "t2")]


# -- a master killed under a client --------------------------------------------------------


async def test_commands_issued_after_a_master_dies_wait_for_its_replica(tmp_path: Path) -> None:
    async with redis_cluster(tmp_path / "failover") as cluster:
        client = connect(cluster.url)
        script = client.register_script(INCR_SCRIPT)
        await client.set("{f}:a", 1)
        await client.set("{f}:b", 2)
        await client.set("{other}:x", 3)
        await run_script_replicated(client, script, ["{f}:n"], [1], 1, 2000)
        answer = client.register_script("return 42")
        assert await answer(keys=["{f}:z"]) == 42  # loaded on the masters of the time
        dead = await cluster.kill_master_of("{f}:a")
        started = time.monotonic()

        async def pipeline() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("{f}:a")
                pipe.get("{f}:b")
                pipe.get("{other}:x")
                return await pipe.execute()

        timed: dict[str, float] = {}

        async def took(name: str, coro: Any) -> Any:
            answer = await coro
            timed[name] = time.monotonic() - started
            return answer

        get, piped, replicated = await asyncio.gather(
            took("get", client.get("{f}:a")),
            took("pipeline", pipeline()),
            took("call_replicated", run_script_replicated(client, script, ["{f}:n"], [1], 1, 200)),
        )
        assert (get, piped, replicated) == ("1", ["1", "2", "3"], 2)
        print(f"answered after the master's SIGKILL: {timed}")
        assert max(timed.values()) < FAILOVER_BUDGET_S
        promoted = await cluster.wait_promoted("{f}:a", dead)
        # The new master never loaded `answer` (the script cache is not replicated): NOSCRIPT,
        # and redis-py's AsyncScript loads it on every master and runs it again.
        node = client.get_node(host="127.0.0.1", port=promoted)  # type: ignore[attr-defined]
        exists = await client.execute_command("SCRIPT EXISTS", answer.sha, target_nodes=node)
        assert exists in ([False], [0])
        assert await answer(keys=["{f}:z"]) == 42
        await cluster.restart(dead)  # back as the new master's replica, in sync
        assert await cluster.replicas_of(promoted) == [dead]
        assert await client.get("{f}:b") == "2"
        await client.aclose()


async def test_stream_reads_go_to_their_slot_without_asking_the_server_for_keys(
    on_cluster: Redis, cluster: RedisClusterHarness
) -> None:
    """XREAD and XREADGROUP (a session feed's tail, an idle partition's wait) are routed by
    their STREAMS arguments: no COMMAND GETKEYS round trip before each."""
    stream, session = keys.session_events("s1", 16), keys.session("s1", 16)
    await streams.xadd(on_cluster, stream, {"event": "e", "data": "{}"})
    await on_cluster.xgroup_create(stream, "g", id="0")

    async def getkeys_calls() -> int:
        total = 0
        for port in await cluster.masters():
            direct = connect(f"redis://127.0.0.1:{port}/0")
            stats = await direct.info("commandstats")
            total += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
            await direct.aclose()
        return total

    before = await getkeys_calls()
    for _ in range(3):
        assert len(await streams.xread(on_cluster, stream, "0", 10, 0)) == 1
        found, _ = await streams.xread_then_field(on_cluster, stream, "0", 10, 0, session, "x")
        assert len(found) == 1
        assert len(await streams.xread_streams(on_cluster, {stream: "0"}, 10, 0)) == 1
    assert await on_cluster.xreadgroup("g", "c", {stream: ">"}, count=10)
    assert await getkeys_calls() == before
