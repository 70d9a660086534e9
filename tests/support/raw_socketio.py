"""A Socket.IO 5 / Engine.IO 4 client written by hand over one websocket, for tests that
must send what no well-behaved client sends: any text in any frame, NaN, 1e400, integers
past 64 bits, lone surrogate escapes, binary frames nobody announced, broken packets.

The wire, as this client speaks it (https://socket.io/docs/v4/socket-io-protocol/):

    server: 0{"sid":...,"pingInterval":...}       Engine.IO open
    server: 2            client: 3                Engine.IO ping, answered with a pong
    client: 40/web,{"token":...}                  Socket.IO CONNECT with its auth
    server: 40/web,{"sid":...}  or  44/web,{...}  CONNECT, or CONNECT_ERROR
    client: 42/web,7["event",{...}]               EVENT with ack id 7
    server: 43/web,7[{...}]                       its ACK
    client: 451-/agent,7["event",{"_placeholder":true,"num":0}]  then one binary frame

Everything received is kept in `packets`, in order; the tests read it with `wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# Socket.IO packet types
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)


@dataclass(frozen=True)
class Raw:
    """A JSON token written out as is: `Raw("NaN")`, `Raw("1e400")`, `Raw("[" * 99)`.

    `non_strict` says why it is not strict JSON (None when it is)."""

    text: str
    non_strict: str | None = None


def dumps(value: Any, attachments: list[bytes] | None = None) -> str:
    """JSON text of `value` the way a sloppy client might write it: NaN and Infinity for
    such floats, integers of any size, lone surrogates as `\\udXXX` escapes, `Raw` tokens
    verbatim, and `bytes` as Socket.IO attachment placeholders (appended to `attachments`).
    """
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)  # ensure_ascii: controls, non-ASCII, surrogates escaped
    if isinstance(value, bytes | bytearray):
        if attachments is None:
            raise TypeError("bytes need an attachment list (Socket.IO only)")
        attachments.append(bytes(value))
        return f'{{"_placeholder":true,"num":{len(attachments) - 1}}}'
    # Loops, not generator expressions: one stack frame per level of nesting.
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            parts.append(json.dumps(str(key)) + ":" + dumps(item, attachments))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        parts = []
        for item in value:
            parts.append(dumps(item, attachments))
        return "[" + ",".join(parts) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@dataclass
class Packet:
    """One Socket.IO packet from the server (or an Engine.IO frame it could not be)."""

    type: int
    namespace: str
    id: int | None
    data: Any
    raw: str
    at: float = field(default_factory=time.monotonic)

    @property
    def event(self) -> str | None:
        if self.type in (EVENT, BINARY_EVENT) and isinstance(self.data, list) and self.data:
            return str(self.data[0])
        return None

    @property
    def args(self) -> list[Any]:
        return self.data[1:] if self.event is not None else []


def parse_packet(text: str) -> Packet:
    """A Socket.IO packet (the part after the Engine.IO `4`) as the server writes them."""
    rest = text[1:]
    kind = int(text[0]) if text[:1].isdigit() else -1
    if kind in (BINARY_EVENT, BINARY_ACK):
        _, _, rest = rest.partition("-")
    namespace = "/"
    if rest.startswith("/"):
        namespace, comma, tail = rest.partition(",")
        rest = tail if comma else ""
    digits = 0
    while digits < len(rest) and rest[digits].isdigit():
        digits += 1
    ack_id = int(rest[:digits]) if digits else None
    rest = rest[digits:]
    try:
        data = json.loads(rest) if rest else None
    except ValueError:
        data = rest
    return Packet(kind, namespace, ack_id, data, text)


class RawSocketIO:
    """One Engine.IO connection over a websocket, driven frame by frame."""

    def __init__(self, ws: ClientConnection, opened: dict[str, Any]) -> None:
        self.ws = ws
        self.opened = opened
        self.packets: list[Packet] = []
        self.frames: list[str | bytes] = []  # every frame received, as received
        self.engine_closed = False  # the server sent an Engine.IO close packet
        self.closed = asyncio.Event()  # the websocket ended
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._next_id = 0
        # A BINARY_EVENT and its attachments go out together, nothing in between.
        self.send_lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    async def open(cls, base_url: str, query: str = "", timeout_s: float = 30.0) -> RawSocketIO:
        """Open the websocket transport and read the Engine.IO open packet."""
        url = base_url.replace("http://", "ws://", 1).rstrip("/")
        url += "/socket.io/?EIO=4&transport=websocket" + (f"&{query}" if query else "")
        ws = await connect(
            url,
            open_timeout=timeout_s,
            ping_interval=None,  # Engine.IO pings on its own
            max_size=None,
            compression=None,
            proxy=None,
        )
        first = await asyncio.wait_for(ws.recv(), timeout_s)
        if not (isinstance(first, str) and first.startswith("0")):
            await ws.close()
            raise AssertionError(f"expected an Engine.IO open packet, got {first!r}")
        return cls(ws, json.loads(first[1:]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader

    def disconnected(self, namespace: str) -> bool:
        """The server sent a DISCONNECT for `namespace` (it ended that namespace only)."""
        return any(p.type == DISCONNECT and p.namespace == namespace for p in self.packets)

    @property
    def ended(self) -> bool:
        """The server ended the connection (an Engine.IO close, or the websocket closed)."""
        return self.engine_closed or self.closed.is_set()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.frames.append(frame)
                if isinstance(frame, bytes):
                    pass  # binary attachments of the server's: none expected
                elif frame == "2":
                    await self.ws.send("3")
                elif frame.startswith("1"):
                    self.engine_closed = True
                elif frame.startswith("4"):
                    self.packets.append(parse_packet(frame[1:]))
                self._changed.set()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
        except Exception:  # a frame this client could not read: treat as the end
            pass
        finally:
            if self.ws.close_code is not None and self.close_code is None:
                self.close_code = self.ws.close_code
            self.closed.set()
            self._changed.set()

    # -- sending ---------------------------------------------------------------------

    async def send_text(self, text: str | bytes) -> None:
        """One text frame exactly as given (bytes: sent unchecked, even if not UTF-8)."""
        await self.ws.send(text, text=True)

    async def send_binary(self, data: bytes) -> None:
        await self.ws.send(data)

    async def send_packet(self, text: str) -> None:
        """One Socket.IO packet: the text after the Engine.IO message type `4`."""
        await self.send_text("4" + text)

    def ack_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _prefix(namespace: str) -> str:
        return "" if namespace == "/" else namespace + ","

    async def connect(
        self, namespace: str, auth: Any = None, *, raw_auth: str | None = None
    ) -> None:
        """Send a CONNECT; read the answer with `connected`."""
        body = raw_auth if raw_auth is not None else ("" if auth is None else dumps(auth))
        await self.send_packet(f"{CONNECT}{self._prefix(namespace)}{body}")

    async def connected(self, namespace: str, timeout_s: float = 30.0) -> Packet | None:
        """The server's answer to a CONNECT (CONNECT or CONNECT_ERROR), None if it ended
        the connection or said nothing in time."""
        return await self.wait_for(
            lambda p: p.namespace == namespace and p.type in (CONNECT, CONNECT_ERROR),
            timeout_s,
        )

    async def emit(
        self, namespace: str, event: Any, *args: Any, ack: bool = True, raw_args: str | None = None
    ) -> int | None:
        """Send an EVENT (a BINARY_EVENT with its attachments where `args` hold bytes);
        the ack id, or None without an ack. `raw_args` replaces the encoded arguments:
        the text after the event name and its comma, up to the closing bracket."""
        attachments: list[bytes] = []
        if raw_args is not None:
            body = "[" + dumps(event) + ("," + raw_args if raw_args else "") + "]"
        else:
            body = dumps([event, *args], attachments)
        ack_id = self.ack_id() if ack else None
        head = f"{BINARY_EVENT}{len(attachments)}-" if attachments else f"{EVENT}"
        async with self.send_lock:
            await self.send_packet(
                f"{head}{self._prefix(namespace)}{'' if ack_id is None else ack_id}{body}"
            )
            for attachment in attachments:
                await self.send_binary(attachment)
        return ack_id

    # -- receiving -------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Packet], bool], timeout_s: float = 30.0, start: int = 0
    ) -> Packet | None:
        """The first packet (from index `start`) that matches, waiting for it up to
        `timeout_s`; None when the connection ended or time ran out first."""
        deadline = time.monotonic() + timeout_s
        seen = start
        while True:
            while seen < len(self.packets):
                packet = self.packets[seen]
                seen += 1
                if predicate(packet):
                    return packet
            if self.ended or time.monotonic() >= deadline:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    async def ack(self, namespace: str, ack_id: int, timeout_s: float = 30.0) -> Packet | None:
        return await self.wait_for(
            lambda p: p.type in (ACK, BINARY_ACK) and p.namespace == namespace and p.id == ack_id,
            timeout_s,
        )

    async def call(self, namespace: str, event: str, payload: Any, timeout_s: float = 30.0) -> Any:
        """Emit with an ack and return the ack's first argument (the Response)."""
        ack_id = await self.emit(namespace, event, payload)
        assert ack_id is not None
        answer = await self.ack(namespace, ack_id, timeout_s)
        if answer is None:
            raise AssertionError(
                f"no ack for {event} on {namespace} (ended: {self.ended}, close code "
                f"{self.close_code}); last received: {[p.raw[:200] for p in self.packets[-5:]]}"
            )
        data = answer.data
        return data[0] if isinstance(data, list) and data else data

    def events(self, namespace: str, name: str, start: int = 0) -> list[Packet]:
        return [p for p in self.packets[start:] if p.namespace == namespace and p.event == name]


async def open_namespace(
    base_url: str, namespace: str, auth: Any, timeout_s: float = 30.0
) -> RawSocketIO:
    """A raw connection with `namespace` connected (fails the test if it is refused)."""
    client = await RawSocketIO.open(base_url, timeout_s=timeout_s)
    await client.connect(namespace, auth)
    answer = await client.connected(namespace, timeout_s)
    if answer is None or answer.type != CONNECT:
        await client.close()
        raise AssertionError(f"could not connect {namespace}: {answer.raw if answer else None}")
    return client
