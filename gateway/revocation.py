"""Credentials taken back stop working at once, on every node (DESIGN.md §6).

Two kinds of revocation, both kept in Redis and announced on one pub/sub channel:

- **Versions.** Every user and every agent has a credential version (a Redis hash, 0 when
  absent). A user's tokens carry the version they were issued under (`ver`); an agent's
  socket remembers the version current when it signed in. Deleting, disabling or demoting
  a user, a password change, revoking an agent or rotating its secret raise the version:
  everything issued under an older one is refused from then on.
- **Token families.** The tokens of one sign-in (its refresh tokens, and every access token
  issued from them) share a family id (`fam`). Logging out, or a refresh token used twice
  (stolen, PROTOCOL.md §6), revokes the family: a sorted set of revoked families, each
  until the last access token of it has expired anyway.

Every node keeps what it has seen in memory, so a check on the hot path (each REST request,
each socket event) costs no round trip: versions are cached (only raised, never lowered, so
a slow read cannot undo a revocation that overtook it), the revoked families are loaded
whole. The channel's messages update the caches and let the namespaces disconnect the
sockets concerned, within milliseconds. When the subscription is lost, the caches are
dropped on reconnecting and every live socket is checked again, since messages sent
meanwhile are gone.

A subject Redis has no version for is looked up in SQL once: a user that no longer exists
or is disabled, an agent that is unknown or revoked, is revoked whatever Redis says (a
Redis that lost its data revives no deleted account).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from gateway.pubsub import Channel, Subscription
from orchestra import keys
from orchestra.aio import cancel_and_wait
from orchestra.db import Store
from orchestra.errors import AuthenticationFailed

log = logging.getLogger(__name__)

Kind = Literal["user", "agent", "family"]
#: the version of a subject that is gone for good: above any token's
REVOKED = 2**62


@dataclass(frozen=True, slots=True)
class Revocation:
    """One credential taken back: a user's or agent's version raised, or a family ended."""

    kind: Kind
    subject: str
    version: int = 0


Listener = Callable[[Revocation], Awaitable[None]]
Recheck = Callable[[], Awaitable[None]]


class Credentials:
    """This node's view of which credentials still hold, and the way to take them back."""

    def __init__(self, redis: Redis, store: Store, family_ttl_s: float) -> None:
        self.redis = redis
        self.store = store
        self.family_ttl_s = family_ttl_s
        self._versions: dict[str, int] = {}
        self._families: dict[str, float] = {}  # revoked family -> until (epoch seconds)
        self._listeners: list[Listener] = []
        self._rechecks: list[Recheck] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # PUBLISH/SUBSCRIBE, or SPUBLISH/SSUBSCRIBE on a Redis >= 7 cluster (`gateway/pubsub.py`).
        self._channel = Channel(redis, keys.revocations_channel())

    def on_revoked(self, listener: Listener, recheck: Recheck) -> None:
        """`listener` hears each revocation; `recheck` runs after messages may have been
        lost (it checks every live socket again)."""
        self._listeners.append(listener)
        self._rechecks.append(recheck)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="credential-revocations")
        await asyncio.wait_for(self._subscribed.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    # -- checks ----------------------------------------------------------------------------

    async def version(self, kind: Literal["user", "agent"], subject: str) -> int:
        """The subject's current version (cached; one read on first need)."""
        key = f"{kind}:{subject}"
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        raw = await self.redis.hget(keys.credential_versions(), key)
        if raw is not None:
            return self._raise_to(key, int(raw))
        if await self._exists(kind, subject):
            return self._raise_to(key, 0)
        # Not cached: an account enabled again gets a version in Redis, and then counts.
        return REVOKED

    async def check_user(self, user_id: str, version: int, family: str) -> None:
        """AUTH_001 unless a user's token of `version` and `family` still holds."""
        if family and self._families.get(family, 0.0) > time.time():
            raise AuthenticationFailed("signed out: the token was revoked")
        if version < await self.version("user", user_id):
            raise AuthenticationFailed("the token was revoked")

    async def check_agent(self, agent_id: str, version: int) -> None:
        """AUTH_001 unless an agent signed in under `version` may still speak."""
        if version < await self.version("agent", agent_id):
            raise AuthenticationFailed("the agent was revoked or its secret rotated")

    # -- revoking --------------------------------------------------------------------------

    async def revoke_user(self, user_id: str) -> None:
        """Every token of the user stops working, and their sockets close, on every node."""
        await self._bump("user", user_id)

    async def revoke_agent(self, agent_id: str) -> None:
        """The agent's open sockets close on every node; signing in again needs the secret
        that is current then (none, once revoked)."""
        await self._bump("agent", agent_id)

    async def revoke_family(self, family: str) -> None:
        """The tokens of one sign-in stop working, and its sockets close, on every node."""
        until = time.time() + self.family_ttl_s
        message = json.dumps({"kind": "family", "subject": family, "until": until})
        # One key, one slot: a MULTI a cluster takes. The PUBLISH follows it (a cluster
        # refuses it inside a MULTI), written first, then announced, as `_bump` does: a node
        # subscribed all along hears it; one that was not (re-subscribing after a failover)
        # loads the families and rechecks every socket once subscribed again, after the
        # write, so it finds the family. Announced first, a node could load the set just
        # before the write and miss both.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.revoked_families(), {family: until})
            pipe.zremrangebyscore(keys.revoked_families(), "-inf", time.time())
            await pipe.execute()
        self._families[family] = until
        await self._channel.publish(message)
        await self._tell(Revocation("family", family))

    async def _bump(self, kind: Literal["user", "agent"], subject: str) -> None:
        key = f"{kind}:{subject}"
        version = self._raise_to(
            key, int(await self.redis.hincrby(keys.credential_versions(), key, 1))
        )
        message = json.dumps({"kind": kind, "subject": subject, "version": version})
        await self._channel.publish(message)
        await self._tell(Revocation(kind, subject, version))

    # -- keeping up with other nodes -------------------------------------------------------

    async def _listen(self) -> None:
        delay_s = 0.1
        first = True
        while True:
            subscription: Subscription | None = None
            try:
                # A new subscription reads a cluster's slot map afresh: after a failover it
                # lands on the channel's new master.
                subscription = await self._channel.subscribe()
                # Whatever was announced while we were not listening is lost: start afresh.
                self._versions.clear()
                await self._load_families()
                self._subscribed.set()
                if not first:
                    log.info("revocations: subscribed again; checking every live socket")
                    for recheck in self._rechecks:
                        await recheck()
                first, delay_s = False, 0.1
                while True:
                    data = await subscription.get(timeout_s=5.0)
                    if data is not None:
                        await self._receive(data)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("revocations: subscription lost (%s); retrying", type(exc).__name__)
            finally:
                if subscription is not None:
                    await subscription.close()
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.5)  # a failover's promotion is found within 0.5 s

    async def _receive(self, data: object) -> None:
        try:
            message: dict[str, Any] = json.loads(data) if isinstance(data, str | bytes) else {}
            kind, subject = message["kind"], str(message["subject"])
            if kind == "family":
                self._families[subject] = float(message.get("until", 0))
                revocation = Revocation("family", subject)
            elif kind in ("user", "agent"):
                version = self._raise_to(f"{kind}:{subject}", int(message.get("version", 0)))
                revocation = Revocation(kind, subject, version)
            else:
                raise ValueError(kind)
        except (ValueError, TypeError, KeyError):
            log.warning("revocations: ignored a malformed message")
            return
        await self._tell(revocation)

    async def _load_families(self) -> None:
        now = time.time()
        found = await self.redis.zrangebyscore(
            keys.revoked_families(), now, "+inf", withscores=True
        )
        self._families = {str(item[0]): float(item[1]) for item in found}

    async def _tell(self, revocation: Revocation) -> None:
        for listener in self._listeners:
            try:
                await listener(revocation)
            except Exception:
                log.exception("revocations: a listener failed")

    def _raise_to(self, key: str, version: int) -> int:
        version = max(version, self._versions.get(key, version))
        self._versions[key] = version
        return version

    async def _exists(self, kind: Literal["user", "agent"], subject: str) -> bool:
        if kind == "user":
            user = await self.store.get_user(subject)
            return user is not None and not user.disabled
        agent = await self.store.get_agent(subject)
        return agent is not None and not agent.revoked
