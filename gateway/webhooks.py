"""Delivery of notifications to users' webhooks (a `NotificationConsumer`, group `webhooks`).

For an entry of the notifications stream, the owner's active webhooks subscribed to its
kind each get a POST of a signed JSON body:

    {"id": <delivery id>, "event": kind, "timestamp": ISO-8601, "url": <console link>,
     "data": {...}}

with `X-Orchestra-Event`, `X-Orchestra-Delivery` (the id: the same for every attempt and
every node, derived from the event's key and the webhook's id), `X-Orchestra-Timestamp`
(the body's: when this attempt was signed) and `X-Orchestra-Signature:
sha256=<hex HMAC-SHA256 of the raw body under the webhook's secret>`.

A 2xx answer marks the webhook done for the entry; anything else, a connection error or no
answer within `webhook_timeout_s` is tried again (`gateway.notify_consumer` says how often,
and how a dead node's entries are taken over). Secrets and URLs never reach the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from gateway.notify_consumer import GiveUp, Notification, NotificationConsumer
from orchestra.codec import now_iso
from orchestra.crypto import CryptoError, decrypt_field
from orchestra.db import Webhook

__all__ = ["GROUP", "Notification", "WebhookDispatcher", "delivery_id", "post_signed", "sign"]

GROUP = "webhooks"


def delivery_id(event_key: str, webhook_id: str) -> str:
    """The id of one event's delivery to one webhook: stable across attempts and nodes."""
    return hashlib.sha256(f"{event_key}\n{webhook_id}".encode()).hexdigest()[:32]


def sign(secret: str, body: bytes) -> str:
    """The `X-Orchestra-Signature` value of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_signed(
    consumer: NotificationConsumer[Any],
    url: str,
    secret: str,
    note: Notification,
    target_id: str,
    payload: Callable[[str, str], dict[str, Any]],
    user_agent: str,
) -> str | None:
    """POST `payload(delivery id, timestamp)` as JSON to `url`, signed with `secret`, with
    the headers above: None when the receiver took it (2xx), else why not."""
    delivery = delivery_id(note.key, target_id)
    timestamp = now_iso()
    body = json.dumps(payload(delivery, timestamp), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-Orchestra-Event": note.kind,
        "X-Orchestra-Delivery": delivery,
        "X-Orchestra-Timestamp": timestamp,
        "X-Orchestra-Signature": sign(secret, body),
    }
    status = await consumer.post(url, body, headers)
    if isinstance(status, str):
        return status
    return None if 200 <= status < 300 else f"HTTP {status}"


class WebhookDispatcher(NotificationConsumer[Webhook]):
    """One node's consumer of the notifications stream for webhooks."""

    group = GROUP

    async def targets(self, note: Notification) -> list[Webhook]:
        return await self._store.webhooks_for(note.user_id, note.kind)

    def target_id(self, target: Webhook) -> str:
        return target.id

    async def attempt(self, note: Notification, target: Webhook) -> str | None:
        """One POST; None when the receiver took it, else why not."""
        try:
            secret = decrypt_field(self._settings.secrets_key, target.id, target.secret_encrypted)
        except CryptoError:
            raise GiveUp("its secret does not decrypt under this secrets key") from None
        return await post_signed(
            self,
            target.url,
            secret,
            note,
            target.id,
            lambda delivery, timestamp: {
                "id": delivery,
                "event": note.kind,
                "timestamp": timestamp,
                "url": self.link(note.data),
                "data": note.data,
            },
            "Orchestra-Webhooks/1",
        )
