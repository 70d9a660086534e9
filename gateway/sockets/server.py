"""The python-socketio server, hardened at the edge.

What python-socketio leaves to the application, done here once for both namespaces:

- Packets are parsed as strict JSON (`orchestra.strict_json`): NaN, Infinity, integers past
  64 bits, lone surrogates, deep nesting and binary attachments reach the namespace as a
  `NotStrict` marker, which it answers with PARAM_001, keeping the connection.
- A frame that is not a Socket.IO packet at all (truncated JSON, a bad escape, nesting past
  the parser's reach, a binary frame nobody announced, an event with no name) closes that
  connection with one warning line, rate-limited, never a traceback: before any
  authentication, a thousand such frames a second must not fill the log.
- Event names Socket.IO reserves for its own lifecycle (`connect`, `disconnect`, ...) sent
  by a client are refused with PARAM_001 instead of running the lifecycle handlers.
- Handlers can tell whether an ack was asked: a bad request without one is answered with
  an `error` event (PROTOCOL.md §2). python-socketio does not pass that on; it is kept in
  a context variable for the handler's task.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Any

from socketio import packet

from gateway.sockets import transport
from gateway.sockets.metered import MeteredServer
from orchestra import strict_json
from orchestra.errors import InvalidParameters
from orchestra.logs import Throttled

log = logging.getLogger(__name__)

ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_requested", default=True)

#: attachments one binary packet may announce (no event of the protocol takes any: they
#: are refused, but the packet is read to its end so that the refusal can be answered;
#: they are counted, not kept, so the bound is on a client's patience, not our memory)
MAX_ATTACHMENTS = 1000

#: names Socket.IO keeps for itself; a client may not send them as events
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


class StrictJSON:
    """The `json` python-socketio's packets use: strict both ways."""

    loads = staticmethod(strict_json.loads)
    dumps = staticmethod(strict_json.dumps)


class StrictPacket(packet.Packet):
    json = StrictJSON
    attachments_received = 0

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        # The gateway never sends bytes (compressed payloads are base64 text), so the walk
        # python-socketio makes over every outgoing payload (9 % of the gateway's time
        # under the throughput benchmark, for frames of many events) is skipped.
        return False

    def decode(self, encoded_packet: Any) -> int:
        attachments: int = super().decode(encoded_packet)
        if self.packet_type == packet.BINARY_ACK:
            # The gateway never asks a client for an ack that could carry bytes.
            raise ValueError("a binary ack packet")
        if attachments > MAX_ATTACHMENTS:
            raise ValueError(f"{attachments} attachments announced")
        self.attachments_received = 0
        return attachments

    def add_attachment(self, attachment: Any) -> bool:
        # Counted and dropped: the event is refused whatever its bytes (see below).
        if self.attachment_count <= self.attachments_received:
            raise ValueError("Unexpected binary attachment")
        self.attachments_received += 1
        if self.attachments_received < self.attachment_count:
            return False
        self.data = self.reconstruct_binary(self.data, [])  # type: ignore[has-type]
        return True

    @classmethod
    def reconstruct_binary(cls, data: Any, attachments: list[Any]) -> Any:
        # No event of the protocol takes bytes: the event is answered, its bytes dropped.
        return strict_json.refused(data, "binary attachments are not accepted")


class Server(MeteredServer):
    def __init__(self, **kwargs: Any) -> None:
        transport.install()
        super().__init__(serializer=StrictPacket, **kwargs)
        self._malformed_log = Throttled(log, interval_s=10.0)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            waiting = eio_sid in self._binary_packet
            if waiting != isinstance(data, bytes | bytearray):
                raise ValueError("an attachment that is not binary, or one not announced")
            await super()._handle_eio_message(eio_sid, data)
        except _MALFORMED as exc:  # what the packet parser refused: see the module docstring
            self._binary_packet.pop(eio_sid, None)
            self._malformed_log.log(
                logging.WARNING,
                "closed a connection that sent a malformed frame: %s",
                _describe(exc),
            )
            await self.eio.disconnect(eio_sid)

    async def send_local(self, sids: Sequence[str], namespace: str, event: str, data: Any) -> None:
        """`emit` to sockets of this node, without python-socketio's task per recipient and
        wait for them all (more than the encoding itself costs for one small event): the
        packet is encoded once and queued to each socket in turn, in order. A socket that
        is gone is skipped."""
        encoded = self.packet_class(packet.EVENT, namespace=namespace, data=[event, data]).encode()
        sent = 0
        for sid in sids:
            eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
            if eio_sid is not None and eio_sid in self.eio.sockets:
                await self.eio.send(eio_sid, encoded)
                sent += 1
        self.count_sent(namespace, event, sent)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            raise ValueError("an event packet without an event name")
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if sid is None or not self.manager.is_connected(sid, namespace or "/"):
            raise ValueError("an event for a namespace the client has not joined")
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        token = ack_requested.set(id is not None)
        try:
            if data[0] in RESERVED_EVENTS:
                # Routed as an unknown event: the namespace answers PARAM_001.
                data = [_RESERVED, *data[1:2]]
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            ack_requested.reset(token)


#: what python-socketio's packet parser raises for a frame that is not a packet (anything
#: else escaping a frame's handling is a bug, and is left to be logged as one)
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError)

#: what a reserved event name is renamed to on its way to the namespace (never a handler)
_RESERVED = "\0reserved"


def reserved_refusal(event: str) -> InvalidParameters | None:
    """The error for an event that came renamed from a reserved name, else None."""
    if event == _RESERVED:
        return InvalidParameters("a reserved Socket.IO event name may not be sent")
    return None


def origin_check(allowed: Sequence[str]) -> Callable[[str | None, dict[str, Any]], bool] | str:
    """Engine.IO's origin check: a browser page may open sockets from the gateway's own
    origin (the console it serves) and from the origins listed (`allowed_origins`); "*"
    listed allows any. A client that sends no Origin (not a browser) is not checked."""
    if "*" in allowed:
        return "*"
    listed = frozenset(allowed)

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or origin in listed:
            return True
        host = environ.get("HTTP_HOST")
        scheme = environ.get("wsgi.url_scheme", "http")
        own = {f"{scheme}://{host}"} if host else set()
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", host)
        forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO", scheme)
        if forwarded_host:
            own.add(
                f"{forwarded_proto.split(',')[0].strip()}://{forwarded_host.split(',')[0].strip()}"
            )
        return origin in own

    return check


def _describe(exc: Exception) -> str:
    """What was wrong with a frame, short and without echoing much of it."""
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
