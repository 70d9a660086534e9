"""SQL tables of Orchestra: users, refresh tokens, agents, AI configs, sessions, tasks, and the
archive of session events trimmed from Redis.

Redis holds live state; these tables hold what must outlive it (accounts, credentials, history).
Every timestamp is a timezone-aware UTC datetime, on SQLite too (see `UTCDateTime`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "MODELS",
    "AIConfig",
    "Agent",
    "AlertRecord",
    "AuditEntry",
    "PushSubscription",
    "RefreshToken",
    "SessionEventRecord",
    "SessionRecord",
    "TaskRecord",
    "UTCDateTime",
    "User",
    "Webhook",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    """A fresh record id: 32 hex digits."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that always gives back aware UTC datetimes.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so values are stored there as
    naive UTC and made aware again on the way out. A naive value handed in is taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite compares these as text: one fixed, zone-less form keeps ordering right.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Fields are declared through these helpers so each table reads as a list of columns.
def _id_field() -> Any:
    return Field(default_factory=new_id, primary_key=True, max_length=64)


def _created_field() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def _time_field() -> Any:
    return Field(default=None, sa_type=UTCDateTime)


class User(SQLModel, table=True):
    """A person who logs in to the web console or the API."""

    __tablename__ = "users"

    id: str = _id_field()
    username: str = Field(sa_type=String(200), unique=True, index=True)
    password_hash: str = Field(repr=False)
    is_admin: bool = False
    disabled: bool = False
    created_at: datetime = _created_field()


class RefreshToken(SQLModel, table=True):
    """A refresh token's id (the JWT's ``jti``); each may be used once, before it expires."""

    __tablename__ = "refresh_tokens"

    jti: str = Field(primary_key=True, max_length=200)
    user_id: str = Field(index=True, max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used: bool = False
    # The sign-in it descends from: a token used twice revokes the whole family.
    family: str | None = Field(default=None, index=True, max_length=64)


class Agent(SQLModel, table=True):
    """A machine that runs workers, with the secret it signs its handshake with.

    The secret is not hashed, because the gateway recomputes HMAC-SHA256 with it: the column
    holds it encrypted under the master key ("v1." tokens, see `orchestra.db.agent_secrets`),
    and is left out of ``repr``/``str`` so that it never reaches a log line by accident.
    """

    __tablename__ = "agents"

    id: str = _id_field()
    name: str
    owner_id: str = Field(index=True, max_length=64)
    secret: str = Field(repr=False)
    capabilities: list[str] = Field(default_factory=list, sa_type=JSON)
    revoked: bool = False
    created_at: datetime = _created_field()
    version: str | None = None
    last_seen_at: datetime | None = _time_field()

    def __repr__(self) -> str:
        # Spelled out, not left to pydantic, so that a future field option can't bring it back.
        return (
            f"Agent(id={self.id!r}, name={self.name!r}, owner_id={self.owner_id!r}, "
            f"capabilities={self.capabilities!r}, revoked={self.revoked!r}, "
            f"version={self.version!r}, created_at={self.created_at!r}, "
            f"last_seen_at={self.last_seen_at!r})"
        )

    def __str__(self) -> str:
        return self.__repr__()


class AIConfig(SQLModel, table=True):
    """A user's named settings for a tool (model, API key, extra options)."""

    __tablename__ = "ai_configs"

    id: str = _id_field()
    owner_id: str = Field(index=True, max_length=64)
    name: str
    tool: str
    model: str | None = None
    api_key_encrypted: str | None = Field(default=None, repr=False)
    settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created_field()
    updated_at: datetime = _created_field()


class Webhook(SQLModel, table=True):
    """A URL a user wants told of events (`permission.requested`, `task.completed`...).

    The secret deliveries are signed with is kept encrypted (`orchestra.crypto`, the
    webhook's id as associated data) and left out of ``repr``.
    """

    __tablename__ = "webhooks"

    id: str = _id_field()
    owner_id: str = Field(index=True, max_length=64)
    url: str
    events: list[str] = Field(default_factory=list, sa_type=JSON)
    secret_encrypted: str = Field(repr=False)
    created_at: datetime = _created_field()
    active: bool = True


class SessionRecord(SQLModel, table=True):
    """A conversation: an owner, the users taking part, and the tasks run in it."""

    __tablename__ = "sessions"

    id: str = _id_field()
    owner_id: str = Field(index=True, max_length=64)
    title: str = ""
    agent_id: str | None = None
    status: str = "active"  # "active" | "paused" | "ended"
    participants: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _created_field()
    ended_at: datetime | None = _time_field()


class TaskRecord(SQLModel, table=True):
    """One run of a worker: what was asked, where it ran, and how it ended."""

    __tablename__ = "tasks"

    id: str = _id_field()
    session_id: str = Field(index=True, max_length=64)
    owner_id: str = Field(index=True, max_length=64)
    agent_id: str | None = None
    tool: str
    type: str = "code"  # "chat" | "code" | "analysis"
    priority: str = "normal"  # "low" | "normal" | "high"
    status: str = "queued"
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created_field()
    started_at: datetime | None = _time_field()
    finished_at: datetime | None = _time_field()
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None
    # none_as_null: a missing result is SQL NULL, not the JSON text "null".
    result: Any = Field(default=None, nullable=True, sa_type=JSON(none_as_null=True))
    # The tool's own conversation id (to resume it) and the summed TokenUsage of its turns.
    worker_session_id: str | None = Field(default=None, max_length=256)
    usage: dict[str, Any] | None = Field(
        default=None, nullable=True, sa_type=JSON(none_as_null=True)
    )


class SessionEventRecord(SQLModel, table=True):
    """A session event trimmed from the Redis stream, kept so that history stays complete.

    ``event_id`` is the stream entry ID ("<ms>-<seq>"); ``ms`` and ``seq`` are its two numbers,
    stored apart because the ID's text does not sort in stream order ("10-0" < "5-0").
    """

    __tablename__ = "session_events"
    __table_args__ = (Index("ix_session_events_order", "session_id", "ms", "seq"),)

    session_id: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=64)
    ms: int = Field(sa_type=BigInteger)
    seq: int = Field(sa_type=BigInteger)
    event: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class AuditEntry(SQLModel, table=True):
    """One thing done that someone may later ask about: a login, a user or agent changed, a
    permission decided. ``details`` is free-form JSON and never holds a secret or password.

    Entries are numbered in the order written (``id``, increasing), newest first when listed.
    """

    __tablename__ = "audit_log"

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that is the autoincrementing rowid.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    action: str = Field(max_length=64, index=True)  # "auth.login", "user.created", ...
    actor_id: str | None = Field(default=None, max_length=64, index=True)
    target_type: str | None = Field(default=None, max_length=32)  # "user", "agent", "task"
    target_id: str | None = Field(default=None, max_length=256, index=True)
    ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class AlertRecord(SQLModel, table=True):
    """One alert event (`gateway.alerts`): a rule firing for a subject, or that firing
    resolved. A firing and its resolution share ``alert_id`` (one row of each at most);
    the firing's row learns ``resolved_at`` when its resolution is written. Numbered in
    the order written, newest first when listed."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("alert_id", "status", name="uq_alerts_alert_status"),)

    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    alert_id: str = Field(max_length=64, index=True)
    rule: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=256)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=16, index=True)  # "firing" | "resolved"
    message: str
    since: datetime = Field(sa_type=UTCDateTime)  # when the firing began
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # this event's time
    resolved_at: datetime | None = _time_field()
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


# The tables the store creates, in one place so that other SQLModel tables in the process (if any)
# are not created in our database by accident.
class PushSubscription(SQLModel, table=True):
    """A device's Web Push subscription (`gateway.web_push`), for the events its user chose.

    What the browser gave (endpoint, p256dh, auth) is kept encrypted, the record's id as
    associated data, and left out of ``repr``; `endpoint_hash` (SHA-256 of the endpoint)
    finds a browser subscribing again, `endpoint_host` tells devices apart in a list.
    """

    __tablename__ = "push_subscriptions"

    id: str = _id_field()
    owner_id: str = Field(index=True, max_length=64)
    endpoint_hash: str = Field(unique=True, max_length=64)
    endpoint_host: str = Field(default="", max_length=255)
    keys_encrypted: str = Field(repr=False)
    events: list[str] = Field(default_factory=list, sa_type=JSON)
    label: str = Field(default="", max_length=200)
    created_at: datetime = _created_field()


MODELS: tuple[type[SQLModel], ...] = (
    User,
    RefreshToken,
    Agent,
    AIConfig,
    SessionRecord,
    TaskRecord,
    SessionEventRecord,
    Webhook,
    AuditEntry,
    PushSubscription,
    AlertRecord,
)
