"""The partition lease script, run twice as a client that lost its answer runs it."""

from __future__ import annotations

from redis.asyncio import Redis

from actors.home import Home
from actors.scripts import Scripts
from orchestra.redis_client import connect
from orchestra.redis_server import RedisServer


async def test_an_acquire_sent_again_gets_the_lease_it_took_and_no_one_else_does(
    redis: RedisServer,
) -> None:
    client: Redis = connect(redis.url)
    scripts = Scripts(client)
    home = Home(0, 1)
    keys = [home.lease, home.fence, home.released, home.taken]

    first = await scripts.lease_acquire(keys=keys, args=["n1", 5000, "call-1"])
    again = await scripts.lease_acquire(keys=keys, args=["n1", 5000, "call-1"])
    assert first == again == ["n1:1", 0]  # the same lease, not "held by another"
    assert await scripts.lease_acquire(keys=keys, args=["n1", 5000, "call-2"]) is None
    assert await scripts.lease_acquire(keys=keys, args=["n2", 5000, "call-3"]) is None

    # Once that lease is gone (released, or taken by another since), the old call's
    # repeat gets nothing.
    await scripts.lease_release(keys=[home.lease, home.released], args=["n1:1"])
    taken = await scripts.lease_acquire(keys=keys, args=["n2", 5000, "call-4"])
    assert taken == ["n2:2", 0]
    assert await scripts.lease_acquire(keys=keys, args=["n1", 5000, "call-1"]) is None
    await client.aclose()
