"""A webhook receiver for tests: an HTTP server in the test's process that records every
delivery and answers with the status a test picks."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from orchestra.redis_server import free_port

__all__ = ["Received", "Receiver", "serve_receiver", "serving", "signed"]


@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """An HTTP server taking deliveries at /hooks/<name>/<token>; `answer(name, n)` picks
    the status of the n-th request (from 0) a name gets."""

    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(12))
    received: list[Received] = field(default_factory=list)
    answer: Callable[[str, int], int] = lambda name, n: 200

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}/{self.token}"

    def of(self, name: str) -> list[Received]:
        return [r for r in self.received if r.name == name]

    def accepted(self, name: str) -> list[Received]:
        return [r for r in self.of(name) if 200 <= r.status < 300]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        status = self.answer(name, len(self.of(name)))
        self.received.append(Received(name, dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")


@asynccontextmanager
async def serving(
    port: int, route: str, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> AsyncIterator[None]:
    """An HTTP server on 127.0.0.1:`port` taking POSTs at `route`, for the block's time."""
    app = web.Application()
    app.router.add_post(route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    found = Receiver(port=free_port())
    async with serving(found.port, "/hooks/{name}/{token}", found.handle):
        yield found


def signed(delivery: Received, secret: str) -> bool:
    """Whether the delivery's signature is HMAC-SHA256 of its body under `secret`."""
    expected = "sha256=" + hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers.get("X-Orchestra-Signature", ""))
