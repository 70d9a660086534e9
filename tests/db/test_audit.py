"""The audit log in the SQL store, on SQLite and on PostgreSQL.

The PostgreSQL database is shared by the whole test session: every test writes entries
under its own unique actor or target and reads only those.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from orchestra.db import Store


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_entries_are_kept_whole_and_listed_newest_first(store: Store) -> None:
    actor, target = unique("admin"), unique("user")
    first = await store.add_audit(
        "user.created",
        actor_id=actor,
        target_type="user",
        target_id=target,
        ip="203.0.113.7",
        details={"username": "bob", "isAdmin": False, "nested": {"a": [1, 2]}},
    )
    second = await store.add_audit(
        "user.deleted", actor_id=actor, target_type="user", target_id=target
    )
    assert isinstance(first.id, int) and isinstance(second.id, int) and second.id > first.id

    entries = await store.list_audit(limit=10, actor_id=actor)
    assert [e.id for e in entries] == [second.id, first.id]
    kept = entries[1]
    assert (kept.action, kept.actor_id, kept.target_type, kept.target_id, kept.ip) == (
        "user.created",
        actor,
        "user",
        target,
        "203.0.113.7",
    )
    assert kept.details == {"username": "bob", "isAdmin": False, "nested": {"a": [1, 2]}}
    assert kept.at.tzinfo is not None and abs(datetime.now(UTC) - kept.at) < timedelta(minutes=5)
    assert entries[0].ip is None and entries[0].details == {}


async def test_an_entry_without_actor_or_target(store: Store) -> None:
    name = unique("nobody")
    await store.add_audit(
        "auth.login_failed", actor_id=None, target_type="user", target_id=None, details={"u": name}
    )
    found = [
        e for e in await store.list_audit(limit=1000, action="auth.login_failed")
        if e.details.get("u") == name
    ]  # fmt: skip
    assert len(found) == 1 and found[0].actor_id is None and found[0].target_id is None


async def test_filters_limit_and_paging(store: Store) -> None:
    actor, other = unique("actor"), unique("other")
    ids = []
    for n in range(5):
        entry = await store.add_audit(
            "agent.created" if n % 2 == 0 else "agent.revoked",
            actor_id=actor,
            target_type="agent",
            target_id=f"{actor}-agent-{n}",
        )
        ids.append(entry.id)
    await store.add_audit("agent.created", actor_id=other, target_type="agent", target_id="x")
    newest_first = list(reversed(ids))

    assert [e.id for e in await store.list_audit(limit=100, actor_id=actor)] == newest_first
    assert [e.id for e in await store.list_audit(limit=2, actor_id=actor)] == newest_first[:2]
    # A page after the last id seen, and the one after that.
    page = await store.list_audit(limit=2, actor_id=actor, before=newest_first[1])
    assert [e.id for e in page] == newest_first[2:4]
    assert page[-1].id is not None
    last = await store.list_audit(limit=2, actor_id=actor, before=page[-1].id)
    assert [e.id for e in last] == newest_first[4:]
    # Filters combine.
    created = await store.list_audit(limit=100, actor_id=actor, action="agent.created")
    assert [e.id for e in created] == [ids[4], ids[2], ids[0]]
    by_target = await store.list_audit(limit=100, target_id=f"{actor}-agent-3")
    assert [e.id for e in by_target] == [ids[3]]
    assert await store.list_audit(limit=100, actor_id=actor, action="user.deleted") == []


async def test_before_a_time(store: Store) -> None:
    actor = unique("actor")
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for hours in range(3):
        await store.add_audit(
            "auth.login",
            actor_id=actor,
            target_type="user",
            target_id=actor,
            at=base + timedelta(hours=hours),
        )
    earlier = await store.list_audit(limit=10, actor_id=actor, before=base + timedelta(hours=2))
    assert [e.at for e in earlier] == [base + timedelta(hours=1), base]
    # A naive time is UTC.
    naive = await store.list_audit(limit=10, actor_id=actor, before=datetime(2024, 5, 1, 13, 0))
    assert [e.at for e in naive] == [base]
