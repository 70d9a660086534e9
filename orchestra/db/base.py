"""The foundation of the SQL store: engine setup, table creation, error mapping, and the generic
queries that `orchestra.db.store.Store` is built from.

Driver and database failures come out as `StoreError` (a `DatabaseError`, DB_001); a taken
unique name or id as `DuplicateError` (PARAM_001), so a gateway may show it to the caller.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import orjson
from sqlalchemy import Connection, Table, event, inspect, text, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orchestra import errors, strict_json
from orchestra.db.models import MODELS
from orchestra.files import make_private_dir, secure_sqlite_file

__all__ = ["DuplicateError", "StoreBase", "StoreError", "check_fields", "guarded"]

T = TypeVar("T")
P = ParamSpec("P")
M = TypeVar("M", bound=SQLModel)

# SQLite: how long a writer waits for another process's write lock before giving up.
_SQLITE_BUSY_TIMEOUT_MS = 10_000
# PostgreSQL: serialises create_all between gateways starting at once ("orch" in ASCII).
_SCHEMA_LOCK_KEY = 0x6F726368


class StoreError(errors.DatabaseError):
    """Raised when the SQL store failed: connection, driver, or an unexpected constraint."""


class DuplicateError(errors.InvalidParameters):
    """Raised when a unique name is taken (a username, or an id given twice)."""


def _describe(exc: BaseException) -> str:
    # The driver's own message: SQLAlchemy's would add the SQL, which says nothing to a caller.
    # Bound parameters (which may hold a secret) never appear: the engine hides them.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    return f"{type(exc).__name__}: {exc}"


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505" or getattr(orig, "pgcode", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(orig)


def guarded(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn SQLAlchemy and connection failures of a store method into Orchestra errors."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise DuplicateError(_describe(exc)) from exc
            raise StoreError(_describe(exc)) from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(_describe(exc)) from exc

    return wrapper


def check_fields(model: type[SQLModel], fields: dict[str, Any], frozen: Iterable[str]) -> None:
    """A misspelt or read-only field name is the caller's bug: say so before touching the DB."""
    bad = sorted((set(fields) - set(model.model_fields)) | (set(fields) & set(frozen)))
    if bad:
        raise TypeError(f"{model.__name__} has no settable field(s): {', '.join(bad)}")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Several processes (a gateway, the CLI) may share the file: the busy timeout makes a writer
    # wait for another's lock instead of failing at once. (WAL is set once, see _enable_wal.)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, and much faster
    finally:
        cursor.close()


async def _enable_wal(engine: AsyncEngine) -> None:
    """Put the database file in WAL mode, so that readers run beside a writer.

    The mode is stored in the file, so this is needed once per file, but every opener tries.
    Switching needs a moment of exclusive access, and SQLite reports "database is locked" at
    once rather than waiting when others are connecting too; so retry, backing off, for as
    long as a writer would wait.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


class StoreBase:
    """The engine, its lifecycle, and the small queries the store's methods are made of."""

    def __init__(self, url: str, *, secrets_key: str | None = None) -> None:
        self.url = url
        # The master key agent secrets are kept encrypted under (`Settings.secrets_key`);
        # without it the store neither reads nor makes agent secrets.
        self._secrets_key = secrets_key or None
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({make_url(self.url).render_as_string(hide_password=True)!r})"

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, *, secrets_key: str | None = None) -> Self:
        """A store for ``url``, opened."""
        store = cls(url, secrets_key=secrets_key)
        await store.open()
        return store

    async def open(self) -> None:
        """Create the engine and any missing tables. Opening an open store does nothing."""
        if self._engine is not None:
            return
        url = make_url(self.url)
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database: {backend!r} (use sqlite or postgresql)")
        path = _sqlite_file(url) if backend == "sqlite" else None
        if path is not None:
            # Readable by this user only: a new folder 0700, the database file 0600 (SQLite
            # gives its -wal and -shm files the same mode).
            try:
                make_private_dir(path.parent)
                secure_sqlite_file(path)
            except OSError as exc:
                raise StoreError(_describe(exc)) from exc
        engine = _make_engine(url, backend)
        try:
            if backend == "sqlite" and path is not None:
                await _enable_wal(engine)
            async with engine.begin() as conn:
                await _create_tables(conn, backend)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise StoreError(_describe(exc)) from exc
        self._engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        """Dispose of the engine and its connections."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """One round trip to the database, for health checks; StoreError when it fails."""
        if self._engine is None:
            raise StoreError("the store is not open")
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreError(_describe(exc)) from exc

    @property
    def dialect(self) -> str:
        """Which database this is: "sqlite" or "postgresql"."""
        return make_url(self.url).get_backend_name()

    def _session(self) -> AsyncSession:
        if self._sessions is None:
            raise StoreError("the store is not open")
        return self._sessions()

    # ---- generic helpers -------------------------------------------------------------------

    async def _add(self, record: M) -> M:
        async with self._session() as s:
            s.add(record)
            await s.commit()
        return record

    async def _get(self, model: type[M], key: Any) -> M | None:
        async with self._session() as s:
            return await s.get(model, key)

    async def _update(self, model: type[M], key: str, fields: dict[str, Any]) -> M | None:
        async with self._session() as s:
            record = await s.get(model, key)
            if record is None:
                return None
            for name, value in fields.items():
                setattr(record, name, value)
            s.add(record)
            await s.commit()
            return record

    async def _delete(self, model: type[M], *where: Any) -> int:
        async with self._session() as s:
            result = await s.exec(sa_delete(model).where(*where))
            await s.commit()
            return result.rowcount

    async def _list(self, model: type[M], *where: Any, order: Sequence[Any] = ()) -> list[M]:
        async with self._session() as s:
            return list((await s.exec(select(model).where(*where).order_by(*order))).all())

    async def _set(self, model: type[M], where: Sequence[Any], **values: Any) -> int:
        async with self._session() as s:
            result = await s.exec(update(model).where(*where).values(**values))
            await s.commit()
            return result.rowcount


def _make_engine(url: URL, backend: str) -> AsyncEngine:
    """The async engine for ``url``, with the per-database settings the store relies on."""
    # hide_parameters: error messages and logs must never carry a secret or a password hash.
    # pre-ping (PostgreSQL): a server restart must not hand out dead pooled connections.
    # JSON columns (archived events, mostly) through orjson: the standard library's codec
    # cost more than the insert itself when a trim archives a page of events.
    engine = create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=backend == "postgresql",
        json_serializer=strict_json.dumps,
        json_deserializer=orjson.loads,
    )
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


async def _create_tables(conn: AsyncConnection, backend: str) -> None:
    # Gateways and the CLI may start together: take a lock so that only one creates tables and
    # the others find them made (create_all is check-then-create, racy without it).
    if backend == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
    tables = [model.__table__ for model in MODELS]  # type: ignore[attr-defined]
    await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=tables))
    await conn.run_sync(lambda sync: _add_missing_columns(sync, tables))


def _add_missing_columns(sync: Connection, tables: Sequence[Table]) -> None:
    """Columns added to a table since the database was made (nullable ones only): a data
    folder of an earlier version keeps working, its old rows reading NULL there."""
    inspector = inspect(sync)
    for table in tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=sync.dialect)
            sync.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
