"""A push service for tests: an HTTP server in the test's process standing where a
browser's push service (FCM, Mozilla's autopush...) would, recording every push a gateway
sends and answering with the status a test picks; and a device's keys to decrypt them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from redis.asyncio import Redis

from gateway.web_push import GROUP
from orchestra import keys
from orchestra.redis_server import free_port
from tests.support.webhooks import serving

__all__ = ["Device", "PushService", "Pushed", "b64url", "serve_push", "settled"]

HELD = 0  # the status of a push the service never answered


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """What a browser keeps of a subscription: its ECDH key pair and auth secret."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Device:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @classmethod
    def from_jwk(cls, jwk: dict[str, str], auth: str) -> Device:
        """The keys a page made with WebCrypto (its private key exported as a JWK)."""
        number = int.from_bytes(_unb64url(jwk["d"]), "big")
        return cls(ec.derive_private_key(number, ec.SECP256R1()), _unb64url(auth))

    def subscription(self, endpoint: str) -> dict[str, Any]:
        """`PushSubscription.toJSON()` as a browser gives it."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        """A push's payload, as the device's push event would read it (RFC 8291)."""
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        value: dict[str, Any] = json.loads(plain)
        return value


@dataclass
class Pushed:
    name: str
    headers: dict[str, str]
    body: bytes
    status: int = HELD

    def vapid_claims(self, public_key: str) -> dict[str, Any]:
        """The VAPID token's claims, once its signature checks against `public_key` (the
        gateway's `/api/push/key`); AssertionError if it does not."""
        auth = self.headers.get("Authorization", "")
        assert auth.startswith("vapid "), auth[:20]
        parts = dict(p.strip().split("=", 1) for p in auth[len("vapid ") :].split(","))
        assert parts["k"] == public_key, "signed with another key"
        assert Vapid02.verify(auth), "the VAPID signature does not check"
        claims: dict[str, Any] = json.loads(_unb64url(parts["t"].split(".")[1]))
        return claims


@dataclass
class PushService:
    """Takes pushes at /push/<name>/<token>. `answer(name, n)` picks the status of the n-th
    push (from 0) a name gets; `HELD` keeps it unanswered until `release` is set."""

    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(12))
    received: list[Pushed] = field(default_factory=list)
    answer: Callable[[str, int], int] = lambda name, n: 201
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}/{self.token}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, name: str) -> list[Pushed]:
        return [p for p in self.received if p.name == name]

    def accepted(self, name: str) -> list[Pushed]:
        return [p for p in self.of(name) if 200 <= p.status < 300]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        pushed = Pushed(name, dict(request.headers), await request.read())
        status = self.answer(name, len(self.of(name)))
        self.received.append(pushed)
        if status == HELD:
            await self.release.wait()
            return web.Response(status=503)
        pushed.status = status
        return web.Response(status=status)


@asynccontextmanager
async def serve_push() -> AsyncIterator[PushService]:
    service = PushService(port=free_port())
    async with serving(service.port, "/push/{name}/{token}", service.handle):
        try:
            yield service
        finally:
            service.release.set()  # a held push is answered before the server stops


async def settled(redis: Redis) -> bool:
    """Whether the push consumers have read every notification and acknowledged it."""
    last: Any = await redis.xrevrange(keys.webhook_events(), count=1)
    for group in await redis.xinfo_groups(keys.webhook_events()):
        if group["name"] == GROUP:
            return bool(last) and group["last-delivered-id"] == last[0][0] and not group["pending"]
    return False
