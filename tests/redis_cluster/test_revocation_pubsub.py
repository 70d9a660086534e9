"""Revocations announced across nodes on a Redis Cluster (`gateway/revocation.py`).

Two `Credentials`, as two gateway nodes would hold them, each on its own cluster client,
share a real six-node cluster: what one revokes the other hears, before and after the
master holding the channel's slot was killed (its listener subscribes again, reloads the
revoked families and rechecks its sockets).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.revocation import Credentials, Revocation
from orchestra import keys
from orchestra.db import Store
from orchestra.errors import AuthenticationFailed
from orchestra.redis_client import connect
from tests.support.processes import wait_for
from tests.support.redis_cluster import RedisClusterHarness, redis_cluster


@dataclass
class Heard:
    """What one node's listeners were told."""

    credentials: Credentials
    revocations: list[Revocation] = field(default_factory=list)
    rechecks: int = 0

    async def revoked(self, revocation: Revocation) -> None:
        self.revocations.append(revocation)

    async def recheck(self) -> None:
        self.rechecks += 1


@asynccontextmanager
async def node(redis_url: str, tmp_path: Path, name: str) -> AsyncIterator[Heard]:
    client = connect(redis_url)
    store = Store(f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}")
    credentials = Credentials(client, store, family_ttl_s=600)
    heard = Heard(credentials)
    credentials.on_revoked(heard.revoked, heard.recheck)
    await credentials.start()  # returns once subscribed
    try:
        yield heard
    finally:
        await credentials.stop()
        await client.aclose()


@asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[RedisClusterHarness, Heard, Heard]]:
    async with AsyncExitStack() as stack:
        cluster = await stack.enter_async_context(redis_cluster(tmp_path))
        a = await stack.enter_async_context(node(cluster.url, tmp_path, "a"))
        b = await stack.enter_async_context(node(cluster.url, tmp_path, "b"))
        yield cluster, a, b


async def test_a_revocation_on_one_node_is_heard_on_the_other(tmp_path: Path) -> None:
    async with two_nodes(tmp_path) as (_, a, b):
        assert await a.credentials._channel.sharded()  # Redis 7.0.15: SPUBLISH/SSUBSCRIBE

        await a.credentials.revoke_user("u1")
        await wait_for(
            lambda: Revocation("user", "u1", 1) in b.revocations, what="B to hear the user"
        )
        with pytest.raises(AuthenticationFailed):
            await b.credentials.check_user("u1", 0, "")
        await b.credentials.check_user("u1", 1, "")  # a token of the new version holds

        await a.credentials.revoke_agent("ag1")
        await wait_for(
            lambda: Revocation("agent", "ag1", 1) in b.revocations, what="B to hear the agent"
        )

        # The family's MULTI (one slot) runs on the cluster; the PUBLISH follows it.
        await a.credentials.revoke_family("fam1")
        await wait_for(
            lambda: Revocation("family", "fam1") in b.revocations, what="B to hear the family"
        )
        with pytest.raises(AuthenticationFailed):
            await b.credentials.check_user("u2", 0, "fam1")
        assert b.rechecks == 0  # never lost its subscription


@pytest.mark.parametrize("what", ["killed", "paused"])
async def test_revocations_are_heard_after_the_channel_master_fails(
    tmp_path: Path, what: str
) -> None:
    """Killed: the connection drops at once. Paused (SIGSTOP): the connection stays open
    and silent; the subscription's PING goes unanswered and it is given up."""
    async with two_nodes(tmp_path) as (cluster, a, b):
        channel = keys.revocations_channel()
        await a.credentials.revoke_user("u1")
        await wait_for(lambda: len(b.revocations) == 1, what="B to hear the first")

        failed_at = time.monotonic()
        old = await cluster.master_of(channel)
        assert old != await cluster.master_of(keys.revoked_families())
        if what == "killed":
            cluster.kill(old)
        else:
            cluster.pause(old)
        # A family revoked while the channel has no master, its announcement lost (written
        # as `revoke_family` writes it, not published): B cannot subscribe again before
        # the promotion, seconds away, so it finds the family when it reloads them.
        await a.credentials.redis.zadd(keys.revoked_families(), {"fam-lost": time.time() + 600})
        assert b.rechecks == 0
        new = await cluster.wait_promoted(channel, old)
        promoted_s = time.monotonic() - failed_at

        # B lost its subscription, took a new one on the promoted master, reloaded the
        # families and rechecked its sockets.
        await wait_for(lambda: b.rechecks >= 1, timeout_s=30, what="B to subscribe again")
        resubscribed_s = time.monotonic() - failed_at
        with pytest.raises(AuthenticationFailed):
            await b.credentials.check_user("u9", 0, "fam-lost")

        # Announced from now on: B hears them (B may even have subscribed before the
        # promotion was seen here: then it heard this rather than loaded it).
        await a.credentials.revoke_family("fam-after")
        await a.credentials.revoke_user("u2")
        await wait_for(
            lambda: Revocation("user", "u2", 1) in b.revocations, what="B to hear the second"
        )
        with pytest.raises(AuthenticationFailed):
            await b.credentials.check_user("u9", 0, "fam-after")
        print(
            f"\n[revocations, {what}] master :{old} down; :{new} promoted after "
            f"{promoted_s:.2f} s; B subscribed again {resubscribed_s:.2f} s after"
        )
