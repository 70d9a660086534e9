"""Redis replies as Python values: `str` for keys and fields, decoded JSON for actor state.

An actor's state hash keeps each field as JSON; `read_state` is the one reader of it, for
the runtime, the dispatcher and the gateway's read models alike.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from actors.turn import decode_state


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def strings(raw: dict[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


async def read_state(redis: Redis, key: str) -> dict[str, Any]:
    """An actor's state hash, each field decoded (empty when the actor has no state)."""
    return decode_state(strings(await redis.hgetall(key)))


async def read_fields(
    redis: Redis, state_keys: list[str], fields: list[str]
) -> list[dict[str, Any]]:
    """Some fields of many actors' states, decoded, in one round trip (absent: left out)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in state_keys:
            pipe.hmget(key, fields)
        replies = await pipe.execute()
    return [
        decode_state({f: text(v) for f, v in zip(fields, values, strict=True) if v is not None})
        for values in replies
    ]


async def read_states(redis: Redis, state_keys: list[str]) -> list[dict[str, Any]]:
    """Many actors' whole states, decoded, in one round trip (empty where absent)."""
    return [decode_state(raw) for raw in await read_raw_states(redis, state_keys)]


async def read_raw_states(redis: Redis, state_keys: list[str]) -> list[dict[str, str]]:
    """Many actors' whole state hashes, fields not decoded, in one round trip (none for
    no keys)."""
    if not state_keys:
        return []
    if len(state_keys) == 1:
        return [strings(await redis.hgetall(state_keys[0]))]
    async with redis.pipeline(transaction=False) as pipe:
        for key in state_keys:
            pipe.hgetall(key)
        replies = await pipe.execute()
    return [strings(raw) for raw in replies]


async def read_states_of(redis: Redis, state_keys: list[str]) -> dict[str, dict[str, str]]:
    """`read_raw_states` by key (no round trip for no keys)."""
    return dict(zip(state_keys, await read_raw_states(redis, state_keys), strict=True))
