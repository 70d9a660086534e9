"""`/api/usage`: tokens and cost of the caller's tasks, per session, agent or day.

`GET /api/usage?by=session|agent|day&from=&to=&all=1&limit=` →
`{by, from, to, groups: [{key, name, tasks, inputTokens, outputTokens, cacheReadTokens,
cacheWriteTokens, costUsd, firstAt, lastAt}], totals: {tasks, inputTokens, ...}, truncated}`

- `by`: `day` when absent; a day is the UTC date a task was created on (`key`
  `YYYY-MM-DD`); `session` groups by session (`key` its id, `name` its title), `agent` by
  agent (`key` its id, `name` its name).
- `from`, `to`: the tasks created from `from` (inclusive) to `to` (exclusive), each an
  ISO-8601 time (without a zone: UTC) or a date, which means that whole UTC day (`to` a
  date includes it).
- `all=1`: everyone's tasks; administrators only (AUTH_002 for anyone else). Without it
  everyone, administrators too, sees their own tasks' usage.
- `limit`: at most this many groups (1 to 10,000; 1,000 when absent), newest first
  (agents: the costliest first); `truncated` says more matched. `totals` are of all.

Only tasks that reported usage count (an AI tool's turns: `TaskView.usage`). A task's
SQL record follows its status; a long conversation's turns add usage without changing it,
so the live usage of the tasks that have not ended is written to their records first
(`refresh_live_usage`, which never overwrites an ended task's). Anything malformed is
PARAM_001 (400).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors.values import read_fields
from gateway.node import Node
from gateway.openapi import documented, integer, text
from gateway.rest.common import bad_param, caller, node_of, query_limit
from orchestra import keys
from orchestra.codec import format_timestamp
from orchestra.db.usage import (
    USAGE_FIELDS,
    Grouping,
    UsageGroup,
)
from orchestra.errors import Forbidden
from orchestra.protocol.rest import UsageAnswer

bp = Blueprint("usage", url_prefix="/api/usage")

GROUPINGS = ("session", "agent", "day")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
_TOKEN_FIELDS = tuple(f for f in USAGE_FIELDS if f != "costUsd")


def _moment(request: Request, field: str, *, end: bool) -> datetime | None:
    """A time, or a date: its start (`from`), or the start of the next day (`to`)."""
    raw: str | None = request.args.get(field)
    if raw is None or raw == "":
        return None
    if len(raw) > 64:
        raise bad_param(field, "must be an ISO-8601 date or time")
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise bad_param(field, "must be an ISO-8601 date or time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _flag(raw: str | None, field: str) -> bool:
    if raw is None or raw in ("0", "false", ""):
        return False
    if raw in ("1", "true"):
        return True
    raise bad_param(field, "must be 1 or 0")


def _numbers(group: UsageGroup) -> dict[str, Any]:
    numbers: dict[str, Any] = {f: round(group.sums[f]) for f in _TOKEN_FIELDS}
    numbers["costUsd"] = round(group.sums["costUsd"], 6)
    return {"tasks": group.tasks, **numbers}


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def group_view(group: UsageGroup) -> dict[str, Any]:
    return {
        "key": group.key,
        "name": group.name,
        **_numbers(group),
        "firstAt": _when(group.first_at),
        "lastAt": _when(group.last_at),
    }


async def _refresh_live(node: Node, owner_id: str | None) -> None:
    """Bring the records of the tasks still running up to their live usage (Redis)."""
    tasks = await node.store.live_tasks(owner_id)
    if not tasks:
        return
    partitions = node.settings.partitions
    states = await read_fields(
        node.redis,
        [keys.task(session_id, task_id, partitions) for task_id, session_id, _ in tasks],
        ["usage"],
    )
    for (task_id, _, recorded), state in zip(tasks, states, strict=True):
        live = state.get("usage")
        if isinstance(live, dict) and live and live != recorded:
            await node.store.refresh_live_usage(task_id, live)


@bp.get("/")
@documented(
    answer=UsageAnswer,
    query={
        "by": text("how to group the tasks (day when absent)", enum=list(GROUPINGS)),
        "from": text("from this ISO-8601 time or date (inclusive)"),
        "to": text("to this ISO-8601 time (exclusive) or date (inclusive)"),
        "all": text("1: everyone's tasks (administrators only)", enum=["1", "0", "true", "false"]),
        "limit": integer(f"at most this many groups ({DEFAULT_LIMIT} when absent)", 1, MAX_LIMIT),
    },
    errors=["AUTH_002"],
)
async def get_usage(request: Request) -> HTTPResponse:
    who = caller(request)
    by = request.args.get("by") or "day"
    if by not in GROUPINGS:
        raise bad_param("by", "must be session, agent or day")
    everyone = _flag(request.args.get("all"), "all")
    if everyone and not who.is_admin:
        raise Forbidden("only administrators see everyone's usage")
    since = _moment(request, "from", end=False)
    until = _moment(request, "to", end=True)
    if since is not None and until is not None and until < since:
        raise bad_param("to", "is before from")
    limit = query_limit(request.args.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    owner_id = None if everyone else who.user_id
    node = node_of(request)
    await _refresh_live(node, owner_id)
    summary = await node.store.usage_summary(
        cast(Grouping, by),
        owner_id=owner_id,
        since=since,
        until=until,
        limit=limit,
    )
    return json(
        {
            "by": by,
            "from": _when(since),
            "to": _when(until),
            "all": everyone,
            "groups": [group_view(g) for g in summary.groups],
            "totals": {
                **_numbers(summary.totals),
                "firstAt": _when(summary.totals.first_at),
                "lastAt": _when(summary.totals.last_at),
            },
            "truncated": summary.truncated,
        }
    )
