"""Alert events in the SQL store, on SQLite and on PostgreSQL: each written once however
often it is delivered, a firing linked to its resolution in whichever order they come,
and listed newest first with filters.

The PostgreSQL database is shared by the whole test session: every test uses its own
subjects and reads only those.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from orchestra.db import AlertRecord, Store


def event(alert_id: str, subject: str, status: str, at: datetime) -> AlertRecord:
    return AlertRecord(
        alert_id=alert_id,
        rule="agent_offline",
        subject=subject,
        severity="error",
        status=status,
        message=f"agent {subject} is offline",
        since=at if status == "firing" else at - timedelta(seconds=30),
        at=at,
        details={"agentId": subject},
    )


async def test_an_event_is_kept_once_and_linked_to_its_resolution_either_way(
    store: Store,
) -> None:
    subject = f"agent-{uuid.uuid4().hex[:10]}"
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    t0 = datetime.now(UTC).replace(microsecond=0)

    # In order, each delivered twice (a node took the event over).
    assert await store.record_alert(event(first, subject, "firing", t0)) is True
    assert await store.record_alert(event(first, subject, "firing", t0)) is False
    assert await store.record_alert(event(first, subject, "resolved", t0 + timedelta(seconds=30)))
    assert not await store.record_alert(
        event(first, subject, "resolved", t0 + timedelta(seconds=30))
    )
    # The resolution first (two nodes delivering the two events at once).
    t1 = t0 + timedelta(minutes=5)
    await store.record_alert(event(second, subject, "resolved", t1 + timedelta(seconds=30)))
    await store.record_alert(event(second, subject, "firing", t1))

    listed = await store.list_alerts(limit=10, subject=subject)
    assert [(r.alert_id, r.status) for r in listed] == [
        (second, "firing"),
        (second, "resolved"),
        (first, "resolved"),
        (first, "firing"),
    ]
    by_event = {(r.alert_id, r.status): r for r in listed}
    assert by_event[(first, "firing")].resolved_at == t0 + timedelta(seconds=30)
    assert by_event[(second, "firing")].resolved_at == t1 + timedelta(seconds=30)
    assert by_event[(first, "resolved")].resolved_at is None
    kept = by_event[(first, "firing")]
    assert (kept.rule, kept.severity, kept.since, kept.at) == ("agent_offline", "error", t0, t0)
    assert kept.details == {"agentId": subject}

    firing = await store.list_alerts(limit=10, subject=subject, status="firing")
    assert [r.alert_id for r in firing] == [second, first]
    page = await store.list_alerts(limit=2, subject=subject)
    rest = await store.list_alerts(limit=10, subject=subject, before=page[-1].id)
    assert [r.id for r in page + rest] == [r.id for r in listed]
    assert await store.list_alerts(limit=10, subject=subject, rule="high_latency") == []


async def test_running_tasks_are_those_a_permission_may_wait_in(store: Store) -> None:
    owner = f"user-{uuid.uuid4().hex[:10]}"
    made = {}
    for status in ("queued", "accepted", "running", "completed"):
        task = await store.create_task(
            session_id=f"s-{owner}", owner_id=owner, tool="custom", status=status
        )
        made[task.id] = status
    running = await store.running_tasks(limit=100_000)
    mine = {task_id: sid for task_id, sid, _ in running if task_id in made}
    assert {made[t] for t in mine} == {"accepted", "running"}
    assert set(mine.values()) == {f"s-{owner}"}
