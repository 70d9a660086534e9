"""The limits' building blocks: the agent token bucket (in memory), socket slots and
failed-login counts (against a real Redis). End to end: tests/e2e/test_limits.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from gateway.login_limit import LoginLimiter
from gateway.outlet import AGENT, WEB
from gateway.rate_limit import AgentRateLimiter
from gateway.socket_caps import SocketCaps
from gateway.sockets.base import ConnectionRefused
from orchestra import keys, redis_client
from orchestra.errors import RateLimited
from orchestra.redis_server import RedisServer
from orchestra.settings import Settings


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(redis.url)
    yield client
    await client.aclose()


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load({}, data_dir=tmp_path, jwt_secret="x" * 32, **overrides)


# -- the agent's token bucket --------------------------------------------------------------


def test_an_agent_gets_its_burst_then_its_rate_and_others_keep_theirs() -> None:
    now = [100.0]
    limiter = AgentRateLimiter(rate_per_s=10.0, burst=5, clock=lambda: now[0])
    for _ in range(5):
        limiter.check("a1")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a1")
    assert refused.value.code == "RATE_001"
    assert 0 < refused.value.details["retryAfterS"] <= 0.1  # type: ignore[index]
    limiter.check("a2")  # another agent has a bucket of its own
    now[0] += 0.11  # one token back (and a bit)
    limiter.check("a1")
    with pytest.raises(RateLimited):
        limiter.check("a1")
    now[0] += 60  # refills up to the burst, no further
    for _ in range(5):
        limiter.check("a1")
    with pytest.raises(RateLimited):
        limiter.check("a1")
    limiter.forget("a1")  # a forgotten agent starts full again
    limiter.check("a1")


# -- socket slots ----------------------------------------------------------------------------


def caps(client: Redis, tmp_path: Path, node_id: str, alive: set[str] | None = None) -> SocketCaps:
    """Slots of node `node_id`; a socket is alive while its sid is in `alive` (None: all)."""
    config = settings(tmp_path, node_id=node_id, max_sockets_per_user=2, max_sockets_per_agent=1)
    return SocketCaps(client, config, lambda _ns, sid: alive is None or sid in alive)


async def live_nodes(client: Redis, *nodes: str) -> None:
    until_ms = int(time.time() * 1000) + 60_000
    await client.zadd(keys.nodes(), dict.fromkeys(nodes, until_ms))


async def refused(slots: SocketCaps, namespace: str, sid: str, owner: str) -> bool:
    try:
        await slots.claim(namespace, sid, owner)
    except ConnectionRefused as exc:
        assert exc.error_args["code"] == "RES_001"
        return True
    return False


async def test_slots_are_counted_across_nodes_and_freed_at_disconnect(
    client: Redis, tmp_path: Path
) -> None:
    await live_nodes(client, "n1", "n2")
    one, two = caps(client, tmp_path, "n1"), caps(client, tmp_path, "n2")
    assert not await refused(one, WEB, "s1", "alice")
    assert not await refused(two, WEB, "s2", "alice")
    assert await refused(two, WEB, "s3", "alice")  # a third socket of alice's
    assert not await refused(two, WEB, "s3", "bob")  # bob has slots of his own
    assert not await refused(one, AGENT, "s4", "alice")  # agents' slots are apart
    assert await refused(two, AGENT, "s5", "alice")
    await one.release(WEB, "s1")
    assert not await refused(two, WEB, "s6", "alice")
    assert await client.zcard(keys.socket_slots("user", "alice")) == 2


async def test_the_slots_of_a_node_that_died_are_freed(client: Redis, tmp_path: Path) -> None:
    await live_nodes(client, "n1", "n2")
    dead, other = caps(client, tmp_path, "n1"), caps(client, tmp_path, "n2")
    await dead.claim(AGENT, "s1", "box")
    assert await refused(other, AGENT, "s2", "box")
    # n1 leaves the live nodes without a word (killed): its slot goes at the next claim.
    await client.zrem(keys.nodes(), "n1")
    assert not await refused(other, AGENT, "s2", "box")

    # A slot whose node still counts as alive but stopped refreshing it expires.
    await other.release(AGENT, "s2")
    await client.zadd(keys.socket_slots("agent", "box"), {"n1:old": time.time() * 1000 - 1})
    await live_nodes(client, "n1")
    assert not await refused(other, AGENT, "s3", "box")


async def test_a_node_started_again_frees_what_its_earlier_run_held(
    client: Redis, tmp_path: Path
) -> None:
    await live_nodes(client, "n1", "n2")
    earlier = caps(client, tmp_path, "n1")
    await earlier.claim(AGENT, "s1", "box")
    await caps(client, tmp_path, "n2").claim(WEB, "s2", "alice")
    await earlier.claim(WEB, "s3", "alice")
    again = caps(client, tmp_path, "n1")  # same id, a new process: it holds nothing
    await again.start()
    assert await client.zrange(keys.socket_slots("agent", "box"), 0, -1) == []
    assert await client.zrange(keys.socket_slots("user", "alice"), 0, -1) == ["n2:s2"]
    assert not await refused(again, AGENT, "s4", "box")


async def test_refresh_renews_live_sockets_and_frees_gone_ones(
    client: Redis, tmp_path: Path
) -> None:
    await live_nodes(client, "n1")
    alive = {"s1", "s2"}
    slots = caps(client, tmp_path, "n1", alive)
    await slots.claim(WEB, "s1", "alice")
    await slots.claim(WEB, "s2", "alice")
    key = keys.socket_slots("user", "alice")
    before = await client.zscore(key, "n1:s1")
    alive.discard("s2")  # gone without its disconnect handled
    time.sleep(0.01)
    await slots.refresh()
    assert await client.zrange(key, 0, -1) == ["n1:s1"]
    assert (await client.zscore(key, "n1:s1") or 0) > (before or 0)
    assert await client.smembers(keys.node_socket_slots("n1")) == {key}


# -- failed logins ---------------------------------------------------------------------------


async def test_failed_logins_lock_the_account_then_the_address(
    client: Redis, tmp_path: Path
) -> None:
    limiter = LoginLimiter(
        client,
        settings(tmp_path, login_max_failures_per_account=3, login_max_failures_per_address=5),
    )
    for _ in range(3):
        await limiter.check("Alice", "10.0.0.1")
        await limiter.failed("Alice", "10.0.0.1")
    for name, address in (("alice", "10.0.0.1"), ("ALICE", "10.0.0.2")):
        with pytest.raises(RateLimited) as locked:
            await limiter.check(name, address)  # case-folded, from anywhere
        assert locked.value.details["retryAfterS"] > 0  # type: ignore[index]
    await limiter.check("bob", "10.0.0.1")  # the address is still under its limit
    await limiter.failed("bob", "10.0.0.1")
    await limiter.failed("bob", "10.0.0.1")
    with pytest.raises(RateLimited):
        await limiter.check("carol", "10.0.0.1")  # 5 from this address
    await limiter.check("carol", "10.0.0.9")

    await limiter.failed("dave", "10.0.0.9")
    await limiter.succeeded("DAVE")  # a success clears the account's count
    account, _ = limiter._keys("dave", "10.0.0.9")
    assert await client.get(account) is None
