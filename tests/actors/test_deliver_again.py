"""`deliver.lua` run again on entries it delivered before (a new holder of the sending
partition redelivering what the old one did not delete from its outgoing stream): nothing
is written twice, and the agent commands still unacknowledged in their outbox are returned
again, so the new holder pushes them (the old one may have died before its push: found by
tests/chaos/test_sessions_under_master_kill.py, an input acknowledged to its user that
reached its worker only after the resend sweep, behind the inputs typed after it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from actors import Scripts
from orchestra import keys, redis_client
from orchestra.placement import partition_tag, slot_tag
from orchestra.redis_server import RedisServer

PARTITIONS = 16
AGENT = "a" * 32


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    connected = redis_client.connect(redis.url)
    try:
        yield connected
    finally:
        await connected.aclose()


def _lane(entries: list[tuple[str, str]]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one lane of agent commands ('O' writes), as the forwarder makes
    them: (entry id, input) pairs, all to AGENT."""
    agent, outbox = keys.agent(AGENT, PARTITIONS), keys.agent_outbox(AGENT, PARTITIONS)
    names = [keys.inbound(slot_tag(agent)), agent, outbox]
    payload = [
        [entry_id, ["O", 2, 3, "worker:input", json.dumps({"input": text}), AGENT]]
        for entry_id, text in entries
    ]
    return names, [partition_tag(0, PARTITIONS), 0, json.dumps(payload)]


async def _deliver(client: Redis, entries: list[tuple[str, str]]) -> list[list[Any]]:
    scripts = Scripts(client)
    names, args = _lane(entries)
    _, commands, errors = await scripts.deliver(keys=names, args=args)
    assert errors == []
    return [[str(entry_id), int(command_id)] for entry_id, command_id in commands]


async def _ids(client: Redis, stream: str) -> list[str]:
    return [str(entry_id) for entry_id, _ in await client.xrange(stream) or []]


async def test_a_redelivered_command_still_in_its_outbox_is_pushed_again(client: Redis) -> None:
    entries = [("5-0", "one"), ("5-1", "two")]
    assert await _deliver(client, entries) == [["5-0", 1], ["5-1", 2]]
    outbox = keys.agent_outbox(AGENT, PARTITIONS)

    # Delivered again (the holder died before its XDEL): nothing new is written, and both
    # commands, unacknowledged, are handed back to be pushed under their ids.
    assert await _deliver(client, entries) == [["5-0", 1], ["5-1", 2]]
    assert await client.hget(keys.agent(AGENT, PARTITIONS), "commandSeq") == "2"
    assert await _ids(client, outbox) == ["0-1", "0-2"]

    # The agent acknowledged the first (its entry left the outbox): only the second comes
    # back, then a new entry is delivered after it as usual.
    await client.xdel(outbox, "0-1")
    assert await _deliver(client, [*entries, ("6-0", "three")]) == [["5-1", 2], ["6-0", 3]]
    assert await _ids(client, outbox) == ["0-2", "0-3"]
