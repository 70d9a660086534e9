"""Typed access to Redis streams: entries as `(id, {field: value})` with `str` throughout.

redis-py's stream replies are typed loosely (bytes or str, optional everywhere); every
stream read of the actors and the gateway goes through these few functions instead.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from actors.values import strings, text

Entry = tuple[str, dict[str, str]]


def _entries(raw: Any) -> list[Entry]:
    return [(text(entry_id), _fields(fields)) for entry_id, fields in raw or []]


def _fields(raw: Any) -> dict[str, str]:
    return strings(raw or {})


async def xadd(redis: Redis, stream: str, fields: dict[str, str]) -> str:
    return text(await redis.xadd(stream, dict(fields)))  # type: ignore[arg-type]


async def xrange(
    redis: Redis, stream: str, start: str = "-", end: str = "+", count: int | None = None
) -> list[Entry]:
    return _entries(await redis.xrange(stream, start, end, count))


async def xread(redis: Redis, stream: str, after: str, count: int, block_ms: int) -> list[Entry]:
    """Entries after `after`, waiting up to `block_ms` for the first one."""
    answer: Any = await redis.xread({stream: after}, count=count, block=block_ms)
    return _entries(answer[0][1]) if answer else []


async def xread_streams(
    redis: Redis, after: dict[str, str], count: int, block_ms: int
) -> dict[str, list[Entry]]:
    """Entries of several streams (of one slot) after the given ids, waiting up to
    `block_ms` for the first one: each stream's entries, by name (none: absent)."""
    answer: Any = await redis.xread(dict(after), count=count, block=block_ms)  # type: ignore[arg-type]
    return {text(name): _entries(raw) for name, raw in answer or []}


async def xautoclaim(
    redis: Redis, stream: str, group: str, consumer: str, start: str, count: int
) -> tuple[str, list[Entry]]:
    """Claim pending entries of any consumer; (next start, entries). Deleted entries come
    back with empty fields."""
    answer: Any = await redis.xautoclaim(
        stream, group, consumer, min_idle_time=0, start_id=start, count=count
    )
    return text(answer[0]), _entries(answer[1])


def next_id(entry_id: str) -> str:
    """The smallest entry id after `entry_id` (XTRIM MINID keeps the ids from it on)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


async def xrange_with_field(
    redis: Redis, stream: str, start: str, count: int, key: str, field: str
) -> tuple[list[Entry], str | None]:
    """Entries from `start` and one hash field, read in one transaction: a snapshot in
    which the two agree."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xrange(stream, start, "+", count)
        pipe.hget(key, field)
        raw_entries, value = await pipe.execute()
    return _entries(raw_entries), None if value is None else text(value)


async def xread_then_field(
    redis: Redis, stream: str, after: str, count: int, block_ms: int, key: str, field: str
) -> tuple[list[Entry], str | None]:
    """Entries after `after`, waiting up to `block_ms` for the first one, then one hash
    field read right after them on the same connection (one round trip): the field is at
    least as new as the entries."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xread({stream: after}, count=count, block=block_ms)
        pipe.hget(key, field)
        answer, value = await pipe.execute()
    entries = _entries(answer[0][1]) if answer else []
    return entries, None if value is None else text(value)


async def xrevrange_with_field(
    redis: Redis, stream: str, end: str, count: int, key: str, field: str
) -> tuple[list[Entry], str | None]:
    """Entries up to `end` (`+`, an id, or `(id` for strictly before it), newest first,
    and one hash field, read in one transaction: a snapshot in which the two agree."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xrevrange(stream, end, "-", count)
        pipe.hget(key, field)
        raw_entries, value = await pipe.execute()
    return _entries(raw_entries), None if value is None else text(value)
