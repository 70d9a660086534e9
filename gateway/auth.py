"""Credentials: users' JWTs and agents' HMAC handshakes (PROTOCOL.md §3, §6)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from redis.asyncio import Redis

from gateway.revocation import Credentials
from orchestra import keys
from orchestra.codec import format_timestamp
from orchestra.db import Store
from orchestra.errors import AuthenticationFailed
from orchestra.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (with their admin flag), and what their token was issued
    under: the user's credential version and the sign-in's token family."""

    user_id: str
    username: str
    is_admin: bool
    expires_at: float
    version: int = 0
    family: str = ""


class Tokens:
    """Issues and checks access and refresh tokens, with revocation (`gateway.revocation`)."""

    def __init__(self, settings: Settings, store: Store, credentials: Credentials) -> None:
        self.settings = settings
        self.store = store
        self.credentials = credentials

    async def issue(self, user: Any, family: str | None = None) -> dict[str, Any]:
        """A new pair of tokens for `user`: of a new sign-in, or of `family` (a refresh)."""
        now = datetime.now(UTC)
        version = await self.credentials.version("user", user.id)
        family = family or secrets.token_hex(16)
        access = jwt.encode(
            {
                "sub": user.id,
                "name": user.username,
                "adm": bool(user.is_admin),
                "typ": "access",
                "ver": version,
                "fam": family,
                "iat": now,
                "exp": now + timedelta(seconds=self.settings.access_token_ttl_s),
            },
            self.settings.jwt_secret,
            algorithm=ALGORITHM,
        )
        jti = secrets.token_hex(16)
        refresh_expires = now + timedelta(seconds=self.settings.refresh_token_ttl_s)
        refresh = jwt.encode(
            {
                "sub": user.id,
                "typ": "refresh",
                "jti": jti,
                "ver": version,
                "fam": family,
                "iat": now,
                "exp": refresh_expires,
            },
            self.settings.jwt_secret,
            algorithm=ALGORITHM,
        )
        await self.store.add_refresh_token(jti, user.id, refresh_expires, family=family)
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": self.settings.access_token_ttl_s,
            "user": user_view(user),
        }

    def verify_access(self, token: Any) -> Principal:
        """The token's caller, if it is a well-formed, unexpired access token of ours (not
        yet checked against revocations: `authenticate` does both)."""
        claims = self._decode(token, "access")
        return Principal(
            user_id=str(claims["sub"]),
            username=str(claims.get("name", "")),
            is_admin=bool(claims.get("adm")),
            expires_at=float(claims["exp"]),
            version=_int_claim(claims.get("ver")),
            family=str(claims.get("fam") or ""),
        )

    async def authenticate(self, token: Any) -> Principal:
        """The caller of an access token that holds now; AUTH_001 otherwise."""
        principal = self.verify_access(token)
        await self.check(principal)
        return principal

    async def check(self, principal: Principal) -> None:
        """AUTH_001 if the principal's token has expired or was revoked since."""
        if principal.expires_at <= time.time():
            raise AuthenticationFailed("access token expired")
        await self.credentials.check_user(principal.user_id, principal.version, principal.family)

    async def refresh(self, token: Any) -> dict[str, Any]:
        """New tokens for a refresh token used once. A second use of one means it was
        copied: the whole sign-in (every token issued from it) is revoked."""
        claims = self._decode(token, "refresh")
        jti, family = str(claims.get("jti", "")), str(claims.get("fam") or "")
        user_id = await self.store.use_refresh_token(jti)
        if user_id is None:
            if family and await self.store.refresh_token_used(jti):
                await self.revoke_family(family)
                raise RefreshTokenReused("refresh token used twice: the sign-in was revoked")
            raise AuthenticationFailed("refresh token already used, revoked or unknown")
        if user_id != claims["sub"]:
            raise AuthenticationFailed("refresh token already used, revoked or unknown")
        await self.credentials.check_user(user_id, _int_claim(claims.get("ver")), family)
        user = await self.store.get_user(user_id)
        if user is None or user.disabled:
            raise AuthenticationFailed("user no longer exists or is disabled")
        return await self.issue(user, family or None)

    async def revoke_family(self, family: str) -> None:
        """End one sign-in: its refresh tokens in SQL, its access tokens and sockets live."""
        await self.store.revoke_family_tokens(family)
        await self.credentials.revoke_family(family)

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
        except (jwt.InvalidTokenError, ValueError, TypeError):  # UnicodeError is a ValueError
            raise AuthenticationFailed("invalid token") from None
        if claims.get("typ") != kind:
            raise AuthenticationFailed(f"not an {kind} token")
        return claims


class RefreshTokenReused(AuthenticationFailed):
    """Raised when a refresh token comes a second time (AUTH_001; audited)."""


def _int_claim(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def user_view(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "isAdmin": bool(user.is_admin),
        "disabled": bool(user.disabled),
        "createdAt": format_timestamp(user.created_at) if user.created_at else None,
    }


_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
# Milliseconds since the epoch, as far as they can be compared with a clock at all.
_MAX_TIMESTAMP_MS = 2**53


def _timestamp_ms(value: Any) -> int:
    """A handshake's `timestamp`: an integer (or its decimal text) of milliseconds."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AuthenticationFailed("malformed timestamp")
    if not 0 <= value <= _MAX_TIMESTAMP_MS:
        raise AuthenticationFailed("timestamp outside the allowed clock skew")
    return value


def agent_signature(secret: str, agent_id: str, timestamp_ms: int | str, nonce: str) -> str:
    message = f"{agent_id}:{timestamp_ms}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def verify_agent_handshake(
    auth: Any, *, store: Store, redis: Redis, settings: Settings, credentials: Credentials
) -> tuple[str, int]:
    """Check an agent's handshake; returns its id and the credential version it signed in
    under, or raises AUTH_001 (never says why in more detail than a client needs, and
    never echoes the secret). Malformed fields are refused before any I/O."""
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
    if not (isinstance(signature, str) and _HEX_SIGNATURE.fullmatch(signature)):
        raise AuthenticationFailed("missing or malformed signature")
    timestamp_ms = _timestamp_ms(timestamp)
    skew_s = abs(time.time() - timestamp_ms / 1000)
    if skew_s > settings.handshake_max_skew_s:
        raise AuthenticationFailed("timestamp outside the allowed clock skew")
    # Read before the secret: a rotation in between leaves this socket with the older
    # version, so it is disconnected rather than kept on a secret that no longer holds.
    version = await credentials.version("agent", agent_id)
    secret = await store.agent_secret(agent_id)
    if secret is None:
        raise AuthenticationFailed("unknown or revoked agent")
    expected = agent_signature(secret, agent_id, str(timestamp), nonce)
    if not hmac.compare_digest(expected, signature):
        raise AuthenticationFailed("bad signature")
    # Only a correctly signed nonce is recorded, so nobody can burn an agent's nonces.
    window_s = int(settings.handshake_max_skew_s * 2) + 1
    # Marked with a token of this handshake: a SET retried after a lost answer (the first
    # one ran: a master's failover, a dropped connection) finds its own mark, not a replay.
    mark = secrets.token_hex(8)
    key = keys.nonce(agent_id, nonce)
    if not await redis.set(key, mark, nx=True, ex=window_s) and await redis.get(key) != mark:
        raise AuthenticationFailed("nonce already used")
    return agent_id, version
