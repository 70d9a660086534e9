"""The Sanic app of one gateway node, with python-socketio attached (DESIGN.md §5)."""

from __future__ import annotations

import asyncio
import logging

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from gateway.audit import request_ip
from gateway.console_site import add_console
from gateway.node import Node
from gateway.responses import http_error
from gateway.rest import BLUEPRINTS
from gateway.rest import metrics as rest_metrics
from gateway.rest.common import authenticate
from gateway.tracing import add_tracing
from orchestra.errors import InvalidParameters, NotFound, OrchestraError, ResourceExhausted
from orchestra.settings import Settings

log = logging.getLogger(__name__)

#: counted by address: a token sent along must not move sign-in attempts to another bucket
_BY_ADDRESS = frozenset({"/api/auth/login", "/api/auth/refresh"})
# The REST API, and the agents' health (admins only); `/health` itself answers anyone.
_AUTHENTICATED = ("/api/", "/health/")


def create_app(settings: Settings, name: str = "orchestra") -> Sanic:
    # Sanic's loggers log through ours (`orchestra/logs.py`: one format, sanitised), not
    # through handlers of their own. One line for each websocket closed, whoever opened
    # it, is noise a client can multiply at will.
    app = Sanic(name, configure_logging=False)
    logging.getLogger("sanic.websockets").setLevel(logging.WARNING)
    node = Node(settings)
    app.ctx.node = node
    app.config.REQUEST_MAX_SIZE = settings.max_payload_bytes
    app.config.WEBSOCKET_MAX_SIZE = node.transport_limit
    app.config.KEEP_ALIVE_TIMEOUT = 30
    app.config.FALLBACK_ERROR_FORMAT = "json"
    # Stopping, the node closes every socket itself (below): what is left to wait for is
    # REST requests in flight, not peers slow to acknowledge a websocket's close.
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.shutdown_timeout_s
    node.sio.attach(app)
    for blueprint in BLUEPRINTS:
        app.blueprint(blueprint)
    rest_metrics.instrument(app)  # every request timed (`GET /metrics` shows them)
    add_console(app)
    add_tracing(app)  # a trace id for every request, in its log lines and `X-Trace-Id`

    @app.before_server_start
    async def start_node(app: Sanic) -> None:
        await node.start()

    @app.before_server_stop
    async def close_sockets(app: Sanic) -> None:
        """Close every socket while the node can still act on it (an agent goes offline at
        once and reconnects elsewhere), leaving no ping task of theirs behind. A socket's
        close waits until its peer took the close packet, which a polling client that
        stopped polling never does: past the shutdown timeout the node stops anyway."""
        eio = node.sio.eio
        closing = [
            asyncio.create_task(socket.close(reason=eio.reason.SERVER_DISCONNECT))
            for socket in eio.sockets.values()
        ]
        if closing:
            _, unfinished = await asyncio.wait(closing, timeout=settings.shutdown_timeout_s)
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.info("stopping with %d sockets not closed cleanly", len(unfinished))
        eio.sockets = {}
        await node.sio.shutdown()

    @app.after_server_stop
    async def stop_node(app: Sanic) -> None:
        await node.stop()
        # What is left (engine.io's ping timers of closed sockets, say) is cancelled now,
        # not destroyed pending, with an error line each, when the loop closes.
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=1.0)

    @app.on_request
    async def authenticate_and_limit(request: Request) -> None:
        """Every REST call: who is calling (checked against revocations), then their rate
        limit, counted by user, or by address before login. Signing in and refreshing
        always count by address, whatever token comes along."""
        if not request.path.startswith(_AUTHENTICATED):
            return
        request.ctx.principal = None
        request.ctx.auth_error = None
        if "authorization" in request.headers:
            try:
                request.ctx.principal = await authenticate(request, node)
            except OrchestraError as exc:
                request.ctx.auth_error = exc
        principal = request.ctx.principal
        if principal is not None and request.path not in _BY_ADDRESS:
            who = f"user:{principal.user_id}"
        else:
            who = f"ip:{request_ip(request)}"
        await node.rate_limiter.check(who)

    @app.exception(Exception)
    async def answer_error(request: Request, exc: Exception) -> HTTPResponse:
        # A bug's stack, in the development profile, only to a caller who signed in.
        signed_in = getattr(request.ctx, "principal", None) is not None
        return http_error(_as_protocol_error(exc), expose_stack=settings.expose_stack and signed_in)

    return app


def _as_protocol_error(exc: Exception) -> Exception:
    """Sanic's own refusals (no route, body too large) as the protocol's codes."""
    if isinstance(exc, OrchestraError) or not isinstance(exc, SanicException):
        return exc
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return NotFound("no such route")
    if status == 413:
        return ResourceExhausted("request body too large")
    if 400 <= status < 500:
        error = InvalidParameters(str(exc) or "bad request")
        error.http_status = status
        return error
    return exc
