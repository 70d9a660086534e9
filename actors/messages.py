"""What travels through mailboxes: a message, and the reply an `ask` waits for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from orchestra.codec import new_id
from orchestra.trace import current_trace_id

# One encoder for all: json.dumps with options builds a new encoder at every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def encode_field(value: Any) -> str:
    """A value as compact JSON (state fields, message bodies, event data, replies)."""
    return _ENCODER.encode(value)


@dataclass(frozen=True, slots=True)
class Message:
    """One actor message. `id` makes handling idempotent; `reply_to`, set by `ask`, names
    the reply inbox of the node that waits for the answer (`actors/replies.py`).
    `trace_id`, the trace id of the request that caused it (by default the one bound
    where it is made: a handler's, or the turn's that sends it), is bound again while
    the message's turn runs (`orchestra/trace.py`)."""

    to: str
    type: str
    body: dict[str, Any] = field(default_factory=dict)
    sender: str = ""
    id: str = field(default_factory=new_id)
    reply_to: str | None = None
    trace_id: str = field(default_factory=current_trace_id)

    def fields(self) -> dict[str, str]:
        out = {
            "to": self.to,
            "type": self.type,
            "body": encode_field(self.body),
            "sender": self.sender,
            "id": self.id,
        }
        if self.reply_to:
            out["reply_to"] = self.reply_to
        if self.trace_id:
            out["trace"] = self.trace_id
        return out

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> Message:
        return cls(
            to=raw["to"],
            type=raw["type"],
            body=json.loads(raw.get("body") or "{}"),
            sender=raw.get("sender", ""),
            id=raw.get("id", ""),
            reply_to=raw.get("reply_to") or None,
            trace_id=raw.get("trace", ""),
        )
