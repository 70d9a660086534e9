"""What a log line is about: the request's trace id and the ids it concerns, per context.

Every request gets a trace id (a socket event, a REST call, an actor turn, an agent's
command), bound in a context variable while it is handled, together with the ids it is
about (`userId`, `sessionId`, `taskId`, `agentId`) and the `event` being handled. The log
formatters (`orchestra/logs.py`) put them on every line; messages and commands caused by
the request carry the trace id on (actor messages, commands to the agent, its reports
back), so one grep of a trace id follows a request through every tier.

Binding is one `ContextVar.set` of a small dict: cheap enough for every socket event.
asyncio tasks copy the context when they are created, so work a handler starts carries
its trace id.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "FIELDS",
    "adopt",
    "bind",
    "bound",
    "current",
    "current_trace_id",
    "from_traceparent",
    "new_trace_id",
    "plain_id",
    "reset",
    "start",
    "valid_trace_id",
]

#: the context fields, as log lines name them
FIELDS = ("traceId", "userId", "sessionId", "taskId", "agentId", "event")

_EMPTY: Mapping[str, str] = {}
_context: ContextVar[Mapping[str, str]] = ContextVar("orchestra_trace", default=_EMPTY)

# A trace id someone else made (a caller's `X-Trace-Id`, a payload's `traceId`) is taken
# when it is this plain: it ends up in log lines and headers.
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{7,63}")
# W3C Trace Context: version-traceid-parentid-flags, lower-case hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class _Ids:
    """Trace ids: 32 lower-case hex digits (a W3C trace-id), a random prefix per process
    (drawn again in a forked child) and a counter: unique, not secret, no system call."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.reseed()

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reseed)


def new_trace_id() -> str:
    return _ids.next()


def valid_trace_id(value: Any) -> bool:
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def from_traceparent(header: Any) -> str | None:
    """The trace-id of a W3C `traceparent` header, None when it is not a valid one."""
    if not isinstance(header, str):
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None or match[1] == "ff" or set(match[2]) == {"0"} or set(match[3]) == {"0"}:
        return None
    return match[2]


def plain_id(value: Any) -> str | None:
    """`value` when it is an id fit for a log line (as a trace id must be), else None."""
    return value if valid_trace_id(value) else None


def adopt(given: Any) -> str:
    """`given` when it is a valid trace id, else a new one."""
    return given if valid_trace_id(given) else new_trace_id()


def current() -> Mapping[str, str]:
    """The fields bound now (do not change the mapping)."""
    return _context.get()


def current_trace_id() -> str:
    """The trace id bound now, or "" when there is none."""
    return _context.get().get("traceId", "")


def bind(**fields: Any) -> Token[Mapping[str, str]]:
    """Add `fields` (those that are non-empty strings) to the context; `reset` the token
    returned to take them back."""
    merged = dict(_context.get())
    for name, value in fields.items():
        if isinstance(value, str) and value:
            merged[name] = value
    return _context.set(merged)


def start(**fields: Any) -> Token[Mapping[str, str]]:
    """Bind `fields` alone, dropping what was bound (a new request on a connection
    whose earlier requests ran in the same task)."""
    return _context.set({k: v for k, v in fields.items() if isinstance(v, str) and v})


def reset(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[Mapping[str, str]]:
    """`bind` for the duration of a `with` block."""
    token = bind(**fields)
    try:
        yield _context.get()
    finally:
        _context.reset(token)
