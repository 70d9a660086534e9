"""python-socketio's Redis manager on a Redis Cluster (docs/redis-cluster.md §4.3).

python-socketio 5.18.1's `AsyncRedisManager` builds its client with `Redis.from_url` and
refuses a ``redis+cluster://`` URL (upstream's answer, python-socketio issue #1172, is a
custom manager). `ClusterRedisManager` is that manager: the metered `RedisManager`
(`gateway/sockets/metered.py`, whose local deliveries are counted) with the four methods
that touch Redis replaced, running on the client of `orchestra.redis_client.connect`:

- `_redis_connect`: takes that client (given, or made from the URL once);
- `_publish`: SPUBLISH on a cluster whose masters all run Redis >= 7, else PUBLISH
  (`gateway.pubsub.Channel`);
- `_redis_listen_with_retries` and `_listen`: SSUBSCRIBE (or SUBSCRIBE), and a new
  subscription whenever it is lost, e.g. when the master holding the channel's slot dies:
  the new one reads the slot map afresh and lands on the promoted replica.

Those methods are private in python-socketio (and `# pragma: no cover` there):
pyproject.toml pins python-socketio to the range this was tested with.

What pub/sub drops while a subscription is being replaced is lost, as on a single Redis
restart: room notices are lossy anyway, session events go by streams, and commands come
again from their outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis

from gateway.pubsub import Channel
from gateway.sockets.metered import RedisManager
from orchestra.aio import cancel_and_wait
from orchestra.redis_client import connect as connect_redis

log = logging.getLogger(__name__)

#: pauses between tries to subscribe again: from the first, doubling up to the cap
RETRY_FIRST_S = 0.05
RETRY_CAP_S = 0.5
#: how long one read of the subscription waits before it looks at its health
READ_TIMEOUT_S = 5.0


class ClusterRedisManager(RedisManager):
    """The socket.io client manager of a gateway on a Redis Cluster (see module doc)."""

    name = "orchestra-redis-cluster"

    def __init__(
        self,
        url: str,
        channel: str = "socketio",
        *,
        redis: Redis | None = None,
        connect: Callable[[str], Redis] = connect_redis,
        sharded: bool | None = None,
        write_only: bool = False,
        logger: Any = None,
        json: Any = None,
    ) -> None:
        """`redis`: a client to share (the node's); else one is made from `url` by
        `connect`. `sharded`: None to decide by the masters' Redis version, True or
        False to force SPUBLISH/SSUBSCRIBE or PUBLISH/SUBSCRIBE."""
        super().__init__(url, channel=channel, write_only=write_only, logger=logger, json=json)
        self.redis: Redis | None = redis
        self._connect = connect
        self._sharded = sharded
        self._channel: Channel | None = None
        #: times the listener subscribed (1 once started, +1 per re-subscription)
        self.subscriptions = 0
        #: how long the last re-subscription took, from the loss to the new confirmation
        self.resubscribed_in_s: float | None = None

    async def stop(self) -> None:
        """Stop listening (python-socketio has no way to): before the client it listens
        on is closed, which it would otherwise open again to subscribe anew."""
        listener = getattr(self, "thread", None)  # started with the server's first socket
        if isinstance(listener, asyncio.Task):
            await cancel_and_wait(listener)

    def _redis_connect(self) -> None:
        if self.redis is None:
            self.redis = self._connect(self.redis_url)
        if self._channel is None:
            self._channel = Channel(self.redis, self.channel, sharded=self._sharded)
        self.connected = True

    def _channel_now(self) -> Channel:
        if self._channel is None:
            self._redis_connect()
        assert self._channel is not None
        return self._channel

    async def _publish(self, data: Any) -> Any:
        # Two tries, as upstream; the cluster client itself keeps trying through a
        # failover (`FailoverCluster`), so there is no client to rebuild in between.
        message = self.json.dumps(data)
        for tries_left in (1, 0):
            try:
                return await self._channel_now().publish(message)
            except Exception as exc:  # as upstream: an emit does not fail for Redis
                if tries_left:
                    log.warning("socket.io: cannot publish (%s); retrying", _name(exc))
                else:
                    log.error("socket.io: cannot publish (%s); giving up", _name(exc))
        return None

    async def _redis_listen_with_retries(self) -> AsyncIterator[str | bytes]:
        """The data of each message on the channel, subscribing again (and again) when
        the subscription is lost."""
        pause_s = RETRY_FIRST_S
        lost_at: float | None = None
        while True:
            subscription = None
            try:
                subscription = await self._channel_now().subscribe()
                self.subscriptions += 1
                if lost_at is not None:
                    self.resubscribed_in_s = time.monotonic() - lost_at
                    log.info(
                        "socket.io: subscribed again to %s after %.2f s (messages published "
                        "meanwhile are lost)",
                        self.channel,
                        self.resubscribed_in_s,
                    )
                lost_at, pause_s = None, RETRY_FIRST_S
                while True:
                    data = await subscription.get(READ_TIMEOUT_S)
                    if data is not None:
                        yield data
            except Exception as exc:  # RedisClusterException is no RedisError
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning(
                        "socket.io: subscription to %s lost (%s); subscribing again",
                        self.channel,
                        _name(exc),
                    )
            finally:
                if subscription is not None:
                    await subscription.close()
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, RETRY_CAP_S)

    async def _listen(self) -> AsyncIterator[str | bytes]:
        async for data in self._redis_listen_with_retries():
            yield data


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
