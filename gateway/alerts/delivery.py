"""Delivery of alert events, once each whichever node sees it (a `NotificationConsumer`,
group `alerts`, on the alert stream `keys.alert_events()`).

Each event (`alert.firing` or `alert.resolved`, appended by the evaluator) has these
targets, each done once, retried with backoff, and taken over from a node that died, as
users' webhooks are (`gateway.notify_consumer`):

- the SQL history (`orchestra.db.alerts`, listed at `GET /api/alerts`);
- each URL of `alert_webhooks`: a POST of the signed JSON body

      {"id": <delivery id>, "type": "alert.firing" | "alert.resolved",
       "alert": {id, key, rule, subject, severity, status, message, since, resolvedAt,
                 details},
       "timestamp": ISO-8601}

  with the headers of users' webhooks (`gateway.webhooks`): `X-Orchestra-Event` (the
  type), `X-Orchestra-Delivery` (the id: the same for every attempt and node, so that a
  receiver drops a repeat), `X-Orchestra-Timestamp` and `X-Orchestra-Signature:
  sha256=<hex HMAC-SHA256 of the raw body under alert_webhook_secret>`. A 2xx answer is
  done; anything else is tried again.

A firing and its resolution are separate events: a receiver may get the resolution
first when the firing's delivery was being retried (`alert.since`, `alert.resolvedAt`
and the alert's `id` put them in order). URLs and the secret never reach the log.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gateway.alerts.evaluate import FIRING, RESOLVED
from gateway.notify_consumer import Notification, NotificationConsumer
from gateway.webhooks import post_signed
from orchestra import keys
from orchestra.codec import parse_timestamp
from orchestra.db import AlertRecord, StoreError

__all__ = ["GROUP", "AlertDispatcher", "AlertTarget"]

GROUP = "alerts"
_SQL = "sql"


@dataclass(frozen=True)
class AlertTarget:
    id: str  # "sql", or "webhook-<hash of the URL>"
    url: str | None = None


class AlertDispatcher(NotificationConsumer[AlertTarget]):
    """One node's consumer of the alert stream."""

    group = GROUP

    def stream(self) -> str:
        return keys.alert_events()

    def parse(self, entry_id: str, fields: dict[str, str]) -> Notification:
        kind, key = fields.get("kind"), fields.get("key")
        if kind not in (FIRING, RESOLVED) or not key:
            raise ValueError("not an alert event")
        data = json.loads(fields.get("data") or "{}")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValueError("not an alert")
        for moment in (data.get("since"), fields.get("at")):
            parse_timestamp(str(moment))  # ValueError unless a time
        return Notification(entry_id, kind, "", key, data, fields.get("at", ""))

    async def targets(self, note: Notification) -> list[AlertTarget]:
        hooks = [
            AlertTarget("webhook-" + hashlib.sha256(url.encode()).hexdigest()[:16], url)
            for url in dict.fromkeys(self._settings.alert_webhooks)
        ]
        return [AlertTarget(_SQL), *hooks]

    def target_id(self, target: AlertTarget) -> str:
        return target.id

    async def attempt(self, note: Notification, target: AlertTarget) -> str | None:
        if target.url is None:
            return await self._record(note)
        return await post_signed(
            self,
            target.url,
            self._settings.alert_webhook_secret,
            note,
            target.id,
            lambda delivery, timestamp: {
                "id": delivery,
                "type": note.kind,
                "alert": note.data,
                "timestamp": timestamp,
            },
            "Orchestra-Alerts/1",
        )

    async def _record(self, note: Notification) -> str | None:
        alert = note.data
        try:
            await self._store.record_alert(
                AlertRecord(
                    alert_id=alert["id"],
                    rule=str(alert.get("rule")),
                    subject=str(alert.get("subject"))[:256],
                    severity=str(alert.get("severity")),
                    status="firing" if note.kind == FIRING else "resolved",
                    message=str(alert.get("message")),
                    since=parse_timestamp(str(alert.get("since"))),
                    at=parse_timestamp(note.at),
                    details=alert.get("details") or {},
                )
            )
        except StoreError as exc:
            return f"the SQL store failed: {exc}"[:300]
        return None
