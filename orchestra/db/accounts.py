"""Accounts and credentials in the SQL store: users, refresh tokens, agents, AI configs."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import false, update
from sqlmodel import col, select

from orchestra.db import agent_secrets
from orchestra.db.base import StoreBase, check_fields, guarded
from orchestra.db.models import Agent, AIConfig, RefreshToken, User, new_id, utcnow
from orchestra.db.passwords import hash_password, needs_rehash, verify_password

__all__ = ["AccountStore"]

log = logging.getLogger(__name__)


class AccountStore(StoreBase):
    """The store's methods for who may log in or connect, and with what."""

    # A hash of nothing in particular, made on first need: checked against when the username is
    # unknown, so that a miss costs as long as a wrong password.
    _dummy_hash: str | None = None

    # ---- users -----------------------------------------------------------------------------

    @guarded
    async def create_user(self, username: str, password: str, *, is_admin: bool = False) -> User:
        """A new user; `DuplicateError` when the username is taken."""
        password_hash = await asyncio.to_thread(hash_password, password)
        return await self._add(
            User(username=username, password_hash=password_hash, is_admin=is_admin)
        )

    @guarded
    async def authenticate(self, username: str, password: str) -> User | None:
        """The user whose name and password these are, unless unknown, wrong or disabled."""
        user = await self.get_user_by_name(username)
        if user is None:
            # Spend the same time as a real check, so timing does not tell which names exist.
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))
            await asyncio.to_thread(verify_password, password, self._dummy_hash)
            return None
        if not await asyncio.to_thread(verify_password, password, user.password_hash):
            return None
        if user.disabled:
            return None
        if needs_rehash(user.password_hash):
            await self._rehash(user, password)
        return user

    async def _rehash(self, user: User, password: str) -> None:
        """Replace an old hash (scrypt, or argon2 of other parameters) now that the password
        is known; only if the hash is still the one checked, so a password changed meanwhile
        stays changed."""
        fresh = await asyncio.to_thread(hash_password, password)
        where = [col(User.id) == user.id, col(User.password_hash) == user.password_hash]
        if await self._set(User, where, password_hash=fresh):
            user.password_hash = fresh

    @guarded
    async def get_user(self, user_id: str) -> User | None:
        return await self._get(User, user_id)

    @guarded
    async def get_user_by_name(self, username: str) -> User | None:
        found = await self._list(User, col(User.username) == username)
        return found[0] if found else None

    @guarded
    async def list_users(self) -> list[User]:
        return await self._list(User, order=[col(User.created_at), col(User.username)])

    @guarded
    async def update_user(
        self,
        user_id: str,
        *,
        password: str | None = None,
        is_admin: bool | None = None,
        disabled: bool | None = None,
    ) -> User | None:
        """Change a user; fields left None stay as they are. None when the user is unknown."""
        fields: dict[str, Any] = {}
        if password is not None:
            fields["password_hash"] = await asyncio.to_thread(hash_password, password)
        if is_admin is not None:
            fields["is_admin"] = is_admin
        if disabled is not None:
            fields["disabled"] = disabled
        return await self._update(User, user_id, fields)

    @guarded
    async def delete_user(self, user_id: str) -> bool:
        """Delete a user and their refresh tokens; their agents, sessions and tasks stay."""
        async with self._session() as s:
            await s.exec(sa_delete(RefreshToken).where(col(RefreshToken.user_id) == user_id))
            result = await s.exec(sa_delete(User).where(col(User.id) == user_id))
            await s.commit()
            return result.rowcount > 0

    # ---- refresh tokens --------------------------------------------------------------------

    @guarded
    async def add_refresh_token(
        self, jti: str, user_id: str, expires_at: datetime, *, family: str | None = None
    ) -> None:
        await self._add(
            RefreshToken(jti=jti, user_id=user_id, expires_at=expires_at, family=family)
        )

    @guarded
    async def refresh_token_used(self, jti: str) -> bool:
        """Whether a refresh token exists and was used (or revoked) already."""
        record = await self._get(RefreshToken, jti)
        return record is not None and record.used

    @guarded
    async def revoke_family_tokens(self, family: str) -> int:
        """Make every refresh token of one sign-in unusable; returns how many were live."""
        where = [col(RefreshToken.family) == family, col(RefreshToken.used) == false()]
        return await self._set(RefreshToken, where, used=True)

    @guarded
    async def use_refresh_token(self, jti: str) -> str | None:
        """Mark a token used and give its user id, if it exists, is unused and unexpired.

        One conditional UPDATE decides: of two concurrent uses, only one changes a row.
        """
        async with self._session() as s:
            result = await s.exec(
                update(RefreshToken)
                .where(
                    col(RefreshToken.jti) == jti,
                    col(RefreshToken.used) == false(),
                    col(RefreshToken.expires_at) > utcnow(),
                )
                .values(used=True)
            )
            if result.rowcount != 1:
                await s.rollback()
                return None
            user_id = (
                await s.exec(select(RefreshToken.user_id).where(col(RefreshToken.jti) == jti))
            ).one()
            await s.commit()
            return user_id

    @guarded
    async def revoke_user_tokens(self, user_id: str) -> int:
        """Make every refresh token of a user unusable; returns how many were live."""
        where = [col(RefreshToken.user_id) == user_id, col(RefreshToken.used) == false()]
        return await self._set(RefreshToken, where, used=True)

    @guarded
    async def purge_refresh_tokens(self, *, before: datetime | None = None) -> int:
        """Delete tokens that expired before ``before`` (default: now); for the cleanup job."""
        cutoff = before or utcnow()
        return await self._delete(RefreshToken, col(RefreshToken.expires_at) < cutoff)

    # ---- agents ----------------------------------------------------------------------------

    @guarded
    async def create_agent(
        self, name: str, owner_id: str, capabilities: Iterable[str] = ()
    ) -> tuple[Agent, str]:
        """A new agent and its secret (shown to the user this once; kept encrypted)."""
        secret = secrets.token_urlsafe(32)
        agent_id = new_id()
        agent = Agent(
            id=agent_id,
            name=name,
            owner_id=owner_id,
            secret=agent_secrets.seal(self._secrets_key, agent_id, secret),
            capabilities=list(capabilities),
        )
        return await self._add(agent), secret

    @guarded
    async def get_agent(self, agent_id: str) -> Agent | None:
        return await self._get(Agent, agent_id)

    @guarded
    async def list_agents(self, owner_id: str | None = None) -> list[Agent]:
        """The agents of ``owner_id``, or all of them when it is None."""
        where = [] if owner_id is None else [col(Agent.owner_id) == owner_id]
        return await self._list(Agent, *where, order=[col(Agent.created_at), col(Agent.id)])

    @guarded
    async def agent_secret(self, agent_id: str) -> str | None:
        """The secret an agent signs with, decrypted; None when it is unknown or revoked."""
        async with self._session() as s:
            stmt = select(Agent.secret).where(
                col(Agent.id) == agent_id, col(Agent.revoked) == false()
            )
            stored = (await s.exec(stmt)).first()
        return None if stored is None else agent_secrets.unseal(self._secrets_key, agent_id, stored)

    @guarded
    async def revoke_agent(self, agent_id: str) -> bool:
        """Revoke an agent for good; False when it is unknown."""
        return await self._set(Agent, [col(Agent.id) == agent_id], revoked=True) > 0

    @guarded
    async def rotate_agent_secret(self, agent_id: str) -> str | None:
        """Give an agent a new secret (the old one stops working); None if unknown or revoked."""
        secret = secrets.token_urlsafe(32)
        sealed = agent_secrets.seal(self._secrets_key, agent_id, secret)
        where = [col(Agent.id) == agent_id, col(Agent.revoked) == false()]
        return secret if await self._set(Agent, where, secret=sealed) else None

    async def open(self) -> None:
        """Open the store (see `StoreBase.open`); with the secrets key, also encrypt the agent
        secrets an earlier version kept in plain text."""
        if self._engine is not None:
            return
        await super().open()
        if self._secrets_key is None:
            return
        try:
            await self._encrypt_plain_agent_secrets()
        except BaseException:
            await self.close()
            raise

    @guarded
    async def _encrypt_plain_agent_secrets(self) -> int:
        """Encrypt in place every agent secret still kept in plain text; how many it did.

        Each row is changed only if it still holds the plain secret read, so gateways opening
        the store at once never encrypt twice, and running it again changes nothing.
        """
        plain = ~col(Agent.secret).startswith(agent_secrets.ENCRYPTED_PREFIX)
        async with self._session() as s:
            rows = (await s.exec(select(Agent.id, Agent.secret).where(plain))).all()
        done = 0
        for agent_id, secret in rows:
            sealed = agent_secrets.seal(self._secrets_key, agent_id, secret)
            where = [col(Agent.id) == agent_id, col(Agent.secret) == secret]
            done += await self._set(Agent, where, secret=sealed)
        if done:
            log.info("encrypted the secrets of %d agent(s) kept in plain text", done)
        return done

    @guarded
    async def touch_agent(
        self,
        agent_id: str,
        *,
        version: str | None = None,
        capabilities: Iterable[str] | None = None,
    ) -> bool:
        """Record that an agent was seen now, with its version and capabilities when given."""
        values: dict[str, Any] = {"last_seen_at": utcnow()}
        if version is not None:
            values["version"] = version
        if capabilities is not None:
            values["capabilities"] = list(capabilities)
        return await self._set(Agent, [col(Agent.id) == agent_id], **values) > 0

    # ---- AI configs ------------------------------------------------------------------------

    @guarded
    async def create_ai_config(
        self,
        owner_id: str,
        name: str,
        tool: str,
        model: str | None = None,
        api_key_encrypted: str | None = None,
        settings: dict[str, Any] | None = None,
        *,
        config_id: str | None = None,
    ) -> AIConfig:
        """A new AI config; give ``config_id`` when its key was encrypted for that id."""
        now = utcnow()
        config = AIConfig(
            id=config_id or new_id(),
            owner_id=owner_id,
            name=name,
            tool=tool,
            model=model,
            api_key_encrypted=api_key_encrypted,
            settings=dict(settings or {}),
            created_at=now,
            updated_at=now,
        )
        return await self._add(config)

    @guarded
    async def get_ai_config(self, config_id: str) -> AIConfig | None:
        return await self._get(AIConfig, config_id)

    @guarded
    async def list_ai_configs(self, owner_id: str) -> list[AIConfig]:
        return await self._list(
            AIConfig,
            col(AIConfig.owner_id) == owner_id,
            order=[col(AIConfig.created_at), col(AIConfig.id)],
        )

    @guarded
    async def update_ai_config(self, config_id: str, **fields: Any) -> AIConfig | None:
        """Change the given fields (not ``id``/``owner_id``); None when unknown."""
        check_fields(AIConfig, fields, frozen=("id", "owner_id", "created_at"))
        return await self._update(AIConfig, config_id, {**fields, "updated_at": utcnow()})

    @guarded
    async def delete_ai_config(self, config_id: str) -> bool:
        return await self._delete(AIConfig, col(AIConfig.id) == config_id) > 0
