"""Permission requests of a task's worker, each resolved exactly once (PROTOCOL.md §8).

A request lives in the task actor's state (`permissions`: permissionId -> PermissionView)
from the moment the agent reports it until exactly one of these resolves it:

- a user's answer (`answered`): the first one wins; it goes to the agent as a command in
  the same commit, so a node that dies between the answer and its delivery loses nothing;
- the tool giving up on it (`cancelled`), reported by the agent;
- its deadline (`timeout`, `PERMISSION_TIMEOUT_S`): answered `deny` to the tool;
- the end of its worker (`worker-ended`): the task ended, or a new attempt began.

Each resolution emits `worker:permission:resolved` to the session, so every watcher's prompt
closes, on every device. The task actor's turns are one at a time across the cluster, so
two answers racing from two gateway nodes are two turns: the second sees the request
resolved and gets `{resolved}` with what happened, and only one decision ever reaches the
tool. Everything here runs inside a task actor's turn.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from actors.turn import Turn
from orchestra.codec import format_timestamp
from orchestra.errors import NotFound

__all__ = ["answer", "ask", "cancel", "end_all", "pending", "time_out"]

PENDING = "pending"
# Resolved requests kept, newest last, to answer late or repeated answers with what
# happened; pending ones are always kept.
RESOLVED_KEPT = 200


def pending(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's requests still waiting for an answer, oldest first (PermissionViews)."""
    return [v for v in _views(state).values() if v.get("status") == PENDING]


def ask(turn: Turn, body: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    """The worker asks (`worker:permission` from the agent): the new request's view, or
    None for a repeat."""
    views = _views(turn.state)
    permission_id = body["permissionId"]
    if permission_id in views:
        return None  # the agent sent it again (a reconnect): known already
    now = datetime.now(UTC)
    view: dict[str, Any] = {
        "permissionId": permission_id,
        "sessionId": turn.state["sessionId"],
        "taskId": turn.state["id"],
        "tool": body["tool"],
        "input": body.get("input"),
        "status": PENDING,
        "askedAt": format_timestamp(now),
        "expiresAt": format_timestamp(now + timedelta(seconds=timeout_s)),
        "attempt": int(turn.state.get("attempts") or 1),
    }
    for optional in ("title", "suggestions"):
        if body.get(optional) is not None:
            view[optional] = body[optional]
    views[permission_id] = view
    _keep(turn, views)
    turn.schedule(timeout_s, "permission:timeout", {"permissionId": permission_id})
    event = {k: v for k, v in view.items() if k not in ("status", "askedAt", "attempt")}
    turn.emit(turn.state["sessionId"], "worker:permission", event)
    return view


def answer(turn: Turn, body: dict[str, Any], *, deliver: bool) -> dict[str, Any]:
    """A user's answer: `{resolved: PermissionView}`, whoever was first.

    `deliver` is False when the task has no live worker to take it (the request is then
    resolved `worker-ended` instead, which is what happened)."""
    view = _views(turn.state).get(body["permissionId"])
    if view is None:
        raise NotFound("unknown permission request")
    if view["status"] != PENDING:
        return {"resolved": _public(view)}
    if not deliver:
        return {"resolved": _public(_resolve(turn, view, "deny", "worker-ended"))}
    decision = body["decision"]
    scope = body.get("scope") or "once"
    resolved = _resolve(turn, view, decision, "answered", by=body.get("userId"), scope=scope)
    command: dict[str, Any] = {
        "taskId": turn.state["id"],
        "attempt": view["attempt"],
        "permissionId": view["permissionId"],
        "decision": decision,
        "scope": scope,
    }
    for optional in ("message", "updatedInput"):
        if body.get(optional) is not None:
            command[optional] = body[optional]
    turn.command(turn.state["agentId"], "worker:permission", command)
    return {"resolved": _public(resolved)}


def cancel(turn: Turn, permission_id: str, reason: str | None) -> None:
    """The tool gave up on the request (`worker:permission:cancelled` from the agent)."""
    view = _views(turn.state).get(permission_id)
    if view is not None and view["status"] == PENDING:
        _resolve(turn, view, "deny", "cancelled", message=reason)


def time_out(turn: Turn, permission_id: str, live: bool) -> None:
    """The deadline passed: deny, and tell the tool so (when its worker still runs)."""
    view = _views(turn.state).get(permission_id)
    if view is None or view["status"] != PENDING:
        return
    if not live:
        _resolve(turn, view, "deny", "worker-ended")
        return
    _resolve(turn, view, "deny", "timeout")
    turn.command(
        turn.state["agentId"],
        "worker:permission",
        {
            "taskId": turn.state["id"],
            "attempt": view["attempt"],
            "permissionId": permission_id,
            "decision": "deny",
            "scope": "once",
            "message": "no one answered the permission request in time",
        },
    )


def end_all(turn: Turn) -> None:
    """The worker is gone (the task ended, or a new attempt starts): nothing waits now."""
    for view in pending(turn.state):
        _resolve(turn, view, "deny", "worker-ended")


# -- internals ---------------------------------------------------------------------------

_STATUS = {"allow": "allowed", "deny": "denied"}


def _views(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of the state's requests (a turn changes state only through `turn.set`)."""
    raw = state.get("permissions")
    return {k: dict(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _resolve(
    turn: Turn,
    view: dict[str, Any],
    decision: str,
    reason: str,
    *,
    by: str | None = None,
    scope: str = "once",
    message: str | None = None,
) -> dict[str, Any]:
    if reason == "answered":
        status = _STATUS[decision]
    else:
        status = "timeout" if reason == "timeout" else "cancelled"
    view = view | {"status": status, "decision": decision, "scope": scope, "reason": reason}
    if by is not None:
        view["decidedBy"] = by
    views = _views(turn.state)
    views[view["permissionId"]] = view
    _keep(turn, views)
    event: dict[str, Any] = {
        "sessionId": view["sessionId"],
        "taskId": view["taskId"],
        "permissionId": view["permissionId"],
        "decision": decision,
        "scope": scope,
        "by": by,
        "reason": reason,
    }
    if message:
        event["message"] = message
    turn.emit(view["sessionId"], "worker:permission:resolved", event)
    return view


def _keep(turn: Turn, views: dict[str, dict[str, Any]]) -> None:
    resolved = [k for k, v in views.items() if v.get("status") != PENDING]
    for key in resolved[: max(0, len(resolved) - RESOLVED_KEPT)]:
        del views[key]
    turn.set(permissions=views)


def _public(view: dict[str, Any]) -> dict[str, Any]:
    """A PermissionView as clients see it (the attempt is ours)."""
    return {k: v for k, v in view.items() if k != "attempt"}


def public_views(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Pending PermissionViews for clients (`session:join`, `user:sync`)."""
    return [_public(v) for v in pending(state)]
