"""Alerts in the SQL store: each firing of a rule for a subject, and its resolution.

The gateway's alert delivery (`gateway.alerts.delivery`) writes each alert event once,
though a node that takes an event over may write it again: a repeat is recognised by
(`alert_id`, `status`) and ignored. A firing and its resolution may be written by two
nodes in either order; whichever comes second links them (the firing's `resolved_at`).
Also here: what the alert rules read of SQL (the tasks running now).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select

from orchestra.db.base import DuplicateError, StoreBase, guarded
from orchestra.db.models import AlertRecord, TaskRecord

__all__ = ["AlertStore"]


class AlertStore(StoreBase):
    """The store's methods for alerts (`orchestra.db.store.Store` inherits them)."""

    async def record_alert(self, record: AlertRecord) -> bool:
        """Write one alert event (a firing or a resolution); False when it was written
        before. StoreError when the database failed."""
        try:
            await self._add_alert(record)
            added = True
        except DuplicateError:
            added = False
        await self._link_resolution(record.alert_id)
        return added

    @guarded
    async def _add_alert(self, record: AlertRecord) -> None:
        await self._add(record)

    @guarded
    async def _link_resolution(self, alert_id: str) -> None:
        """The firing's `resolved_at` from its resolution, once both are written."""
        async with self._session() as s:
            resolved = (
                await s.exec(
                    select(AlertRecord.at).where(
                        col(AlertRecord.alert_id) == alert_id, col(AlertRecord.status) == "resolved"
                    )
                )
            ).first()
        if resolved is not None:
            await self._set(
                AlertRecord,
                [
                    col(AlertRecord.alert_id) == alert_id,
                    col(AlertRecord.status) == "firing",
                    col(AlertRecord.resolved_at).is_(None),
                ],
                resolved_at=resolved,
            )

    @guarded
    async def list_alerts(
        self,
        *,
        limit: int,
        before: int | None = None,
        status: str | None = None,
        rule: str | None = None,
        subject: str | None = None,
    ) -> list[AlertRecord]:
        """Alert events matching every filter given, newest first, at most `limit`;
        `before`: those written before the event of that id."""
        where: list[Any] = []
        if before is not None:
            where.append(col(AlertRecord.id) < before)
        if status is not None:
            where.append(col(AlertRecord.status) == status)
        if rule is not None:
            where.append(col(AlertRecord.rule) == rule)
        if subject is not None:
            where.append(col(AlertRecord.subject) == subject)
        stmt = select(AlertRecord).where(*where).order_by(col(AlertRecord.id).desc()).limit(limit)
        async with self._session() as s:
            return list((await s.exec(stmt)).all())

    @guarded
    async def running_tasks(self, *, limit: int) -> list[tuple[str, str, datetime]]:
        """(task id, session id, created at) of the tasks running now, oldest first: the
        only ones that may have a permission request waiting."""
        stmt = (
            select(col(TaskRecord.id), col(TaskRecord.session_id), col(TaskRecord.created_at))
            .where(col(TaskRecord.status).in_(("accepted", "running")))
            .order_by(col(TaskRecord.created_at))
            .limit(limit)
        )
        async with self._session() as s:
            rows = (await s.exec(stmt)).all()
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]
