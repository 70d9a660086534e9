"""Writing the audit log from request handlers: one call, and it never fails the request.

An entry that cannot be written (the SQL store down, say) is logged as one warning line,
without a traceback, and the request goes on: the audit log records what happened, it does
not decide it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sanic import Request

if TYPE_CHECKING:
    from gateway.node import Node

__all__ = ["audit", "permission_decided", "request_ip"]

log = logging.getLogger(__name__)

# A detail whose name says it may hold a credential is never written, whoever passed it.
_SECRET_WORDS = ("password", "secret", "token", "apikey", "api_key")


def request_ip(request: Request) -> str | None:
    """The caller's address: the proxy-forwarded one where Sanic trusts it, else the peer's."""
    return request.remote_addr or request.ip or None


async def audit(
    node: Node,
    action: str,
    *,
    actor_id: str | None,
    target_type: str | None,
    target_id: str | None,
    ip: str | None = None,
    **details: Any,
) -> None:
    """Write one audit entry (``details`` as its JSON); a failure is logged, never raised."""
    kept = {k: v for k, v in details.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
    try:
        await node.store.add_audit(
            action,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            ip=ip,
            details=kept,
        )
    except Exception as exc:
        log.warning("audit entry %s not written: %s", action, type(exc).__name__)


async def audit_request(
    request: Request,
    action: str,
    *,
    actor_id: str | None,
    target_type: str | None,
    target_id: str | None,
    **details: Any,
) -> None:
    """`audit` for a REST route: the request's node and the caller's address."""
    await audit(
        request.app.ctx.node,
        action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        ip=request_ip(request),
        **details,
    )


async def permission_decided(
    node: Node,
    user_id: str,
    decision: dict[str, Any],
    answer: dict[str, Any],
    environ: dict[str, Any] | None = None,
) -> None:
    """`permission.decided` for a `worker:permission` answer (`decision` as sent, on the
    wire) once the task has taken it (`answer`: `{resolved: PermissionView}`).

    ``won`` says whether this answer is the one that resolved the request: the view says
    answered, by this user, with this decision. (A user's repeat of their own winning answer
    looks the same; one that lost to another answer, or came after a timeout, does not.)
    ``outcome`` is the request's status after it.
    """
    resolved = answer.get("resolved") if isinstance(answer, dict) else None
    view = resolved if isinstance(resolved, dict) else {}
    won = (
        view.get("reason") == "answered"
        and view.get("decidedBy") == user_id
        and view.get("decision") == decision.get("decision")
    )
    request = (environ or {}).get("sanic.request")
    await audit(
        node,
        "permission.decided",
        actor_id=user_id,
        target_type="task",
        target_id=decision.get("taskId"),
        ip=request_ip(request) if isinstance(request, Request) else None,
        taskId=decision.get("taskId"),
        permissionId=decision.get("permissionId"),
        decision=decision.get("decision"),
        scope=decision.get("scope") or "once",
        won=won,
        outcome=view.get("status"),
    )
