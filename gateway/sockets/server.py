"""The python-socketio server, with one addition: handlers can tell whether an ack was asked.

A bad request without an ack must be answered with an `error` event (PROTOCOL.md §2), so
the namespace needs to know whether the client is waiting for an ack. python-socketio does
not pass that on; this subclass records it in a context variable for the handler's task.
"""

from __future__ import annotations

import contextvars
from typing import Any

import socketio

ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=True)


class Server(socketio.AsyncServer):
    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        token = ack_requested.set(id is not None)
        try:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            ack_requested.reset(token)
