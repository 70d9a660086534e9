"""The transports under Socket.IO, hardened: Engine.IO packets and Sanic's websocket.

A peer that has not authenticated yet may send anything. python-engineio decodes each
frame outside any error handling of its own (a frame `x`, an empty one, a type past 6, a
body of broken polling packets), so what it raises reaches Sanic, or its "Unknown receive
error" handler, as a traceback; and Sanic's websocket leaves a text frame that is not
UTF-8 as an exception in a task nobody awaits, the connection hanging. Here each of
these closes that connection, with one throttled warning line for all of them:

- `StrictSocket`, the Engine.IO socket the server makes (installed by `install`, since
  python-engineio names its socket class at the point of use): a websocket frame is
  checked before python-engineio decodes it, and a polling body whose packets do not
  decode ends the session with a 400.
- Sanic's frame assembler fails a websocket that sends invalid UTF-8 with close code 1007
  (RFC 6455 §8.1) instead of hanging.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from engineio import async_socket, exceptions
from sanic.server.websockets.frame import WebsocketFrameAssembler

from orchestra.logs import Throttled

log = logging.getLogger(__name__)
malformed = Throttled(log, interval_s=10.0)

#: Engine.IO packet types a client may send: close, ping, pong, message, upgrade, noop
_CLIENT_TYPES = frozenset("123456")


def text_packet_problem(data: str) -> str | None:
    """Why a text frame is not an Engine.IO packet a client may send, else None."""
    if not data:
        return "an empty frame"
    if data[0] == "b":  # a binary message in base64 (polling clients without binary)
        try:
            base64.b64decode(data[1:], validate=True)
        except (binascii.Error, ValueError):
            return "a base64 message that does not decode"
        return None
    if data[0] not in _CLIENT_TYPES:
        return f"an Engine.IO packet of type {data[0]!r}"
    return None


class _CheckedWebSocket:
    """A websocket whose text frames are Engine.IO packets a client may send; any other
    frame reads as the end of the connection."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def wait(self) -> Any:
        data = await self._ws.wait()
        if isinstance(data, str) and (problem := text_packet_problem(data)) is not None:
            malformed.log(logging.WARNING, "closed a websocket that sent %s", problem)
            return None  # python-engineio: the client closed the connection
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class StrictSocket(async_socket.AsyncSocket):
    async def _websocket_handler(self, ws: Any) -> Any:
        return await super()._websocket_handler(_CheckedWebSocket(ws))

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        try:
            await super().handle_post_request(environ)
        except exceptions.EngineIOError:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as exc:  # undecodable packets
            malformed.log(
                logging.WARNING,
                "closed a polling session that sent malformed packets: %s",
                type(exc).__name__,
            )
            raise exceptions.EngineIOError("malformed packets") from None

    async def receive(self, pkt: Any) -> None:
        if not 1 <= int(pkt.packet_type) <= 6:
            raise exceptions.UnknownPacketError()
        await super().receive(pkt)


async def _put_or_fail(self: WebsocketFrameAssembler, frame: Any) -> None:
    try:
        await _assembler_put(self, frame)
    except UnicodeDecodeError:
        malformed.log(logging.WARNING, "closed a websocket that sent text that is not UTF-8")
        self.protocol.fail_connection(1007, "invalid UTF-8")


_assembler_put = WebsocketFrameAssembler.put


def install() -> None:
    """Put the hardened classes in place (idempotent; the gateway's process only)."""
    async_socket.AsyncSocket = StrictSocket
    if WebsocketFrameAssembler.put is not _put_or_fail:
        WebsocketFrameAssembler.put = _put_or_fail  # type: ignore[method-assign]
