"""Lua scripts, each in its own `.lua` file beside this module, loaded once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def _source(name: str) -> str:
    return resources.files("actors").joinpath("lua", f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, falling back to EVAL once)."""

    def __init__(self, redis: Redis) -> None:
        self.append_output: AsyncScript = redis.register_script(_source("append_output"))
        self.outbox_append: AsyncScript = redis.register_script(_source("outbox_append"))
        self.lease_acquire: AsyncScript = redis.register_script(_source("lease_acquire"))
        self.lease_renew: AsyncScript = redis.register_script(_source("lease_renew"))
        self.lease_release: AsyncScript = redis.register_script(_source("lease_release"))
        self.mailbox_read: AsyncScript = redis.register_script(_source("mailbox_read"))
        self.turn_commit: AsyncScript = redis.register_script(_source("turn_commit"))
        self.stream_drop_empty: AsyncScript = redis.register_script(_source("stream_drop_empty"))
