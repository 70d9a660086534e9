"""The SQL store: every read and write of Orchestra's tables goes through `Store`.

One `Store` owns one SQLAlchemy async engine (SQLite through aiosqlite, or PostgreSQL through
asyncpg). Each method runs in its own short session and returns detached model instances, so
callers never hold a connection. The account methods live in `orchestra.db.accounts`, the
webhooks' in `orchestra.db.hooks`, the audit log's in `orchestra.db.audit`, the engine and
error mapping in `orchestra.db.base`; this module adds sessions, tasks and the archive of
session events.

Errors: `StoreError` (a `DatabaseError`, DB_001) when the database or driver failed;
`DuplicateError` (an `InvalidParameters`, PARAM_001) when a unique name or id is taken;
`TypeError` for a field name a model does not have (a bug in the caller).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, cast, or_
from sqlmodel import and_, col, select

from orchestra.codec import parse_event_id, to_json
from orchestra.db.accounts import AccountStore
from orchestra.db.alerts import AlertStore
from orchestra.db.audit import AuditStore
from orchestra.db.base import DuplicateError, StoreError, check_fields, guarded
from orchestra.db.hooks import PushStore, WebhookStore
from orchestra.db.models import SessionEventRecord, SessionRecord, TaskRecord, new_id
from orchestra.db.usage import UsageStore

__all__ = ["DuplicateError", "Store", "StoreError"]


_COLUMNS = "session_id, event_id, ms, seq, event, payload"
_ARCHIVE_SQLITE = (
    f"INSERT INTO session_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (session_id, event_id) DO NOTHING"
)
_ARCHIVE_PG = (
    f"INSERT INTO session_events ({_COLUMNS}) "
    "SELECT $1, e, m, s, n, p::json FROM unnest($2::text[], $3::bigint[], $4::bigint[], "
    "$5::text[], $6::text[]) AS t(e, m, s, n, p) "
    "ON CONFLICT (session_id, event_id) DO NOTHING RETURNING event_id"
)


class Store(AccountStore, WebhookStore, PushStore, AuditStore, UsageStore, AlertStore):
    """Async access to Orchestra's SQL tables; see the module docstring."""

    # ---- sessions --------------------------------------------------------------------------

    @guarded
    async def create_session(
        self,
        owner_id: str,
        *,
        title: str = "",
        agent_id: str | None = None,
        session_id: str | None = None,
    ) -> SessionRecord:
        """A new active session with its owner as the only participant."""
        record = SessionRecord(
            id=session_id or new_id(),
            owner_id=owner_id,
            title=title,
            agent_id=agent_id,
            participants=[owner_id],
        )
        return await self._add(record)

    async def ensure_session(
        self, owner_id: str, *, title: str = "", agent_id: str | None = None, session_id: str
    ) -> None:
        """`create_session`, unless a session with this id is there already: both the
        session actor (after its commit) and the gateway (before answering) write it, so
        a list read right after the answer finds it."""
        try:
            await self.create_session(
                owner_id, title=title, agent_id=agent_id, session_id=session_id
            )
        except DuplicateError:
            pass

    @guarded
    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._get(SessionRecord, session_id)

    @guarded
    async def list_sessions(self, user_id: str, *, admin: bool = False) -> list[SessionRecord]:
        """Sessions ``user_id`` owns or takes part in; every session for an admin."""
        order = [col(SessionRecord.created_at), col(SessionRecord.id)]
        if admin:
            return await self._list(SessionRecord, order=order)
        # participants is JSON, which the two databases query differently. A text match on the
        # quoted id narrows the rows in SQL alike on both; the exact test is made here after.
        mentions = cast(col(SessionRecord.participants), Text).contains(
            json.dumps(user_id), autoescape=True
        )
        rows = await self._list(
            SessionRecord, or_(col(SessionRecord.owner_id) == user_id, mentions), order=order
        )
        return [r for r in rows if r.owner_id == user_id or user_id in r.participants]

    @guarded
    async def update_session(self, session_id: str, **fields: Any) -> SessionRecord | None:
        """Change the given fields (status, title, participants, ended_at...); None if unknown."""
        check_fields(SessionRecord, fields, frozen=("id",))
        return await self._update(SessionRecord, session_id, fields)

    @guarded
    async def add_participant(self, session_id: str, user_id: str) -> SessionRecord | None:
        """Add a user to a session's participants (once); None when the session is unknown."""
        async with self._session() as s:
            record = await s.get(SessionRecord, session_id, with_for_update=True)
            if record is None:
                return None
            if user_id not in record.participants:
                record.participants = [*record.participants, user_id]
                s.add(record)
                await s.commit()
            return record

    # ---- tasks -----------------------------------------------------------------------------

    @guarded
    async def create_task(self, **fields: Any) -> TaskRecord:
        """A new task from its fields (``session_id``, ``owner_id``, ``tool`` at least)."""
        check_fields(TaskRecord, fields, frozen=())
        return await self._add(TaskRecord.model_validate(fields))

    @guarded
    async def get_task(self, task_id: str) -> TaskRecord | None:
        return await self._get(TaskRecord, task_id)

    @guarded
    async def list_tasks(
        self,
        *,
        owner_id: str | None = None,
        session_id: str | None = None,
        status: str | None = None,
        agent_id: str | None = None,
    ) -> list[TaskRecord]:
        """Tasks matching every filter given, oldest first."""
        filters = {
            "owner_id": owner_id,
            "session_id": session_id,
            "status": status,
            "agent_id": agent_id,
        }
        where = [getattr(TaskRecord, k) == v for k, v in filters.items() if v is not None]
        return await self._list(
            TaskRecord, *where, order=[col(TaskRecord.created_at), col(TaskRecord.id)]
        )

    @guarded
    async def update_task(self, task_id: str, **fields: Any) -> TaskRecord | None:
        check_fields(TaskRecord, fields, frozen=("id",))
        return await self._update(TaskRecord, task_id, fields)

    # ---- session event archive -------------------------------------------------------------

    @guarded
    async def archive_events(
        self, session_id: str, entries: Sequence[tuple[str, str, dict[str, Any] | str]]
    ) -> int:
        """Keep stream entries (event_id, event, payload); ids already kept are skipped.
        A payload may be given as the JSON text of an object (as the stream holds it),
        which is stored as it is.

        Returns how many were new.
        """
        ids, ms_, seqs, names, payloads = [], [], [], [], []
        for event_id, event_name, payload in entries:
            ms, seq = parse_event_id(event_id)
            ids.append(event_id)
            ms_.append(ms)
            seqs.append(seq)
            names.append(event_name)
            payloads.append(payload if isinstance(payload, str) else to_json(payload))
        if not ids:
            return 0
        # Straight to the driver: SQLAlchemy's per-row parameter processing held the event
        # loop for 30-50 ms per 1,000 events while a fast session's stream was trimmed.
        # SQLite runs the rows in aiosqlite's thread; PostgreSQL takes them as arrays.
        async with self._session() as s:
            connection = await s.connection()
            if self.dialect == "postgresql":
                result = await connection.exec_driver_sql(
                    _ARCHIVE_PG, (session_id, ids, ms_, seqs, names, payloads)
                )
                added = len(result.all())
            else:
                rows = [
                    (session_id, *row) for row in zip(ids, ms_, seqs, names, payloads, strict=True)
                ]
                result = await connection.exec_driver_sql(_ARCHIVE_SQLITE, rows)
                added = result.rowcount  # executemany sums the rows it inserted
            await s.commit()
        return added

    @guarded
    async def list_events(
        self, session_id: str, *, after: str | None = None, limit: int = 1000
    ) -> list[SessionEventRecord]:
        """Archived events of a session in stream order, strictly after ``after``."""
        ms, seq = col(SessionEventRecord.ms), col(SessionEventRecord.seq)
        where: list[Any] = [col(SessionEventRecord.session_id) == session_id]
        if after is not None:
            a_ms, a_seq = parse_event_id(after)
            where.append(or_(ms > a_ms, and_(ms == a_ms, seq > a_seq)))
        async with self._session() as s:
            stmt = select(SessionEventRecord).where(*where).order_by(ms, seq).limit(limit)
            return list((await s.exec(stmt)).all())

    @guarded
    async def list_events_before(
        self, session_id: str, *, before: str, limit: int = 1000
    ) -> list[SessionEventRecord]:
        """Archived events of a session strictly before ``before``, newest first: the
        `(session_id, ms, seq)` index read backwards from there."""
        ms, seq = col(SessionEventRecord.ms), col(SessionEventRecord.seq)
        b_ms, b_seq = parse_event_id(before)
        # `ms <= b_ms` is the index's range; the OR only sorts out the rows of that one ms.
        where = [
            col(SessionEventRecord.session_id) == session_id,
            ms <= b_ms,
            or_(ms < b_ms, seq < b_seq),
        ]
        async with self._session() as s:
            stmt = select(SessionEventRecord).where(*where)
            stmt = stmt.order_by(ms.desc(), seq.desc()).limit(limit)
            return list((await s.exec(stmt)).all())
