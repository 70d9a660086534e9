"""The socket metrics (`orchestra/metrics.py`), counted where every socket packet passes.

- Events received, and each request's time from its arrival to its ack, by namespace and
  event name: around python-socketio's handling of an event packet, which runs the
  namespace's handler and sends the ack.
- Events sent, by namespace and event name, once per socket they are queued to on this
  node: by `Server.send_local` (the namespaces' `send` and `send_shared`, a batch frame
  counting once) and by the manager's local emit (`emit` to a room or a socket, which
  python-socketio's Redis manager runs on the node that holds the sockets).
- Sockets connected, by namespace: those whose connect handler let them in, until they
  disconnect.

Event names a client chose but the namespace does not answer are counted as `unknown`:
labels take values from small fixed sets, never from what a peer sends.
"""

from __future__ import annotations

import time
from typing import Any

import socketio

from orchestra import metrics

UNKNOWN = "unknown"


class MeteredServer(socketio.AsyncServer):
    """The server's part: events received, their latency, sockets connected."""

    def register_namespace(self, namespace_handler: Any) -> None:
        super().register_namespace(namespace_handler)
        namespace = namespace_handler.namespace
        metrics.CONNECTIONS.labels(namespace).set_function(lambda: self.connected(namespace))

    def connected(self, namespace: str) -> int:
        """Sockets of `namespace` past their connect handler, from the manager's own
        record: all it holds, less those still being let in."""
        sockets = self.manager.rooms.get(namespace, {}).get(None, {})
        return len(sockets) - len(self.manager.pending_connect.get(namespace, ()))

    def event_label(self, namespace: str, event: Any) -> str:
        handler = self.namespace_handlers.get(namespace)
        known = getattr(handler, "events", ())
        return event if isinstance(event, str) and event in known else UNKNOWN

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        name = self.event_label(namespace, data[0])
        metrics.EVENTS_IN.labels(namespace, name).inc()
        started = time.perf_counter()
        try:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            elapsed_s = time.perf_counter() - started
            metrics.EVENT_LATENCY.labels(namespace, name).observe(elapsed_s)

    def count_sent(self, namespace: str, event: str, sockets: int) -> None:
        if sockets:
            metrics.EVENTS_OUT.labels(namespace, self.event_name(event)).inc(sockets)

    @staticmethod
    def event_name(event: Any) -> str:
        """What the server sends is ours: its names are the protocol's (a fixed set)."""
        return event if isinstance(event, str) else UNKNOWN


class _CountingManager(socketio.AsyncManager):
    """The local delivery of an emit: counted per socket of this node it goes to."""

    async def emit(
        self,
        event: Any,
        data: Any,
        namespace: Any,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> Any:
        server = self.server
        if isinstance(server, MeteredServer):
            skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
            sockets = sum(
                1 for sid, _ in self.get_participants(namespace, to or room) if sid not in skipped
            )
            server.count_sent(namespace, event, sockets)
        return await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
        )


class RedisManager(socketio.AsyncRedisManager, _CountingManager):
    """python-socketio's Redis manager, its local deliveries counted: its emit publishes
    to every node, and each node's delivery to its own sockets (`AsyncManager.emit`,
    which `_CountingManager` stands in front of in this class's MRO) counts them."""
