"""What handlers reach the world through while turns wait to be committed together.

The batch runner (`actors/batch.py`) may hold the commits of some turns back to commit
them with later ones in one script call. A handler must still see everything the turns
before it did, so the `ActorEnv` handlers get is guarded: its Redis client, its scripts,
its SQL store and its outlet first wait for a barrier (the runner commits what it holds
back, and runs those turns' after-commit effects) before they send anything. A handler
that only looks at its own state never meets the barrier; one that reads Redis or SQL
meets it before its first read.

On single Redis the guarded client shares the node client's connection pool; a Redis
Cluster client has none, so it is a copy of the node's client sharing its nodes (their
connections) and slot map (`guard_cluster`): nothing new is opened either way.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from actors.actor import ActorEnv, Outlet
from orchestra.db import Store
from orchestra.redis_client import FailoverCluster, FailoverPipeline

Barrier = Callable[[], Awaitable[None]]


async def _open() -> None:
    return None


class GuardedRedis(Redis):
    """A client on the same connection pool whose every command waits for the barrier."""

    barrier: Barrier = staticmethod(_open)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await self.barrier()
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.barrier = self.barrier
        return pipe


class GuardedPipeline(Pipeline):
    """A pipeline that waits for the barrier before it sends anything."""

    barrier: Barrier = staticmethod(_open)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await self.barrier()
        return await super().execute(raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        await self.barrier()
        return await super().immediate_execute_command(*args, **options)


class GuardedCluster(FailoverCluster):
    """A Redis Cluster client whose every command waits for the barrier: a shallow copy of
    the node's client (`guard_cluster`), sharing its nodes, their connections and the
    slot map (nothing is opened; a slot map refreshed by one is refreshed for both)."""

    barrier: Barrier = staticmethod(_open)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.barrier()
        return await super().execute_command(*args, **kwargs)

    def __del__(self, *args: Any) -> None:
        # The connections are the original client's, closed with it: no "unclosed
        # client" warning for a copy that goes away with its partition loop.
        return None


class GuardedClusterPipeline(FailoverPipeline):
    """A cluster pipeline that waits for the barrier before it sends anything (WATCH in
    a transaction, sent at once by redis-py from a thread, does not wait)."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await cast(GuardedCluster, self.cluster_client).barrier()
        return await super().execute(raise_on_error, allow_redirections)


GuardedCluster.pipeline_class = GuardedClusterPipeline


def guard_cluster(cluster: RedisCluster, barrier: Barrier) -> GuardedCluster:
    """A `GuardedCluster` on `cluster`'s nodes and connections."""
    if cluster._lock is None:
        # One lock for both, so that they never re-read the slot map at the same time.
        cluster._lock = asyncio.Lock()
    copied = copy.copy(cluster)
    copied.__class__ = GuardedCluster
    guarded = cast(GuardedCluster, copied)
    guarded.barrier = barrier
    return guarded


class _Guarded:
    """Any object whose coroutine methods first wait for the barrier (the store, the
    outlet); other attributes pass through."""

    def __init__(self, target: object, barrier: Barrier) -> None:
        self._target = target
        self._barrier = barrier

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not inspect.iscoroutinefunction(value):
            return value
        barrier = self._barrier

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            await barrier()
            return await value(*args, **kwargs)

        return guarded


def guarded_env(env: ActorEnv, barrier: Barrier) -> ActorEnv:
    """`env` with every way out of the process behind `barrier`."""
    redis: Redis
    if isinstance(env.redis, RedisCluster):
        redis = cast(Redis, guard_cluster(env.redis, barrier))
    else:
        redis = GuardedRedis(connection_pool=env.redis.connection_pool)
        redis.barrier = barrier
    return replace(
        env,
        redis=redis,
        scripts=env.scripts.like(redis),
        store=cast(Store, _Guarded(env.store, barrier)),
        outlet=cast(Outlet, _Guarded(env.outlet, barrier)),
    )
