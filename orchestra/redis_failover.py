"""The Redis Cluster client of `orchestra.redis_client.connect`: redis-py's `RedisCluster`
made to ride out a master's failover, and the ``redis+cluster://`` URL.

redis-py 8.1 gives up on a cluster command about 0.3 s after a master was killed (it
retries at once, without backoff), while its replica serves the master's slots about 4 s
later (``cluster-node-timeout 2000``: failure detection, then the election). Here a
command or a non-transactional pipeline is tried again in rounds, with pauses, for
`FAILOVER_BUDGET_S`; a retried command may have run already (its answer was lost):
scripts that must not run twice are idempotent (docs/redis-cluster.md, 4.4).

Its connections (`GuardedConnection`) turn a write on a connection the server just closed
into a `ConnectionError`: redis-py 8.1 lets uvloop's ``RuntimeError`` (closed handler) or
an ``AttributeError`` (writer already cleared) through, which no retry and no loop of ours
catches (redis-py fixed it after 8.1: redis/redis-py#4288).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError
from redis.retry import Retry

__all__ = [
    "CLUSTER_SCHEMES",
    "FAILOVER_BUDGET_S",
    "FIRST_PAUSE_S",
    "PAUSE_CAP_S",
    "RETRYABLE",
    "FailoverCluster",
    "FailoverPipeline",
    "GuardedConnection",
    "GuardedSSLConnection",
    "cluster_nodes",
    "connect_cluster",
    "give_up",
]

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

#: How long a cluster command keeps trying through connection errors, CLUSTERDOWN and
#: uncovered slots: a master's failover (about 4 s with `cluster-node-timeout 2000`, the
#: failure detection plus the election) with room to spare.
FAILOVER_BUDGET_S = 10.0
#: The first pause between two rounds of tries, doubled up to `PAUSE_CAP_S`: a command
#: issued during a failover is answered at most `PAUSE_CAP_S` after the promotion.
FIRST_PAUSE_S = 0.05
PAUSE_CAP_S = 0.5
#: Tries redis-py makes by itself inside one round (`RedisCluster.execute_command`
#: retries at once, re-reading the slots map; a pipeline sleeps 0.25 s first): enough
#: for a stale pooled connection, short of a failover, which our rounds wait out.
_ROUND_RETRIES = 2

# The errors redis-py itself retries on a cluster (by exact type, as it does: a
# MaxConnectionsError or an AuthenticationError is a ConnectionError that no retry mends).
RETRYABLE = RedisCluster.ERRORS_ALLOW_RETRY

#: A server that stops answering (paused, cut off) is given up after this long, and the
#: command tried again (on a cluster, maybe on the replica promoted meanwhile): without it
#: a command would wait on a silent connection for ever. Longer than any blocking read here.
SOCKET_TIMEOUT_S = 10.0


def give_up(exc: Exception) -> NoReturn:
    """Raise `exc`, the last error of a command tried to the end of its budget; a slot
    left without a master as a `ConnectionError` (redis-py's `SlotNotCoveredError` is no
    `RedisError`, which is what our loops catch to try again later)."""
    if isinstance(exc, SlotNotCoveredError):
        raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
    raise exc


class _WriteGuard:
    """A write on a transport that is closed or closing is a `ConnectionError` (the
    server closed the connection), as redis-py answers a failed write otherwise."""

    _writer: asyncio.StreamWriter | None

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise RedisConnectionError("Connection closed by server.")
        try:
            writer.writelines(command)
        except (RuntimeError, AttributeError, TypeError) as exc:
            if writer.transport.is_closing():
                raise RedisConnectionError(f"Connection lost while writing: {exc}") from exc
            raise
        await writer.drain()


class GuardedConnection(_WriteGuard, Connection):
    pass


class GuardedSSLConnection(_WriteGuard, SSLConnection):
    pass


_GUARDED: dict[type[Connection], type[Connection]] = {
    Connection: GuardedConnection,
    SSLConnection: GuardedSSLConnection,
}


async def _in_rounds(
    budget_s: float,
    call: Callable[[], Awaitable[Any]],
    before_again: Callable[[], None] = lambda: None,
) -> Any:
    """`call()`, tried again after a retryable error, pausing 0.05 s, 0.1 s, ... 0.5 s
    between rounds, until `budget_s` after the first try (then its last error)."""
    deadline = time.monotonic() + budget_s
    pause_s = FIRST_PAUSE_S
    while True:
        try:
            return await call()
        except RETRYABLE as exc:
            if type(exc) not in RETRYABLE:
                raise
            if time.monotonic() + pause_s > deadline:
                give_up(exc)
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, PAUSE_CAP_S)
        before_again()


class FailoverCluster(RedisCluster):
    """`RedisCluster` whose commands and pipelines keep trying through a failover.

    redis-py 8.1 retries a failed cluster command at once, `retry`'s backoff unused
    (`RedisCluster.execute_command`), and a pipeline after 0.25 s, both as many times as
    `retry.get_retries()`: all of it over in about 0.3 s when a master was killed, long
    before its replica is promoted. Here each command (or non-transactional pipeline)
    is tried again in rounds, pausing 0.05 s, 0.1 s, ... 0.5 s between them, until
    `failover_budget_s` after its first try. A command sent to nodes named by the
    caller (`target_nodes`) is not tried again: those nodes are what failed.
    """

    failover_budget_s: float = FAILOVER_BUDGET_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # redis-py picks the connection class itself: swap in the guarded one, for the
        # nodes it knows (none is connected yet) and those it will discover (they are
        # made from the same `connection_kwargs`).
        kind = self.connection_kwargs.get("connection_class", Connection)
        guarded = _GUARDED.get(kind, kind)
        self.connection_kwargs["connection_class"] = guarded
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = guarded

    async def _determine_slot(self, command: str, *args: Any) -> int:
        """redis-py's, but the slot of XREAD and XREADGROUP is read off their arguments
        (the keys follow STREAMS, then as many ids): redis-py asks the server for the keys
        of these "movable keys" commands, two COMMAND GETKEYS round trips before every
        read of a session feed or an idle partition."""
        if command.upper() in ("XREAD", "XREADGROUP"):
            words = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
            upper = [w.upper() for w in words]
            if "STREAMS" in upper:
                rest = words[upper.index("STREAMS") + 1 :]
                slots = {self.keyslot(key) for key in rest[: len(rest) // 2]}
                if len(slots) == 1:
                    return slots.pop()
        return await super()._determine_slot(command, *args)

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        """redis-py's, but no node reachable (or none with the whole slot map) is a
        `ConnectionError`, tried again like one, not a `RedisClusterException` (no
        `RedisError`: our loops would not catch it)."""
        try:
            return await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as exc:
            if isinstance(exc, SlotNotCoveredError):
                raise
            raise RedisConnectionError(f"Redis Cluster: {exc}") from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if "target_nodes" in kwargs and not self._is_node_flag(kwargs["target_nodes"]):
            return await super().execute_command(*args, **kwargs)
        command = super().execute_command
        return await _in_rounds(self.failover_budget_s, lambda: command(*args, **kwargs))

    def pipeline(
        self, transaction: bool | None = None, shard_hint: str | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("'shard_hint' is not supported in cluster mode")
        return self.pipeline_class(self, transaction)

    #: The pipelines it makes (set below: `FailoverPipeline`).
    pipeline_class: Callable[..., ClusterPipeline]


class FailoverPipeline(ClusterPipeline):
    """A cluster pipeline whose non-transactional execution is tried again in rounds, as
    `FailoverCluster` does its commands. Like redis-py's own retry inside a round, a
    later round sends only the commands without an answer yet (or with an error). A
    transaction (one slot, MULTI/EXEC) is left to redis-py."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        if self._transaction:
            return await super().execute(raise_on_error, allow_redirections)
        strategy: Any = self._execution_strategy
        queued = list(strategy._command_queue)
        budget_s = getattr(self.cluster_client, "failover_budget_s", FAILOVER_BUDGET_S)
        send = super().execute

        def again() -> None:
            strategy._command_queue = list(queued)

        return cast(
            list[Any],
            await _in_rounds(budget_s, lambda: send(raise_on_error, allow_redirections), again),
        )


FailoverCluster.pipeline_class = FailoverPipeline


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a ``redis+cluster://`` URL, in order (port 6379 when
    none is given)."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ValueError(f"a Redis Cluster URL node has no host: {item!r}")
        found.append((host, int(port) if port else 6379))
    if not found:
        raise ValueError("a Redis Cluster URL names no node: redis+cluster://host:port,...")
    return found


def connect_cluster(url: str, **options: Any) -> FailoverCluster:
    """The client of a ``redis+cluster://`` URL (see `orchestra.redis_client.connect`);
    `options` (``failover_budget_s`` among them) override the URL's and the defaults."""
    parts = urlsplit(url)
    nodes = cluster_nodes(url)
    userinfo = parts.netloc.rpartition("@")[0]
    plain_scheme = CLUSTER_SCHEMES[parts.scheme.lower()]
    # redis-py parses the credentials (unquoted) and the typed query options of a
    # one-host URL; the hosts are ours.
    first = f"[{nodes[0][0]}]" if ":" in nodes[0][0] else nodes[0][0]
    one_host = f"{userinfo}@{first}" if userinfo else first
    parsed: dict[str, Any] = dict(
        parse_url(urlunsplit((plain_scheme, one_host, parts.path, parts.query, "")))
    )
    parsed.pop("host", None)
    parsed.pop("port", None)
    if parsed.pop("db", 0):
        raise ValueError("a Redis Cluster has only database 0: leave the URL's path empty")
    if parsed.pop("connection_class", None) is SSLConnection:
        parsed["ssl"] = True
    budget_s = float(options.pop("failover_budget_s", FAILOVER_BUDGET_S))
    settings: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 10,
        "socket_timeout": SOCKET_TIMEOUT_S,
        # Only its count is used by redis-py 8.1's cluster client (tries within a round).
        "retry": Retry(NoBackoff(), retries=_ROUND_RETRIES),
    }
    settings.update(parsed)
    settings.update(options)
    client = FailoverCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes], **settings
    )
    client.failover_budget_s = budget_s
    return client
