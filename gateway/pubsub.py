"""One pub/sub channel on a single Redis or on a Redis Cluster (docs/redis-cluster.md §4.3).

The gateway has two channels every node listens to: python-socketio's (cross-node emits,
`gateway/sockets/cluster_manager.py`) and the credential revocations
(`gateway/revocation.py`). Both go through `Channel`:

- **Single Redis:** PUBLISH / SUBSCRIBE, as always.
- **Redis Cluster, every master on Redis >= 7:** sharded pub/sub, SPUBLISH / SSUBSCRIBE:
  the shard that owns the channel's slot carries it, instead of the cluster bus copying
  every message to every node. Subscriptions are `ClusterPubSub.ssubscribe`, read by
  `get_sharded_message`.
- **Redis Cluster with an older master:** classic PUBLISH / SUBSCRIBE, which the cluster
  bus broadcasts; the subscription sits on one node (the one redis-py picks by the
  channel's slot).

The choice is made once per `Channel` (once per process), from INFO of the masters: every
node of a deployment must make the same one, so after upgrading a cluster's Redis to 7,
restart the gateways together (a fleet split between the two modes does not hear itself).

A `Subscription` is lost when its connection fails (the master holding the slot died),
when the server takes it back (Redis 7 ends the shard subscriptions of a slot its node no
longer owns, after a failover or a slot migration), or when the connection goes silent
(no answer to a PING within `silent_after_s`). Its reader then raises `SubscriptionLost`
(a `RedisError`); the listener closes it, waits a little and opens a new one, which reads
the cluster's slot map afresh first, so it lands on the promoted replica. Messages
published in between are gone: both listeners say what they do about that.
"""

from __future__ import annotations

import time
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import RedisError

from orchestra.redis_client import is_cluster

#: the first Redis with sharded pub/sub (SPUBLISH, SSUBSCRIBE)
SHARDED_SINCE = (7, 0)
#: how long `Subscription.open` waits for the server to confirm the subscription
CONFIRM_TIMEOUT_S = 10.0
#: a subscription that heard nothing for this long is pinged; one that then stays
#: silent as long again is lost (a master that hangs without closing its connections)
SILENT_AFTER_S = 5.0


class SubscriptionLost(RedisError):
    """The subscription no longer delivers: open a new one."""


async def sharded_pubsub(redis: Redis) -> bool:
    """True when `redis` is a cluster whose masters all run Redis >= 7."""
    if not is_cluster(redis):
        return False
    cluster = cast(RedisCluster, redis)
    infos: Any = await cluster.info("server", target_nodes=RedisCluster.PRIMARIES)
    # One node answers with its INFO; several with {node name: INFO}.
    per_node = infos.values() if "redis_version" not in infos else [infos]
    versions = [_version(str(info.get("redis_version", "0"))) for info in per_node]
    return bool(versions) and min(versions) >= SHARDED_SINCE


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


class Channel:
    """A channel name on one Redis client, and how it publishes and subscribes there."""

    def __init__(self, redis: Redis, name: str, *, sharded: bool | None = None) -> None:
        """`sharded`: None finds out (`sharded_pubsub`) on first need; True or False
        forces the mode (tests; True needs a cluster)."""
        self.redis = redis
        self.name = name
        self._sharded = sharded

    async def sharded(self) -> bool:
        if self._sharded is None:
            self._sharded = await sharded_pubsub(self.redis)
        return self._sharded

    async def publish(self, message: str | bytes) -> int:
        """Publish `message`; the number of subscribers that got it (on a cluster in
        classic mode, those of the node that took the PUBLISH)."""
        if await self.sharded():
            return int(await self.redis.spublish(self.name, message))
        return int(await self.redis.publish(self.name, message))

    async def subscribe(self, *, silent_after_s: float = SILENT_AFTER_S) -> Subscription:
        """A subscription, confirmed by the server (a message published after this
        returns is delivered to it)."""
        subscription = Subscription(self, await self.sharded(), silent_after_s)
        try:
            await subscription.open()
        except BaseException:
            await subscription.close()
            raise
        return subscription


class Subscription:
    """One live subscription to a `Channel`: read it with `get`, then `close` it."""

    def __init__(self, channel: Channel, sharded: bool, silent_after_s: float) -> None:
        self.channel = channel
        self.sharded = sharded
        self.silent_after_s = silent_after_s
        self._pubsub: PubSub | None = None
        self._heard = time.monotonic()
        self._pinged: float | None = None

    async def open(self) -> None:
        redis = self.channel.redis
        if is_cluster(redis):
            # The slot map may be from before a failover: the channel's slot may have a
            # new master (or be about to), and the old one may be dead.
            await cast(RedisCluster, redis).nodes_manager.initialize()
        pubsub = redis.pubsub()
        self._pubsub = pubsub
        if self.sharded:
            await pubsub.ssubscribe(self.channel.name)
        else:
            await pubsub.subscribe(self.channel.name)
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while True:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise SubscriptionLost(
                    f"no confirmation of the subscription to {self.channel.name}"
                )
            message = await self._next(min(left_s, 1.0))
            if message is not None and _kind(message) in ("subscribe", "ssubscribe"):
                break
        self._heard = time.monotonic()

    async def get(self, timeout_s: float) -> str | bytes | None:
        """The data of the next message on the channel, or None after `timeout_s` without
        one; raises `SubscriptionLost` (or another `RedisError`, or `OSError`) once the
        subscription no longer delivers."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            await self._check_silence(now)
            # Wait no longer than the next look at the subscription's health.
            since = self._heard if self._pinged is None else self._pinged
            wait_s = min(deadline - now, since + self.silent_after_s - now)
            message = await self._next(max(wait_s, 0.01))
            if message is not None:
                self._heard, self._pinged = time.monotonic(), None
                kind = _kind(message)
                channel = _text(message.get("channel"))
                if kind in ("message", "smessage") and channel == self.channel.name:
                    data = message.get("data")
                    if isinstance(data, str | bytes):
                        return data
                elif kind in ("unsubscribe", "sunsubscribe"):
                    # Not asked for: the server ended it (its node gave the slot away), or
                    # redis-py moved it to the slot's new owner. Either way, start afresh.
                    raise SubscriptionLost(
                        f"the server ended the subscription to {self.channel.name}"
                    )
                # else a PONG, or a confirmation
            if time.monotonic() >= deadline:
                return None

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        try:
            await pubsub.aclose()
        except Exception:  # closing a connection that is already gone
            pass

    async def _next(self, timeout_s: float) -> dict[str, Any] | None:
        pubsub = self._pubsub
        if pubsub is None:
            raise SubscriptionLost("closed")
        if self.sharded:
            cluster_pubsub = cast(ClusterPubSub, pubsub)
            if not cluster_pubsub.node_pubsub_mapping:
                # No node connection left (redis-py dropped a dead one): nothing to read.
                raise SubscriptionLost("no connection to the channel's shard")
            return cast(
                "dict[str, Any] | None",
                await cluster_pubsub.get_sharded_message(timeout=timeout_s),
            )
        return cast("dict[str, Any] | None", await pubsub.get_message(timeout=timeout_s))

    async def _check_silence(self, now: float) -> None:
        if self._pinged is not None:
            if now - self._pinged >= self.silent_after_s:
                raise SubscriptionLost(f"no answer to a PING in {self.silent_after_s:g} s")
            return
        if now - self._heard >= self.silent_after_s and self._pubsub is not None:
            self._pinged = now
            if self.sharded:
                for node_pubsub in list(
                    cast(ClusterPubSub, self._pubsub).node_pubsub_mapping.values()
                ):
                    await node_pubsub.ping()
            else:
                await self._pubsub.ping()


def _kind(message: dict[str, Any]) -> str:
    return _text(message.get("type"))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


__all__ = ["Channel", "Subscription", "SubscriptionLost", "sharded_pubsub"]
