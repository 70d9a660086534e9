"""`/api/audit`: the audit log, for administrators only.

`GET /api/audit?limit=&before=&action=&actorId=&targetId=` →
`{entries: [{id, at, action, actorId, targetType, targetId, ip, details}]}`, newest first.

- `limit`: 1 to 1000, 100 when absent.
- `before`: an entry `id` (an integer: entries are numbered in the order written), giving the
  entries written before that one, so the last `id` of a page asks for the next page; or an
  ISO-8601 time (`2025-01-31T12:00:00Z`; without a zone, UTC), giving the entries made
  strictly before it.
- `action`, `actorId`, `targetId`: only the entries with exactly that value.

Anything malformed is PARAM_001 (400); a caller who is not an administrator gets AUTH_002.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.openapi import documented, integer, text
from gateway.rest.common import admin, bad_param, node_of, query_limit
from orchestra.codec import format_timestamp
from orchestra.db.models import AuditEntry
from orchestra.protocol.rest import AuditAnswer

bp = Blueprint("audit", url_prefix="/api/audit")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_FILTER = 256


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_timestamp(entry.at),
        "action": entry.action,
        "actorId": entry.actor_id,
        "targetType": entry.target_type,
        "targetId": entry.target_id,
        "ip": entry.ip,
        "details": entry.details or {},
    }


def _before(raw: str | None) -> int | datetime | None:
    if raw is None:
        return None
    if raw.isdigit() and len(raw) <= 19:
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_param("before", "must be an entry id or an ISO-8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _filter(request: Request, name: str) -> str | None:
    value: str | None = request.args.get(name)
    if value is not None and not 0 < len(value) <= _MAX_FILTER:
        raise bad_param(name, f"must be 1 to {_MAX_FILTER} characters")
    return value


@bp.get("/")
@documented(
    answer=AuditAnswer,
    query={
        "limit": integer(f"at most this many entries ({DEFAULT_LIMIT} when absent)", 1, MAX_LIMIT),
        "before": text("an entry id, or an ISO-8601 time: the entries written before it"),
        "action": text("only entries of this action", minLength=1, maxLength=_MAX_FILTER),
        "actorId": text("only entries by this user", minLength=1, maxLength=_MAX_FILTER),
        "targetId": text("only entries about this id", minLength=1, maxLength=_MAX_FILTER),
    },
    errors=["AUTH_002"],
)
async def list_audit(request: Request) -> HTTPResponse:
    admin(request)
    entries = await node_of(request).store.list_audit(
        limit=query_limit(request.args.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT),
        before=_before(request.args.get("before")),
        action=_filter(request, "action"),
        actor_id=_filter(request, "actorId"),
        target_id=_filter(request, "targetId"),
    )
    return json({"entries": [audit_view(e) for e in entries]})
