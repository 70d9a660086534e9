"""The audit log in the SQL store: who did what, to what, from where, and when.

Entries are only ever added (and read); each is numbered in the order written, so paging
newest first goes by id: `list_audit(before=<the last id seen>)` gives the next page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select

from orchestra.db.base import StoreBase, guarded
from orchestra.db.models import AuditEntry, utcnow

__all__ = ["AuditStore"]


class AuditStore(StoreBase):
    """The store's methods for the audit log (`orchestra.db.store.Store` inherits them)."""

    @guarded
    async def add_audit(
        self,
        action: str,
        *,
        actor_id: str | None,
        target_type: str | None,
        target_id: str | None,
        ip: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Write one entry (``details`` is JSON and must never hold a secret)."""
        entry = AuditEntry(
            at=at or utcnow(),
            action=action,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            ip=ip,
            details=dict(details or {}),
        )
        return await self._add(entry)

    @guarded
    async def list_audit(
        self,
        *,
        limit: int,
        before: int | datetime | None = None,
        action: str | None = None,
        actor_id: str | None = None,
        target_id: str | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, newest first, at most ``limit``.

        ``before`` is an entry id (those written before it) or a time (those made strictly
        before it).
        """
        where: list[Any] = []
        if isinstance(before, datetime):
            where.append(col(AuditEntry.at) < before)
        elif before is not None:
            where.append(col(AuditEntry.id) < before)
        if action is not None:
            where.append(col(AuditEntry.action) == action)
        if actor_id is not None:
            where.append(col(AuditEntry.actor_id) == actor_id)
        if target_id is not None:
            where.append(col(AuditEntry.target_id) == target_id)
        stmt = select(AuditEntry).where(*where).order_by(col(AuditEntry.id).desc()).limit(limit)
        async with self._session() as s:
            return list((await s.exec(stmt)).all())
