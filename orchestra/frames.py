"""Reading what a `/web` socket receives (PROTOCOL.md §1, §4): payloads compressed where
the client listed compression in its handshake, and `session:events` frames of a socket
that joined with `batch: true`, `{sessionId, events: [{event, data}]}`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from orchestra.codec import decompress
from orchestra.errors import OrchestraError

__all__ = ["FRAME_EVENT", "MAX_DECODED_BYTES", "decoded", "unpack_frame"]

log = logging.getLogger(__name__)

FRAME_EVENT = "session:events"
#: What a compressed payload may inflate to on our side: a frame is about 512 KiB of JSON,
#: give or take one event (at most the gateway's payload limit).
MAX_DECODED_BYTES = 64 * 1024 * 1024
_ENVELOPE = ("id", "timestamp", "source", "version")


def decoded(name: str, data: Any, max_bytes: int = MAX_DECODED_BYTES) -> dict[str, Any] | None:
    """A received payload as it was sent, compressed or not; None (logged) when it does
    not decode or is no JSON object."""
    try:
        payload = decompress(data, max_bytes)
    except OrchestraError as exc:
        log.warning("dropped a %s payload that does not decode: %s", name, exc)
        return None
    return payload if isinstance(payload, dict) else None


def unpack_frame(frame: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The events of a (decoded) `session:events` frame, in order, each as it would have
    come alone: its data with the frame's envelope under it (`source`, `version`, and
    `timestamp` where the event has none) and an `id` of its own, `<frame id>:<index>`."""
    events = frame.get("events")
    if not isinstance(events, list):
        return
    head = {k: frame[k] for k in _ENVELOPE if k in frame}
    frame_id = head.get("id")
    for index, item in enumerate(events):
        if not isinstance(item, dict):
            continue
        name, data = item.get("event"), item.get("data")
        if isinstance(name, str) and isinstance(data, dict):
            yield name, {**head, "id": f"{frame_id}:{index}", **data}
