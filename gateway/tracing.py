"""Trace ids for every request the gateway takes: REST calls and socket events.

- REST (`add_tracing`): a caller's `X-Trace-Id` (when it is a plain id of 8 to 64
  letters, digits and `_.:-`) or the trace-id of a valid W3C `traceparent`, else a new
  one; bound for the handler (`orchestra/trace.py`) with the caller's `userId` once
  known, and sent back in the `X-Trace-Id` header of every answer.
- Socket events (`bind_socket_event`, called by `BaseNamespace.trigger_event`): the
  payload's optional envelope field `traceId` (same rule), else a new one; bound with
  the event's name, the socket's user or agent, and the payload's `sessionId` and
  `taskId` when they are plain ids (those of a compressed payload once it is decoded).

Actor messages sent while a request is handled carry its trace id on (`actors/messages.py`),
and so do the commands their turns send to agents (`Turn.command`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from orchestra import trace

__all__ = ["HEADER", "add_tracing", "bind_decoded", "bind_socket_event"]

HEADER = "X-Trace-Id"


def request_trace_id(request: Request) -> str:
    """The caller's trace id, when it gave a valid one, else a new one."""
    given = request.headers.get(HEADER)
    if trace.valid_trace_id(given):
        return str(given)
    return trace.from_traceparent(request.headers.get("traceparent")) or trace.new_trace_id()


def add_tracing(app: Sanic) -> None:
    """Bind a trace id for each request, and name it in the answer's `X-Trace-Id`."""

    async def bind_trace(request: Request) -> None:
        request.ctx.trace_id = request_trace_id(request)
        event = f"{request.method} {request.path[:200]}"
        trace.start(traceId=request.ctx.trace_id, event=event)

    async def bind_user(request: Request) -> None:
        principal = getattr(request.ctx, "principal", None)
        if principal is not None:
            trace.bind(userId=str(principal.user_id))

    async def send_trace_id(request: Request, response: BaseHTTPResponse) -> None:
        trace_id = getattr(request.ctx, "trace_id", None)
        if trace_id is not None:
            response.headers[HEADER] = trace_id

    # Before every other middleware, and after the one that finds who is calling.
    app.on_request(bind_trace, priority=1000)
    app.on_request(bind_user, priority=-1000)
    app.on_response(send_trace_id, priority=1000)


def bind_socket_event(
    event: str, raw: Any, identity: Mapping[str, str]
) -> Token[Mapping[str, str]]:
    """Bind the context of one socket event (`raw`: its payload as received); `trace.reset`
    the token once it is handled. `identity`: the socket's `userId` or `agentId`."""
    given = raw if isinstance(raw, dict) else {}
    return trace.start(
        traceId=trace.adopt(given.get("traceId")),
        event=event,
        sessionId=trace.plain_id(given.get("sessionId")),
        taskId=trace.plain_id(given.get("taskId")),
        **identity,
    )


def bind_decoded(raw: Any, payload: dict[str, Any]) -> None:
    """What a compressed payload held (`bind_socket_event` saw only its wrapper)."""
    if payload is raw or not isinstance(raw, dict) or raw.get("compressed") is not True:
        return
    fields = {
        "traceId": trace.plain_id(payload.get("traceId")),
        "sessionId": trace.plain_id(payload.get("sessionId")),
        "taskId": trace.plain_id(payload.get("taskId")),
    }
    trace.bind(**fields)
