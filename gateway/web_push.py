"""Web Push to users' devices (a `NotificationConsumer`, group `push`).

A device's browser subscribes through the console (`gateway/rest/push.py`) with the
gateway's VAPID public key; the subscription (its push service's endpoint and the keys to
encrypt for) is kept encrypted in SQL with the events its user chose. For an entry of the
notifications stream, each of the owner's subscriptions that wants its kind gets one push:

- the payload, JSON, encrypted for the subscription (RFC 8291, `aes128gcm`, by
  `pywebpush`): `{kind, title, body, url, tag, sessionId, taskId}`, where `url` opens the
  session in the console and `tag` is the event's key, so that a device shows one
  notification for one event however often it arrives;
- headers: `Authorization: vapid t=<JWT signed with the VAPID key>, k=<public key>`
  (RFC 8292, `py_vapid`), `TTL` (`push_ttl_s`), `Urgency` (`high` for what waits on the
  user), and `Topic` (from the event's key: a push service keeps one message of a topic
  for a device that is off, so a repeat replaces rather than doubles).

A 2xx answer is done; 404 or 410 (the subscription is gone: the browser unsubscribed, or
the push service expired it) deletes the subscription; 400, 403 and 413 are given up;
anything else is tried again, and a dead node's entries are taken over, as for webhooks
(`gateway.notify_consumer`). A prompt already answered, or a turn's end whose task has
ended meanwhile (its "done" or "failed" says more), is not pushed. Endpoints and keys never
reach the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException
from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors.values import text
from gateway.notify_consumer import GiveUp, Notification, NotificationConsumer
from orchestra import keys
from orchestra.crypto import CryptoError, decrypt_field
from orchestra.db import PushSubscription, Store
from orchestra.settings import Settings

__all__ = ["GROUP", "PushDispatcher", "Vapid", "message", "topic"]

log = logging.getLogger(__name__)

GROUP = "push"
MAX_TEXT = 180  # characters of a notification's body
VAPID_VALID_S = 12 * 3600
_URGENT = ("permission.requested", "input.requested")
_TERMINAL = ("completed", "error", "failed", "cancelled", "lost")


class Vapid:
    """The gateway's VAPID key pair (`Settings.vapid_private_key`)."""

    def __init__(self, private_key: str, subject: str) -> None:
        self._vapid = Vapid02.from_raw(private_key.encode())
        self._subject = subject
        raw = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        """The application server key browsers subscribe with (base64url, no padding)."""

    def authorization(self, endpoint: str, now_s: float) -> str:
        """The `Authorization` header for a push to `endpoint`."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self._subject,
            "exp": int(now_s) + VAPID_VALID_S,
        }
        header: str = self._vapid.sign(claims)["Authorization"]
        return header


def topic(event_key: str) -> str:
    """The `Topic` header of an event's pushes: 32 characters of the URL-safe alphabet."""
    digest = hashlib.sha256(event_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:32]


def _cut(value: Any) -> str:
    lines = (" ".join(line.split()) for line in str(value or "").splitlines())
    words = "\n".join(line for line in lines if line)
    return words if len(words) <= MAX_TEXT else words[: MAX_TEXT - 1] + "…"


def message(note: Notification, link: str) -> dict[str, Any]:
    """What a device shows for a notification (the push's payload, before encryption)."""
    data = note.data
    tool = data.get("tool") or "the worker"
    if note.kind == "permission.requested":
        title = f"Needs permission: {tool}"
        what = data.get("input") or {}
        if isinstance(what, dict):
            what = what.get("command") or what.get("file_path") or json.dumps(what)
        body = "\n".join(str(part) for part in (data.get("title"), what) if part)
    elif note.kind == "input.requested":
        title, body = "Waiting for your input", f"{tool} finished its turn"
    elif note.kind == "task.completed":
        title, body = "Done", f"{tool} finished"
    else:
        title, body = "Failed", data.get("error") or f"{tool} stopped with an error"
    return {
        "kind": note.kind,
        "title": title,
        "body": _cut(body),
        "url": link,
        "tag": note.key,
        "sessionId": data.get("sessionId"),
        "taskId": data.get("taskId"),
    }


@dataclass(frozen=True)
class _Device:
    record: PushSubscription
    info: dict[str, Any]  # endpoint and keys, as the browser gave them


class PushDispatcher(NotificationConsumer[PushSubscription]):
    """One node's consumer of the notifications stream for Web Push."""

    group = GROUP

    def __init__(self, redis: Redis, store: Store, settings: Settings) -> None:
        super().__init__(redis, store, settings)
        self.vapid = Vapid(settings.vapid_private_key(), settings.push_subject)

    async def targets(self, note: Notification) -> list[PushSubscription]:
        return await self._store.list_push_subscriptions(note.user_id, note.kind)

    def target_id(self, target: PushSubscription) -> str:
        return target.id

    async def still_wanted(self, note: Notification) -> bool:
        session_id, task_id = note.data.get("sessionId"), note.data.get("taskId")
        if note.kind not in _URGENT or not session_id or not task_id:
            return True
        try:
            status, permissions = await self._redis.hmget(
                keys.task(str(session_id), str(task_id), self._settings.partitions),
                ["status", "permissions"],
            )
        except RedisError:
            return True  # better a push too many than one missing
        if note.kind == "input.requested":
            return status is None or json.loads(text(status)) not in _TERMINAL
        asked = json.loads(text(permissions)) if permissions else {}
        view = asked.get(note.data.get("permissionId")) if isinstance(asked, dict) else None
        return view is None or view.get("status") == "pending"

    async def attempt(self, note: Notification, target: PushSubscription) -> str | None:
        try:
            info = json.loads(
                decrypt_field(self._settings.secrets_key, target.id, target.keys_encrypted)
            )
            pusher = WebPusher(info)
            encrypted = pusher.encode(json.dumps(message(note, self.link(note.data))).encode())
        except (CryptoError, ValueError, WebPushException):
            raise GiveUp("its keys do not decrypt under this secrets key, or are bad") from None
        endpoint = str(info["endpoint"])
        headers = {
            "Authorization": self.vapid.authorization(endpoint, time.time()),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._settings.push_ttl_s),
            "Urgency": "high" if note.kind in _URGENT else "normal",
            "Topic": topic(note.key),
        }
        status = await self.post(endpoint, encrypted["body"], headers)
        if isinstance(status, str):
            return status
        if 200 <= status < 300:
            return None
        if status in (404, 410):
            await self._store.delete_push_subscription(target.id)
            raise GiveUp(f"HTTP {status}: the subscription is gone; removed")
        if status == 403:
            raise GiveUp("HTTP 403: the push service refused the VAPID signature")
        if status in (400, 413):
            raise GiveUp(f"HTTP {status}")
        return f"HTTP {status}"
