"""Token usage and cost summed over tasks, per session, agent or day, in SQL.

Each task's record keeps the summed `TokenUsage` of its turns (`tasks.usage`, JSON); these
queries add those up with the database's own JSON functions (SQLite's `json_extract`,
PostgreSQL's `->>`), grouped in the database, so nothing is read row by row. A day is the
UTC date the task was created on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlmodel import col

from orchestra.db.base import StoreBase, guarded
from orchestra.db.models import Agent, SessionRecord, TaskRecord

__all__ = [
    "LIVE_STATUSES",
    "USAGE_FIELDS",
    "Grouping",
    "UsageGroup",
    "UsageStore",
    "UsageSummary",
]

Grouping = Literal["session", "agent", "day"]

USAGE_FIELDS = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "costUsd")
"""The TokenUsage fields that are summed (PROTOCOL.md §4)."""

LIVE_STATUSES = ("queued", "assigned", "accepted", "running", "rejected")
"""A task in one of these may still add usage (its record is written as its status
changes: between turns of a long conversation, it lags behind the live state)."""


@dataclass(frozen=True)
class UsageGroup:
    """What the tasks of one session, agent or day used."""

    key: str | None
    """The session id, the agent id, or the day (`YYYY-MM-DD`)."""
    name: str | None
    """The session's title, the agent's name, or the day again."""
    tasks: int
    sums: dict[str, float]
    """Each of `USAGE_FIELDS`, summed (0 where no task reported it)."""
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class UsageSummary:
    groups: list[UsageGroup]
    """Newest first (by day, by the session's latest task), agents by cost."""
    totals: UsageGroup
    truncated: bool
    """More groups matched than the limit allowed."""


def _day(store: StoreBase) -> ColumnElement[Any]:
    created = col(TaskRecord.created_at)
    if store.dialect == "postgresql":
        return func.to_char(func.timezone("UTC", created), "YYYY-MM-DD")
    return func.date(created)  # SQLite keeps it as naive UTC text: "YYYY-MM-DD HH:MM:SS..."


def _grouping(store: StoreBase, by: Grouping) -> tuple[Any, Any, tuple[Any, Any] | None]:
    """The key and the name of a group, and the table the name comes from (joined on)."""
    if by == "session":
        session = col(TaskRecord.session_id)
        return session, col(SessionRecord.title), (SessionRecord, col(SessionRecord.id) == session)
    if by == "agent":
        agent: Any = col(TaskRecord.agent_id)
        return agent, col(Agent.name), (Agent, col(Agent.id) == agent)
    day = _day(store)
    return day, day, None


class UsageStore(StoreBase):
    """The store's usage sums (`orchestra.db.store.Store` inherits them)."""

    @guarded
    async def usage_summary(
        self,
        by: Grouping,
        *,
        owner_id: str | None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> UsageSummary:
        """The usage of the tasks that reported some, created in [since, until), of
        `owner_id` (everyone's when None), grouped `by` session, agent or day."""
        usage = col(TaskRecord.usage)
        where: list[Any] = [usage.is_not(None)]
        if owner_id is not None:
            where.append(col(TaskRecord.owner_id) == owner_id)
        if since is not None:
            where.append(col(TaskRecord.created_at) >= since)
        if until is not None:
            where.append(col(TaskRecord.created_at) < until)
        numbers = [func.coalesce(usage[f].as_float(), 0.0).label(f) for f in USAGE_FIELDS]
        created: Any = col(TaskRecord.created_at).label("created_at")
        key, name, joined = _grouping(self, by)
        inner = select(key.label("key"), name.label("name"), created, *numbers).where(*where)
        if joined is not None:
            inner = inner.outerjoin(*joined)
        rows = inner.subquery()
        sums = [func.sum(rows.c[f]).label(f) for f in USAGE_FIELDS]
        first_at, last_at = func.min(rows.c.created_at), func.max(rows.c.created_at)
        order: list[Any]
        if by == "day":
            order = [rows.c.key.desc()]
        elif by == "session":
            order = [last_at.desc(), rows.c.key]
        else:
            order = [func.sum(rows.c.costUsd).desc(), rows.c.name, rows.c.key]
        grouped = (
            select(rows.c.key, rows.c.name, func.count(), first_at, last_at, *sums)
            .group_by(rows.c.key, rows.c.name)
            .order_by(*order)
            .limit(limit + 1)
        )
        total = select(func.count(), first_at, last_at, *sums).select_from(rows)
        async with self._session() as s:
            connection = await s.connection()
            found = (await connection.execute(grouped)).all()
            everything = (await connection.execute(total)).one()
        groups = [
            UsageGroup(
                key=None if row[0] is None else str(row[0]),
                name=None if row[1] is None else str(row[1]),
                tasks=int(row[2]),
                first_at=row[3],
                last_at=row[4],
                sums=_sums(row[5:]),
            )
            for row in found[:limit]
        ]
        totals = UsageGroup(
            key=None,
            name=None,
            tasks=int(everything[0]),
            first_at=everything[1],
            last_at=everything[2],
            sums=_sums(everything[3:]),
        )
        return UsageSummary(groups=groups, totals=totals, truncated=len(found) > limit)

    @guarded
    async def live_tasks(
        self, owner_id: str | None, *, limit: int = 1000
    ) -> list[tuple[str, str, dict[str, Any] | None]]:
        """(task id, session id, usage as recorded) of the tasks not yet ended, of `owner_id`
        (everyone's when None), the newest `limit` of them."""
        where: list[Any] = [col(TaskRecord.status).in_(LIVE_STATUSES)]
        if owner_id is not None:
            where.append(col(TaskRecord.owner_id) == owner_id)
        query = (
            select(col(TaskRecord.id), col(TaskRecord.session_id), col(TaskRecord.usage))
            .where(*where)
            .order_by(col(TaskRecord.created_at).desc())
            .limit(limit)
        )
        async with self._session() as s:
            rows = (await (await s.connection()).execute(query)).all()
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    @guarded
    async def refresh_live_usage(self, task_id: str, usage: dict[str, Any]) -> bool:
        """Record a task's live usage, unless it has ended meanwhile (its final record, written
        by the task's actor, holds its final usage already); whether it was written."""
        where = [col(TaskRecord.id) == task_id, col(TaskRecord.status).in_(LIVE_STATUSES)]
        return await self._set(TaskRecord, where, usage=usage) > 0


def _sums(values: Any) -> dict[str, float]:
    return {f: float(v or 0) for f, v in zip(USAGE_FIELDS, values, strict=True)}
