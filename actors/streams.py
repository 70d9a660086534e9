"""Typed access to Redis streams: entries as `(id, {field: value})` with `str` throughout.

redis-py's stream replies are typed loosely (bytes or str, optional everywhere); every
stream read of the actors and the gateway goes through these few functions instead.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from actors.values import strings, text

Entry = tuple[str, dict[str, str]]


def _entries(raw: Any) -> list[Entry]:
    return [(text(entry_id), _fields(fields)) for entry_id, fields in raw or []]


def _fields(raw: Any) -> dict[str, str]:
    return strings(raw or {})


async def xadd(redis: Redis, stream: str, fields: dict[str, str]) -> str:
    return text(await redis.xadd(stream, dict(fields)))  # type: ignore[arg-type]


def queue_xadd(pipe: Pipeline, stream: str, fields: dict[str, str]) -> None:
    """Queue an append in a transaction (the entry id comes with the results)."""
    pipe.xadd(stream, dict(fields))  # type: ignore[arg-type]


async def xrange(
    redis: Redis, stream: str, start: str = "-", end: str = "+", count: int | None = None
) -> list[Entry]:
    return _entries(await redis.xrange(stream, start, end, count))


async def xread(redis: Redis, stream: str, after: str, count: int, block_ms: int) -> list[Entry]:
    """Entries after `after`, waiting up to `block_ms` for the first one."""
    answer: Any = await redis.xread({stream: after}, count=count, block=block_ms)
    return _entries(answer[0][1]) if answer else []


async def xautoclaim(
    redis: Redis, stream: str, group: str, consumer: str, start: str, count: int
) -> tuple[str, list[Entry]]:
    """Claim pending entries of any consumer; (next start, entries). Deleted entries come
    back with empty fields."""
    answer: Any = await redis.xautoclaim(
        stream, group, consumer, min_idle_time=0, start_id=start, count=count
    )
    return text(answer[0]), _entries(answer[1])
