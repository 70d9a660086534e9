"""The agent's Socket.IO connection to the gateway (namespace `/agent`, PROTOCOL.md §1, §3).

`AgentConnection.run` connects, lets the daemon register, and reconnects for ever with
exponential backoff and jitter: after a lost connection, after a refused handshake, and when
the very first attempt fails (the gateway may start after the agent). Every attempt gets a
fresh python-socketio client, so no callback of an old connection outlives it, and every
handshake is signed afresh (the `auth` argument is a callable; python-socketio calls it on
each connection attempt).

A `Session` is one established connection. It stamps the envelope on what it sends,
compresses large payloads with zstd, decompresses what it receives, and fails fast with
`LinkDown` once the connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from orchestra import trace
from orchestra.codec import ALGORITHMS, compress, decompress, envelope
from orchestra.errors import OrchestraError
from orchestra.settings import Settings
from orchestra.sio_packet import FastPacket

__all__ = [
    "NAMESPACE",
    "AgentConnection",
    "Backoff",
    "Handler",
    "LinkDown",
    "Session",
    "handshake_auth",
    "refusal_reason",
    "response_error",
    "sign",
]

log = logging.getLogger(__name__)

NAMESPACE = "/agent"
Handler = Callable[[dict[str, Any]], Awaitable[Any]]
AckCallback = Callable[[Any], None]


class LinkDown(Exception):
    """The connection is gone (or a request went unanswered): try again on the next one."""


def sign(secret: str, agent_id: str, timestamp_ms: int, nonce: str) -> str:
    """hex(HMAC-SHA256(secret, f"{agentId}:{timestamp}:{nonce}")), PROTOCOL.md §3."""
    message = f"{agent_id}:{timestamp_ms}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def handshake_auth(agent_id: str, secret: str) -> dict[str, Any]:
    """A freshly signed handshake: a new timestamp and nonce on every call."""
    timestamp_ms = int(time.time() * 1000)
    nonce = secrets.token_hex(16)
    return {
        "agentId": agent_id,
        "timestamp": timestamp_ms,
        "nonce": nonce,
        "signature": sign(secret, agent_id, timestamp_ms, nonce),
        "compression": list(ALGORITHMS),
    }


def response_error(response: Any) -> tuple[str, str] | None:
    """(code, message) when an ack Response reports failure, None when it succeeded."""
    if isinstance(response, dict) and response.get("success") is True:
        return None
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        error = response["error"]
        return str(error.get("code", "SYS_001")), str(error.get("message", ""))
    return "SYS_001", f"unexpected acknowledgement: {str(response)[:200]}"


def refusal_reason(data: Any) -> tuple[str | None, str]:
    """(code, message) of a `connect_error`.

    The protocol's shape is `{"code", "message"}`; python-socketio's own refusal nests what
    the server gave as `{"message", "data": {"code", ...}}`, so both are read.
    """
    if isinstance(data, dict):
        nested = data.get("data")
        code = data.get("code")
        if code is None and isinstance(nested, dict):
            code = nested.get("code")
        message = data.get("message")
        if message is None and isinstance(nested, dict):
            message = nested.get("message")
        return (str(code) if code is not None else None), str(message or "")
    return None, str(data or "")


class Backoff:
    """Exponential delays from `base` to `cap`, each drawn from its upper half (jitter)."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = max(cap, base)
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; the spread keeps many agents from stampeding."""
        delay = min(self.cap, self.base * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return delay / 2 + self._rng() * delay / 2

    def reset(self) -> None:
        """Back to the shortest delay (after a connection that worked)."""
        self._attempt = 0


class Session:
    """One established connection to the gateway."""

    def __init__(self, client: Any, epoch: int, settings: Settings) -> None:
        self.client = client
        self.epoch = epoch
        self.closed = asyncio.Event()
        self._settings = settings

    def _outgoing(self, payload: dict[str, Any]) -> dict[str, Any]:
        wrapped = envelope(payload, "agent")
        # The gateway accepts zstd from agents (it listed nothing: it is the server).
        return compress(wrapped, ["zstd"], self._settings.compression_threshold_bytes)

    def _incoming(self, data: Any) -> Any:
        return decompress(data, self._settings.max_payload_bytes)

    async def emit(
        self, event: str, payload: dict[str, Any], on_ack: AckCallback | None = None
    ) -> None:
        """Send an event; `on_ack` gets the Response (decompressed) if and when it comes."""
        if self.closed.is_set():
            raise LinkDown(f"cannot send {event}: disconnected")
        callback = None
        if on_ack is not None:

            def callback(*args: Any) -> None:
                try:
                    on_ack(self._incoming(args[0] if args else None))
                except OrchestraError as exc:
                    on_ack({"success": False, "error": {"code": exc.code, "message": str(exc)}})
                except Exception:
                    log.exception("acknowledgement handler for %s failed", event)

        try:
            await self.client.emit(event, self._outgoing(payload), NAMESPACE, callback)
        except socketio.exceptions.SocketIOError as exc:
            self.closed.set()
            raise LinkDown(f"cannot send {event}: {exc}") from None

    async def request(self, event: str, payload: dict[str, Any], timeout_s: float) -> Any:
        """Send an event and wait for its Response; `LinkDown` on disconnect or timeout."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(response: Any) -> None:
            if not answer.done():
                answer.set_result(response)

        await self.emit(event, payload, on_ack)
        closed = asyncio.create_task(self.closed.wait())
        try:
            await asyncio.wait({answer, closed}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            closed.cancel()
        if answer.done():
            return answer.result()
        answer.cancel()
        if self.closed.is_set():
            raise LinkDown(f"disconnected while waiting for the answer to {event}")
        raise LinkDown(f"no answer to {event} within {timeout_s:g} s")


class AgentConnection:
    """Keeps one registered connection to the gateway for as long as the daemon runs."""

    def __init__(
        self,
        settings: Settings,
        secret: str,
        handlers: Mapping[str, Handler],
        on_connect: Callable[[Session], Awaitable[bool]],
    ) -> None:
        """`on_connect` registers the agent; the session is ready once it returns True."""
        self._settings = settings
        self._secret = secret
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._epoch = 0
        self._session: Session | None = None
        self._current: Session | None = None
        self._ready = asyncio.Event()
        self._last_refusal: Any = None

    @property
    def session(self) -> Session | None:
        """The registered session, or None while disconnected."""
        return self._session if self._ready.is_set() else None

    @property
    def current(self) -> Session | None:
        """The connected session, registered or not yet (pongs need no registration)."""
        session = self._current
        return session if session is not None and not session.closed.is_set() else None

    async def wait_ready(self) -> Session:
        """The registered session, waiting for one if need be."""
        while True:
            await self._ready.wait()
            if self._session is not None and not self._session.closed.is_set():
                return self._session
            self._ready.clear()

    def _auth(self) -> dict[str, Any]:
        # Called by python-socketio on every attempt: each handshake has its own nonce.
        return handshake_auth(self._settings.agent_id, self._secret)

    def _make_client(self, session_box: list[Session]) -> Any:
        client = socketio.AsyncClient(
            reconnection=False,  # our loop reconnects, with our backoff and a new client
            handle_sigint=False,  # the daemon handles signals
            logger=False,
            engineio_logger=False,
            serializer=FastPacket,
        )

        async def on_disconnect(*_: Any) -> None:
            if session_box:
                session_box[0].closed.set()

        async def on_connect_error(data: Any = None) -> None:
            self._last_refusal = data

        client.on("disconnect", on_disconnect, namespace=NAMESPACE)
        client.on("connect_error", on_connect_error, namespace=NAMESPACE)
        for event, handler in self._handlers.items():
            client.on(event, self._wrap(event, handler, session_box), namespace=NAMESPACE)
        return client

    def _wrap(self, event: str, handler: Handler, box: list[Session]) -> Handler:
        async def receive(data: Any = None) -> Any:
            try:
                payload = box[0]._incoming(data) if box else data
            except OrchestraError as exc:
                log.warning("dropped a malformed %s from the gateway: %s", event, exc)
                return None
            if not isinstance(payload, dict):
                log.warning("dropped a %s whose payload is not an object", event)
                return None
            # The command's trace id (PROTOCOL.md §1 `traceId`, or a new one) on the log
            # lines of its handling, and on the task's reports (`tasks.py`).
            token = trace.start(
                traceId=trace.adopt(payload.get("traceId")),
                event=event,
                taskId=trace.plain_id(payload.get("taskId")),
            )
            try:
                return await handler(payload)
            except Exception:
                log.exception("handling %s failed", event)
                return None
            finally:
                trace.reset(token)

        return receive

    async def run(self) -> None:
        """Connect, register, stay connected, and start over, for ever (until cancelled)."""
        backoff = Backoff(self._settings.reconnect_delay_s, self._settings.reconnect_max_delay_s)
        urls = self._settings.server_urls
        url = random.choice(urls)
        while True:
            self._epoch += 1
            box: list[Session] = []
            client = self._make_client(box)
            session = Session(client, self._epoch, self._settings)
            box.append(session)
            self._current = session
            self._last_refusal = None
            try:
                await self._attempt(client, session, url, backoff)
            except Exception:
                # Whatever goes wrong with one connection, the agent must keep trying.
                log.exception("the connection to %s failed", url)
            finally:
                self._ready.clear()
                self._session = None
                session.closed.set()
                await _discard(client)
            delay = backoff.next()
            # With several gateways, the next attempt goes to another one: the one just
            # lost may be down for good.
            url = random.choice([u for u in urls if u != url] or [url])
            log.info("reconnecting to %s in %.1f s", url, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, client: Any, session: Session, url: str, backoff: Backoff) -> None:
        """One connection: connect, register, and stay until it is gone."""
        try:
            await client.connect(
                url,
                auth=self._auth,
                namespaces=[NAMESPACE],
                socketio_path="socket.io",
                transports=list(self._settings.transports) or None,
                wait_timeout=self._settings.connection_timeout_s,
            )
        except (socketio.exceptions.ConnectionError, ValueError, OSError) as exc:
            self._log_refusal(url, exc)
            return
        log.info("connected to %s", url)
        try:
            registered = await self._on_connect(session)
        except LinkDown as exc:
            log.warning("registration failed: %s", exc)
            registered = False
        except Exception:
            log.exception("registration failed")
            registered = False
        if not registered:
            return
        backoff.reset()
        self._session = session
        self._ready.set()
        await self._stay(client, session)
        log.warning("disconnected from %s", url)

    async def _stay(self, client: Any, session: Session) -> None:
        """Return once the connection is gone (the disconnect event, or a dead transport)."""
        while not session.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.closed.wait(), 5.0)
            if NAMESPACE not in getattr(client, "namespaces", {NAMESPACE: None}):
                session.closed.set()

    def _log_refusal(self, url: str, exc: BaseException) -> None:
        code, message = refusal_reason(self._last_refusal)
        if code == "AUTH_001":
            # Says what is wrong without saying anything about the secret itself.
            log.error(
                "the gateway refused the agent's credentials (AUTH_001: %s); "
                "check the agent id %r, its secret and this machine's clock",
                message,
                self._settings.agent_id,
            )
        elif code is not None:
            log.error("the gateway refused the connection (%s: %s)", code, message)
        else:
            log.warning("cannot connect to %s: %s", url, message or exc)

    async def close(self) -> None:
        """Disconnect now (the run loop should be cancelled first)."""
        session = self._session
        self._ready.clear()
        self._session = None
        if session is not None:
            session.closed.set()
            await _discard(session.client)


async def _discard(client: Any) -> None:
    """Drop a client for good, whatever state it is in."""
    with contextlib.suppress(Exception):
        await client.disconnect()
