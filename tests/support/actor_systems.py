"""Actor systems for the runtime's tests: one per node id, on one Redis and one store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from actors import Actor, ActorEnv, ActorSystem, Scripts
from orchestra.db import Store
from orchestra.redis_client import connect
from orchestra.settings import Settings

MakeSystem = Callable[..., Awaitable[ActorSystem]]


@asynccontextmanager
async def actor_systems(
    redis_url: str,
    tmp_path: Path,
    outlet: Any,
    kinds: dict[str, type[Actor]],
    **defaults: Any,
) -> AsyncIterator[MakeSystem]:
    """`make(node_id, start=True, **settings)`: a system of the given kinds reaching
    sockets through `outlet`, its settings `defaults` with `settings` over them; every
    system made is stopped, and its client closed, on the way out."""
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    clients: list[Redis] = []
    systems: list[ActorSystem] = []

    async def make(node_id: str, *, start: bool = True, **settings: Any) -> ActorSystem:
        client = connect(redis_url)
        clients.append(client)
        config = Settings.load(
            {}, node_id=node_id, redis_url=redis_url, data_dir=tmp_path, jwt_secret="x" * 32,
            **(defaults | settings),
        )  # fmt: skip
        scripts = Scripts(
            client,
            wait_replicas=config.redis_wait_replicas,
            wait_timeout_ms=config.redis_wait_timeout_ms,
        )
        system = ActorSystem(ActorEnv(client, scripts, store, config, outlet), kinds)
        systems.append(system)
        if start:
            await system.start()
        return system

    try:
        yield make
    finally:
        for system in systems:
            await system.stop()
        for client in clients:
            await client.aclose()
        await store.close()
