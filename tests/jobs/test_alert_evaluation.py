"""The alert evaluator against a real Redis and SQLite, with synthetic facts (an agent's
actor state written by the test, request counts from two "nodes"): a condition fires
once however often it is evaluated, and by two evaluators at once; it resolves once; it
does not fire again within its cool-down. (tests/e2e/test_alerts.py runs it in a cluster.)
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from gateway.alerts import AlertEvaluator, RequestTally
from orchestra import keys, redis_client
from orchestra.db import Store
from orchestra.redis_server import RedisServer
from orchestra.settings import Settings


@pytest_asyncio.fixture
async def client(redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client.connect(redis.url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'orchestra.db'}"
    async with Store(url, secrets_key=base64.b64encode(b"k" * 32).decode()) as opened:
        yield opened


PARTITIONS = 16  # the evaluators' `settings.partitions`, which the agents' keys are built with


def settings(tmp_path: Path, **values: Any) -> Settings:
    defaults = {"alert_cooldown_s": 0, "alert_error_min_requests": 10, "partitions": PARTITIONS}
    values = defaults | values
    return Settings(data_dir=tmp_path, **values).with_defaults()


async def events(client: Redis) -> list[tuple[str, str]]:
    """(kind, alert key) of each event appended to the alert stream."""
    found: list[tuple[str, dict[str, str]]] = await client.xrange(keys.alert_events())  # type: ignore[assignment]
    return [(f["kind"], json.loads(f["data"])["key"]) for _, f in found]


async def set_agent(client: Redis, agent_id: str, status: str) -> None:
    state = {"id": agent_id, "name": "box", "status": status, "running": [], "latencyMs": 3.0}
    await client.hset(
        keys.agent(agent_id, PARTITIONS), mapping={k: json.dumps(v) for k, v in state.items()}
    )


async def test_an_agent_offline_fires_once_resolves_once_and_cools_down(
    client: Redis, store: Store, tmp_path: Path
) -> None:
    agent, _ = await store.create_agent("box", "owner-1", ["custom"])
    key = f"agent_offline:{agent.id}"
    # Two nodes evaluating at once (a change of leader), without a cool-down.
    one, two = (AlertEvaluator(client, store, settings(tmp_path)) for _ in range(2))

    await set_agent(client, agent.id, "online")
    await one.evaluate()
    assert await events(client) == []

    await set_agent(client, agent.id, "offline")
    await asyncio.gather(one.evaluate(), two.evaluate())
    await one.evaluate()  # firing still: not reported again
    assert await events(client) == [("alert.firing", key)]
    firing = json.loads(await client.hget(keys.alerts_firing(), key) or "{}")
    assert {k: firing[k] for k in ("rule", "subject", "severity")} == {
        "rule": "agent_offline",
        "subject": agent.id,
        "severity": "error",
    }
    assert firing["message"] == "agent box is offline" and firing["since"]

    await set_agent(client, agent.id, "online")
    await asyncio.gather(one.evaluate(), two.evaluate())
    assert await events(client) == [("alert.firing", key), ("alert.resolved", key)]
    assert await client.hlen(keys.alerts_firing()) == 0

    # It flaps: with a cool-down, not reported again until that is over.
    cooled = AlertEvaluator(client, store, settings(tmp_path, alert_cooldown_s=3600))
    for status in ("offline", "online", "offline"):
        await set_agent(client, agent.id, status)
        await cooled.evaluate()
    assert (await events(client))[2:] == [("alert.firing", key), ("alert.resolved", key)]
    assert await client.hlen(keys.alerts_firing()) == 0
    await one.evaluate()  # no cool-down
    assert (await events(client))[4:] == [("alert.firing", key)]


async def test_the_error_rate_counts_every_node(
    client: Redis, store: Store, tmp_path: Path
) -> None:
    config = settings(tmp_path, alert_error_rate=0.25)
    nodes = [RequestTally(client, config.alert_window_s) for _ in range(2)]
    for n in range(12):
        nodes[n % 2].count(error=n < 3)  # 3 errors of 12: a quarter, not over it
    for node in nodes:
        await node.flush()
    evaluator = AlertEvaluator(client, store, config)
    await evaluator.evaluate()
    assert await events(client) == []

    for _ in range(4):
        nodes[1].count(error=True)  # 7 errors of 16
    await nodes[1].flush()
    await evaluator.evaluate()
    assert await events(client) == [("alert.firing", "high_error_rate:requests")]
    firing = json.loads(await client.hget(keys.alerts_firing(), "high_error_rate:requests") or "")
    assert (firing["details"]["requests"], firing["details"]["errors"]) == (16, 7)
