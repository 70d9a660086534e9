"""Lua scripts, each in its own `.lua` file beside this module, loaded once per client."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from orchestra.redis_client import call_replicated, run_script_replicated


@cache
def _source(name: str) -> str:
    return resources.files("actors").joinpath("lua", f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, falling back to EVAL once).

    `wait_replicas` (`settings.redis_wait_replicas`): how many replicas must have the
    writes of a `durable` call before it answers (0: answer at once)."""

    def __init__(self, redis: Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 500) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.append_output: AsyncScript = redis.register_script(_source("append_output"))
        self.outbox_append: AsyncScript = redis.register_script(_source("outbox_append"))
        self.lease_acquire: AsyncScript = redis.register_script(_source("lease_acquire"))
        self.lease_renew: AsyncScript = redis.register_script(_source("lease_renew"))
        self.lease_release: AsyncScript = redis.register_script(_source("lease_release"))
        self.mailbox_read: AsyncScript = redis.register_script(_source("mailbox_read"))
        self.turn_commit: AsyncScript = redis.register_script(_source("turn_commit"))
        self.deliver: AsyncScript = redis.register_script(_source("deliver"))
        self.stream_drop_empty: AsyncScript = redis.register_script(_source("stream_drop_empty"))

    def like(self, redis: Redis) -> Scripts:
        """The same scripts and durability on another client (a guarded one)."""
        return Scripts(
            redis, wait_replicas=self.wait_replicas, wait_timeout_ms=self.wait_timeout_ms
        )

    async def durable(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Call `script`; answer once `wait_replicas` replicas have its writes (or the wait
        timed out: counted, and answered all the same). Used where what the writes make
        leaves the slot: an ack to an agent, a reply, mail moved on, a commit's effects. A
        master that dies unreplicated then loses nothing anyone was told of."""
        if self.wait_replicas <= 0:
            return await script(keys=keys, args=args)
        return await run_script_replicated(
            self.redis, script, keys, args, self.wait_replicas, self.wait_timeout_ms
        )

    async def durable_command(self, key: str, *command: Any) -> Any:
        """A one-key command, answered as `durable` answers (WAIT on its connection)."""
        return await call_replicated(
            self.redis, key, command, self.wait_replicas, self.wait_timeout_ms
        )
