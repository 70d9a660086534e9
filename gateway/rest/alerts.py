"""`/api/alerts`: the alerts fired and resolved (`gateway.alerts`), for administrators only.

`GET /api/alerts?status=&rule=&subject=&limit=&before=` →
`{alerts: [{id, alertId, key, rule, subject, severity, status, message, since, at,
resolvedAt, details}], firing: [{key, rule, subject, severity, message, since}]}`.

- `alerts`: the SQL history, one entry per event, newest first: a firing (`status`
  `firing`; its `resolvedAt` set once it has been resolved) and its resolution (`status`
  `resolved`) share `alertId`.
- `firing`: the alerts firing now (the leader's view, from Redis), oldest first.
- `status`: `firing` or `resolved`; `rule`: one of the rules; `subject`: exactly that
  subject (an agent id, a tool, a task id...).
- `limit`: 1 to 1000, 100 when absent; `before`: an entry `id`, giving the entries written
  before that one (the last `id` of a page asks for the next page).

Anything malformed is PARAM_001 (400); a caller who is not an administrator gets AUTH_002.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors.values import strings
from gateway.alerts import RULES
from gateway.openapi import documented, integer, text
from gateway.rest.common import admin, bad_param, node_of, query_limit
from orchestra import keys
from orchestra.codec import format_timestamp
from orchestra.db import AlertRecord
from orchestra.protocol.base import View

bp = Blueprint("alerts", url_prefix="/api/alerts")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_SUBJECT = 256
_FIRING_FIELDS = ("rule", "subject", "severity", "message", "since")


class AlertView(View):
    """One alert event kept in SQL."""

    id: int
    alert_id: str
    key: str
    rule: str
    subject: str
    severity: str
    status: str
    message: str
    since: str
    at: str
    resolved_at: str | None = None
    details: dict[str, Any] = {}


class FiringAlertView(View):
    """An alert firing now."""

    key: str
    rule: str
    subject: str
    severity: str
    message: str
    since: str


class AlertsAnswer(View):
    alerts: list[AlertView]
    """Newest first."""
    firing: list[FiringAlertView]
    """Oldest first."""


def alert_view(record: AlertRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "alertId": record.alert_id,
        "key": f"{record.rule}:{record.subject}",
        "rule": record.rule,
        "subject": record.subject,
        "severity": record.severity,
        "status": record.status,
        "message": record.message,
        "since": format_timestamp(record.since),
        "at": format_timestamp(record.at),
        "resolvedAt": format_timestamp(record.resolved_at) if record.resolved_at else None,
        "details": record.details or {},
    }


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value: str | None = request.args.get(name)
    if value is not None and value not in allowed:
        raise bad_param(name, f"must be one of {', '.join(allowed)}")
    return value


def _before(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise bad_param("before", "must be an entry id")
    return int(raw)


def _subject(raw: str | None) -> str | None:
    if raw is not None and not 0 < len(raw) <= _MAX_SUBJECT:
        raise bad_param("subject", f"must be 1 to {_MAX_SUBJECT} characters")
    return raw


def _firing(raw: dict[str, str]) -> list[dict[str, Any]]:
    found = []
    for key, value in raw.items():
        try:
            alert = jsonlib.loads(value)
        except ValueError:
            continue
        if isinstance(alert, dict) and all(isinstance(alert.get(f), str) for f in _FIRING_FIELDS):
            found.append({"key": key} | {f: alert[f] for f in _FIRING_FIELDS})
    return sorted(found, key=lambda a: (str(a["since"]), a["key"]))


@bp.get("/")
@documented(
    answer=AlertsAnswer,
    query={
        "status": text("only firings or only resolutions", enum=["firing", "resolved"]),
        "rule": text("only alerts of this rule", enum=list(RULES)),
        "subject": text("only alerts of this subject", minLength=1, maxLength=_MAX_SUBJECT),
        "limit": integer(f"at most this many entries ({DEFAULT_LIMIT} when absent)", 1, MAX_LIMIT),
        "before": text("an entry id: the entries written before it", pattern="^[0-9]{1,18}$"),
    },
    errors=["AUTH_002"],
)
async def list_alerts(request: Request) -> HTTPResponse:
    admin(request)
    status = _choice(request, "status", ("firing", "resolved"))
    rule = _choice(request, "rule", RULES)
    limit = query_limit(request.args.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    before, subject = _before(request.args.get("before")), _subject(request.args.get("subject"))
    node = node_of(request)
    records = await node.store.list_alerts(
        limit=limit, before=before, status=status, rule=rule, subject=subject
    )
    firing = _firing(strings(await node.redis.hgetall(keys.alerts_firing())))
    return json({"alerts": [alert_view(r) for r in records], "firing": firing})
