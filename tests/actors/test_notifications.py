"""The producer side of webhook notifications: `notify` queues one capped XADD on the
turn's commit, with exactly the fields `notification_fields` makes, on a real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from actors.addresses import task_address
from actors.messages import Message
from actors.notifications import EVENTS, notification_fields, notify
from actors.turn import Turn
from orchestra import keys, redis_client
from orchestra.redis_server import RedisServer


@pytest_asyncio.fixture
async def r(redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(redis.url)
    yield client
    await client.aclose()


def a_turn() -> Turn:
    address = task_address("s1", "t1")
    return Turn(address=address, message=Message(to=str(address), type="task:result"), state={})


async def commit(r: Redis, turn: Turn) -> None:
    """What the runtime does with a turn's writes: queue them on one transaction."""
    async with r.pipeline(transaction=True) as pipe:
        for op in turn.writes:
            op(pipe)
        await pipe.execute()


async def test_notify_writes_nothing_until_the_turn_commits(r: Redis) -> None:
    turn = a_turn()
    data = {"sessionId": "s1", "taskId": "t1", "status": "completed", "exitCode": 0}
    notify(turn, "task.completed", "u1", "t1:task.completed", data)
    assert await r.xlen(keys.webhook_events()) == 0
    await commit(r, turn)
    [(_, fields)] = await r.xrange(keys.webhook_events())
    expected = notification_fields("task.completed", "u1", "t1:task.completed", data)
    assert set(fields) == set(expected) == {"kind", "userId", "key", "data", "at"}
    assert {k: v for k, v in fields.items() if k != "at"} == {
        k: v for k, v in expected.items() if k != "at"
    }
    assert json.loads(fields["data"]) == data
    assert fields["at"].endswith("Z")


async def test_the_stream_is_capped(r: Redis) -> None:
    for n in range(10):
        turn = a_turn()
        for m in range(100):
            notify(turn, "task.failed", "u1", f"t{n}-{m}:task.failed", {}, max_len=100)
        await commit(r, turn)
    length = await r.xlen(keys.webhook_events())
    assert 100 <= length < 1000, length


def test_only_known_kinds_and_complete_fields() -> None:
    assert set(EVENTS) == {
        "permission.requested",
        "input.requested",
        "task.completed",
        "task.failed",
    }
    with pytest.raises(ValueError):
        notification_fields("task.exploded", "u1", "k", {})
    with pytest.raises(ValueError):
        notification_fields("task.failed", "", "k", {})
    with pytest.raises(ValueError):
        notify(a_turn(), "task.failed", "u1", "", {})
