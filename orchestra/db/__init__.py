"""Orchestra's SQL layer: the tables (SQLModel) and the async `Store` that reads and writes them.

Users, agents and their secrets, AI configs, and the history of sessions, tasks and archived
session events live here; live state lives in Redis.
"""

from orchestra.db.models import (
    Agent,
    AIConfig,
    AlertRecord,
    PushSubscription,
    RefreshToken,
    SessionEventRecord,
    SessionRecord,
    TaskRecord,
    User,
    Webhook,
)
from orchestra.db.passwords import hash_password, verify_password
from orchestra.db.store import DuplicateError, Store, StoreError

__all__ = [
    "AIConfig",
    "Agent",
    "AlertRecord",
    "DuplicateError",
    "PushSubscription",
    "RefreshToken",
    "SessionEventRecord",
    "SessionRecord",
    "Store",
    "StoreError",
    "TaskRecord",
    "User",
    "Webhook",
    "hash_password",
    "verify_password",
]
