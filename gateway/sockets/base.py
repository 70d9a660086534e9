"""What both namespaces share: event routing, validation, size limit, errors as Responses.

A handler for event `a:b` is the method `on_a_b(sid, payload)`. It returns the ack's
`data`, or raises an `OrchestraError`; either way the client gets one Response. An event
the namespace does not know, a payload that is not an object, a payload over the size
limit: each gets its error code and nothing changes.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import socketio

from gateway.responses import fail, ok
from gateway.sockets.server import ack_requested, reserved_refusal
from gateway.tracing import bind_decoded, bind_socket_event
from orchestra import strict_json, trace
from orchestra.codec import compress, decompress, envelope, json_size, new_id
from orchestra.errors import InvalidParameters, OrchestraError, ResourceExhausted
from orchestra.logs import Throttled

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger(__name__)

_LIFECYCLE = {"connect", "disconnect"}

#: the JSON size of the payload being handled, measured once by `_decode` for the size
#: limit; handlers with limits of their own (output batches) read it from here
decoded_bytes: contextvars.ContextVar[int] = contextvars.ContextVar("decoded_bytes", default=0)


class BaseNamespace(socketio.AsyncNamespace):
    """Routes events to `on_<event>` methods with `:` and `-` read as `_`."""

    #: the events this namespace answers (others get PARAM_001)
    events: frozenset[str] = frozenset()

    def __init__(self, namespace: str, node: Node) -> None:
        super().__init__(namespace)
        self.node = node
        self.settings = node.settings
        self._accepts: dict[str, list[str]] = {}  # socket -> compression algorithms it decodes
        # A peer may send bad requests as fast as it likes: one line a second says so.
        self._refusals_log = Throttled(log, interval_s=1.0)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        # Each event is a request with a trace id (the payload's `traceId`, or a new one):
        # bound, with the ids it is about, while it is handled (`gateway/tracing.py`).
        raw = args[1] if len(args) > 1 else None
        token = bind_socket_event(event, raw, self.log_identity(args[0]) if args else {})
        try:
            return await self._trigger(event, *args)
        finally:
            trace.reset(token)

    async def _trigger(self, event: str, *args: Any) -> Any:
        if event in _LIFECYCLE:
            return await super().trigger_event(event, *args)
        sid = args[0]
        raw = args[1] if len(args) > 1 else {}
        if isinstance(raw, strict_json.NotStrict):
            request_id = raw.request_id
        else:
            request_id = (
                raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            )
        request_id = request_id or new_id()
        try:
            refusal = reserved_refusal(event)
            if refusal is not None:
                raise refusal
            if event not in self.events:
                raise InvalidParameters(f"unknown event {str(event)[:64]!r} on {self.namespace}")
            await self.before_request(sid, event)
            payload = self._decode(raw)
            handler = getattr(self, "on_" + event.replace(":", "_").replace("-", "_"))
            data = await handler(sid, payload)
        except Exception as exc:
            response = fail(request_id, exc, expose_stack=self.settings.expose_stack)
            self.node.alerts.tally.count(error=True)  # the error-rate alert's counts
            await self._refused(sid, event, response)
            return response
        self.node.alerts.tally.count(error=False)
        return ok(request_id, data)

    async def before_request(self, sid: str, event: str) -> None:
        """A hook run before every request's handler (rate limits, say)."""

    def log_identity(self, sid: str) -> dict[str, str]:
        """Who the socket is, for log lines: `{"userId": ...}` or `{"agentId": ...}`."""
        return {}

    def _decode(self, raw: Any) -> dict[str, Any]:
        if isinstance(raw, strict_json.NotStrict):
            raise InvalidParameters(f"the payload is not strict JSON: {raw.reason}")
        payload = decompress(raw, self.settings.max_payload_bytes)
        if not isinstance(payload, dict):
            raise InvalidParameters("the payload must be a JSON object")
        bind_decoded(raw, payload)  # the trace id of a compressed payload
        size = json_size(payload)
        if size > self.settings.max_payload_bytes:
            raise ResourceExhausted(
                f"payload over the limit of {self.settings.max_payload_bytes} bytes"
            )
        decoded_bytes.set(size)
        return payload

    async def _refused(self, sid: str, event: str, response: dict[str, Any]) -> None:
        """Without an ack to carry it, the error goes out as an `error` event."""
        self._refusals_log.log(
            logging.INFO, "refused %s from %s: %s", event, sid, response["error"]["code"]
        )
        if not ack_requested.get():
            await self.emit("error", response["error"], to=sid)

    async def send(self, sid: str, event: str, data: dict[str, Any], **kwargs: Any) -> None:
        """Emit to one local socket, with the envelope, compressed where it asked for it."""
        payload = envelope(data, "server")
        payload = compress(
            payload, self._accepts.get(sid, ()), self.settings.compression_threshold_bytes
        )
        if kwargs:
            await self.node.sio.emit(
                event, payload, to=sid, namespace=self.namespace, ignore_queue=True, **kwargs
            )
        else:
            await self.node.sio.send_local([sid], self.namespace, event, payload)

    async def send_shared(self, sids: Sequence[str], event: str, data: dict[str, Any]) -> None:
        """`send` to several local sockets at once: one envelope, one compression for each
        set of algorithms they listed, and one encoding (python-socketio encodes a packet
        once for all the sockets it goes to)."""
        payload = envelope(data, "server")
        groups: dict[frozenset[str], list[str]] = {}
        for sid in sids:
            groups.setdefault(frozenset(self._accepts.get(sid, ())), []).append(sid)
        for accepted, group in groups.items():
            await self.node.sio.send_local(
                group,
                self.namespace,
                event,
                compress(payload, accepted, self.settings.compression_threshold_bytes),
            )

    def remember_compression(self, sid: str, auth: Any) -> None:
        if isinstance(auth, dict) and isinstance(auth.get("compression"), list):
            self._accepts[sid] = [a for a in auth["compression"] if isinstance(a, str)]

    def forget(self, sid: str) -> None:
        self._accepts.pop(sid, None)


class ConnectionRefused(socketio.exceptions.ConnectionRefusedError):
    """Raised in a connect handler: the client's `connect_error` data is `{code, message}`."""

    def __init__(self, exc: OrchestraError) -> None:
        super().__init__()
        self.error_args = {"code": exc.code, "message": exc.message}
