"""Credentials: users' JWTs and agents' HMAC handshakes (PROTOCOL.md §3, §6)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from redis.asyncio import Redis

from orchestra import keys
from orchestra.codec import format_timestamp
from orchestra.db import Store
from orchestra.errors import AuthenticationFailed
from orchestra.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (with their admin flag)."""

    user_id: str
    username: str
    is_admin: bool
    expires_at: float


class Tokens:
    """Issues and checks access and refresh tokens."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def issue(self, user: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        access = jwt.encode(
            {
                "sub": user.id,
                "name": user.username,
                "adm": bool(user.is_admin),
                "typ": "access",
                "iat": now,
                "exp": now + timedelta(seconds=self.settings.access_token_ttl_s),
            },
            self.settings.jwt_secret,
            algorithm=ALGORITHM,
        )
        jti = secrets.token_hex(16)
        refresh_expires = now + timedelta(seconds=self.settings.refresh_token_ttl_s)
        refresh = jwt.encode(
            {"sub": user.id, "typ": "refresh", "jti": jti, "iat": now, "exp": refresh_expires},
            self.settings.jwt_secret,
            algorithm=ALGORITHM,
        )
        await self.store.add_refresh_token(jti, user.id, refresh_expires)
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": self.settings.access_token_ttl_s,
            "user": user_view(user),
        }

    def verify_access(self, token: Any) -> Principal:
        claims = self._decode(token, "access")
        return Principal(
            user_id=str(claims["sub"]),
            username=str(claims.get("name", "")),
            is_admin=bool(claims.get("adm")),
            expires_at=float(claims["exp"]),
        )

    async def refresh(self, token: Any) -> dict[str, Any]:
        claims = self._decode(token, "refresh")
        user_id = await self.store.use_refresh_token(str(claims.get("jti", "")))
        if user_id is None or user_id != claims["sub"]:
            raise AuthenticationFailed("refresh token already used, revoked or unknown")
        user = await self.store.get_user(user_id)
        if user is None or user.disabled:
            raise AuthenticationFailed("user no longer exists or is disabled")
        return await self.issue(user)

    def _decode(self, token: Any, kind: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise AuthenticationFailed("missing token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.settings.jwt_secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationFailed("invalid token") from None
        if claims.get("typ") != kind:
            raise AuthenticationFailed(f"not an {kind} token")
        return claims


def user_view(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "isAdmin": bool(user.is_admin),
        "createdAt": format_timestamp(user.created_at) if user.created_at else None,
    }


def agent_signature(secret: str, agent_id: str, timestamp_ms: int | str, nonce: str) -> str:
    message = f"{agent_id}:{timestamp_ms}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def verify_agent_handshake(
    auth: Any, *, store: Store, redis: Redis, settings: Settings
) -> str:
    """Check an agent's handshake; returns its id or raises AUTH_001 (never says why in
    more detail than a client needs, and never echoes the secret)."""
    if not isinstance(auth, dict):
        raise AuthenticationFailed("missing agent credentials")
    agent_id, timestamp, nonce, signature = (
        auth.get("agentId"),
        auth.get("timestamp"),
        auth.get("nonce"),
        auth.get("signature"),
    )
    if not (isinstance(agent_id, str) and agent_id and len(agent_id) <= 128):
        raise AuthenticationFailed("missing agentId")
    if not (isinstance(nonce, str) and 8 <= len(nonce) <= 128):
        raise AuthenticationFailed("missing or malformed nonce")
    if not isinstance(signature, str) or isinstance(timestamp, bool):
        raise AuthenticationFailed("missing signature")
    try:
        timestamp_ms = int(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AuthenticationFailed("malformed timestamp") from None
    skew_s = abs(time.time() - timestamp_ms / 1000)
    if skew_s > settings.handshake_max_skew_s:
        raise AuthenticationFailed("timestamp outside the allowed clock skew")
    secret = await store.agent_secret(agent_id)
    if secret is None:
        raise AuthenticationFailed("unknown or revoked agent")
    expected = agent_signature(secret, agent_id, str(timestamp), nonce)
    if not hmac.compare_digest(expected, signature):
        raise AuthenticationFailed("bad signature")
    # Only a correctly signed nonce is recorded, so nobody can burn an agent's nonces.
    window_s = int(settings.handshake_max_skew_s * 2) + 1
    fresh = await redis.set(keys.nonce(agent_id, nonce), "1", nx=True, ex=window_s)
    if not fresh:
        raise AuthenticationFailed("nonce already used")
    return agent_id
