"""A turn's log context: its message's trace id and the ids its actor stands for.

While a message's turn runs (and later its after-commit effects), the trace id it
carries is bound (`orchestra/trace.py`), so the turn's log lines carry it, and so do the
messages it sends (`Message.trace_id` defaults to the bound one) and its agent commands
(`Turn.command`). A message without one (sent by a Lua script, or by an older node) is
traced by its own id, which its SYS_001 error then names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actors.addresses import split_task_id
from actors.messages import Message
from orchestra import trace

__all__ = ["message_trace_id", "turn_context"]


def message_trace_id(message: Message) -> str:
    return message.trace_id or message.id


@contextlib.contextmanager
def turn_context(message: Message) -> Iterator[None]:
    kind, _, ident = message.to.partition(":")
    ids: dict[str, str] = {}
    if kind == "task":
        ids["sessionId"], ids["taskId"] = split_task_id(ident)
    elif kind == "session":
        ids["sessionId"] = ident
    elif kind == "agent":
        ids["agentId"] = ident
    token = trace.bind(traceId=message_trace_id(message), event=message.type, **ids)
    try:
        yield
    finally:
        trace.reset(token)
