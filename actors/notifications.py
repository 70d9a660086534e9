"""Notifications for users' webhooks: what an actor records, inside its turn, for delivery.

A handler calls `notify(turn, kind, user_id, event_key, data)`; the turn's commit appends
one entry to the Redis stream `keys.webhook_events()` in the same transaction as the rest
of the turn, so the notification exists exactly when the turn's effect does. Every gateway
node's `gateway.webhooks.WebhookDispatcher` reads the stream in one consumer group and
posts each entry to the owner's webhooks subscribed to `kind`.

`event_key` names the event stably ("<taskId>:task.completed"): a turn handled again after
a node's death writes an entry with the same key, and a delivery's id derives from it, so
a receiver can tell a repeat.
"""

from __future__ import annotations

import json
from typing import Any

from actors.turn import Turn
from orchestra import keys
from orchestra.codec import now_iso
from orchestra.settings import Settings

__all__ = ["EVENTS", "notification_fields", "notify"]

# The events a webhook may subscribe to.
# `input.requested`: a worker ended a turn and waits for the user's next message (appended
# by the output script, actors/lua/append_output.lua, as the turn's `result` is stored).
EVENTS: tuple[str, ...] = (
    "permission.requested",
    "input.requested",
    "task.completed",
    "task.failed",
)

DEFAULT_MAX_LEN: int = Settings.model_fields["webhook_stream_max_len"].default


def notification_fields(
    kind: str, user_id: str, event_key: str, data: dict[str, Any]
) -> dict[str, str]:
    """The stream entry's fields: kind, userId, key, data (JSON) and at (ISO-8601, UTC)."""
    if kind not in EVENTS:
        raise ValueError(f"unknown notification kind {kind!r}")
    if not user_id or not event_key:
        raise ValueError("a notification needs a user id and an event key")
    return {
        "kind": kind,
        "userId": user_id,
        "key": event_key,
        "data": json.dumps(data, separators=(",", ":"), default=str),
        "at": now_iso(),
    }


def notify(
    turn: Turn,
    kind: str,
    user_id: str,
    event_key: str,
    data: dict[str, Any],
    *,
    max_len: int = DEFAULT_MAX_LEN,
) -> None:
    """Queue a notification on the turn's commit. `data` should carry `sessionId` (the
    delivery links to the session) and nothing secret. `max_len`: pass
    `settings.webhook_stream_max_len`; the stream is trimmed to about that many entries."""
    fields = notification_fields(kind, user_id, event_key, data)
    stream = keys.webhook_events()

    def append(pipe: Any) -> None:
        pipe.xadd(stream, fields, maxlen=max_len, approximate=True)

    turn.write(append)
