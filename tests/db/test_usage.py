"""Usage summed in SQL per session, agent and day (`orchestra.db.usage`), on SQLite and
PostgreSQL. The PostgreSQL database is shared by the session's tests: each test has its
own owners and looks at theirs only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestra.db import Store


def _usage(inp: int, out: int, cost: float, cache_read: int = 0) -> dict[str, Any]:
    return {"inputTokens": inp, "outputTokens": out, "cacheReadTokens": cache_read,
            "costUsd": cost}  # fmt: skip


async def _tasks(store: Store) -> tuple[str, str, str, str]:
    """Two owners' tasks across two days, two sessions and two agents; (owner, other,
    agent a, session s1). One task reported nothing, one is another owner's."""
    owner, other = uuid.uuid4().hex, uuid.uuid4().hex
    agent_a, _ = await store.create_agent("usage-a", owner, [])
    agent_b, _ = await store.create_agent("usage-b", owner, [])
    s1 = await store.create_session(owner, title="first")
    s2 = await store.create_session(owner, title="second")
    day1 = datetime(2031, 3, 4, 23, 59, 59, tzinfo=UTC)
    day2 = day1 + timedelta(seconds=2)  # just past midnight, UTC
    later = day2 + timedelta(seconds=1)
    rows = [
        (owner, s1.id, agent_a.id, day1, _usage(100, 10, 0.5, cache_read=7)),
        (owner, s1.id, agent_b.id, day2, _usage(20, 2, 0.25)),
        (owner, s2.id, agent_a.id, later, _usage(3, 1, 0.125)),
        (owner, s2.id, agent_a.id, later, None),  # a custom task: no usage
        (other, s2.id, agent_a.id, later, _usage(1000, 1000, 10.0)),
    ]
    for who, session, agent, at, usage in rows:
        await store.create_task(
            session_id=session, owner_id=who, agent_id=agent, tool="claude", created_at=at,
            usage=usage,
        )  # fmt: skip
    return owner, other, agent_a.id, s1.id


def _row(group: Any) -> tuple[Any, ...]:
    sums = group.sums
    return (group.key, group.name, group.tasks, sums["inputTokens"], sums["outputTokens"],
            sums["cacheReadTokens"], sums["cacheWriteTokens"], sums["costUsd"])  # fmt: skip


async def test_usage_is_summed_per_day_session_and_agent_for_one_owner(store: Store) -> None:
    owner, _, agent_a, s1 = await _tasks(store)
    by_day = await store.usage_summary("day", owner_id=owner)
    assert [_row(g) for g in by_day.groups] == [
        ("2031-03-05", "2031-03-05", 2, 23, 3, 0, 0, 0.375),
        ("2031-03-04", "2031-03-04", 1, 100, 10, 7, 0, 0.5),
    ]
    assert _row(by_day.totals)[2:] == (3, 123, 13, 7, 0, 0.875)
    assert not by_day.truncated

    by_session = await store.usage_summary("session", owner_id=owner)
    assert [_row(g)[1:] for g in by_session.groups] == [
        ("second", 1, 3, 1, 0, 0, 0.125),  # its latest task is the newest: first
        ("first", 2, 120, 12, 7, 0, 0.75),
    ]
    assert by_session.groups[1].key == s1

    by_agent = await store.usage_summary("agent", owner_id=owner)
    assert [_row(g)[1:] for g in by_agent.groups] == [
        ("usage-a", 2, 103, 11, 7, 0, 0.625),  # the costlier first
        ("usage-b", 1, 20, 2, 0, 0, 0.25),
    ]
    assert by_agent.groups[0].key == agent_a


async def test_everyone_s_usage_a_time_range_and_a_limit(store: Store) -> None:
    owner, other, _, _ = await _tasks(store)
    everyone = await store.usage_summary("day", owner_id=None, limit=100_000)
    assert everyone.totals.tasks >= 4  # others' tests share the database
    theirs = await store.usage_summary("day", owner_id=other)
    assert [_row(g)[2:] for g in theirs.groups] == [(1, 1000, 1000, 0, 0, 10.0)]

    midnight = datetime(2031, 3, 5, tzinfo=UTC)
    before = await store.usage_summary("day", owner_id=owner, until=midnight)
    after = await store.usage_summary("day", owner_id=owner, since=midnight)
    assert [g.key for g in before.groups] == ["2031-03-04"]
    assert [g.key for g in after.groups] == ["2031-03-05"]
    assert after.totals.tasks == 2 and after.totals.sums["costUsd"] == pytest.approx(0.375)

    first = await store.usage_summary("day", owner_id=owner, limit=1)
    assert [g.key for g in first.groups] == ["2031-03-05"] and first.truncated
    assert first.totals.tasks == 3  # the totals are of every group
