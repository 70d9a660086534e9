"""The one factory for Redis clients, single Redis or Redis Cluster, and what differs.

`ORCHESTRA_REDIS_URL` carries the kind of Redis in its scheme:

- ``redis://``, ``rediss://``, ``unix://``: one server (`redis.asyncio.Redis`);
- ``redis+cluster://[user:pass@]h1:p1,h2:p2[/?opts]`` and ``rediss+cluster://`` (TLS): a
  Redis Cluster (`redis.asyncio.cluster.RedisCluster`), the listed nodes being where the
  client starts to discover it (any few; all is best).

Both clients ride out an outage: a single server's restart (commands retry with backoff
for about 10 s), a cluster master's failover (a replica serves its slots about 4 s after
the master died with ``cluster-node-timeout 2000``; commands keep trying for
`FAILOVER_BUDGET_S`). A retried command may have run already (its answer was lost):
scripts that must not run twice are idempotent (docs/redis-cluster.md, 4.4).

What differs between the two is kept here: `scan_pages`/`scan_keys` (a cluster scans
every master), `call_replicated` (a write followed by ``WAIT`` on its own connection).
The cluster client itself is in `orchestra.redis_failover`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, PipelineCommand, RedisCluster
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from orchestra import metrics
from orchestra.redis_failover import (
    CLUSTER_SCHEMES,
    FAILOVER_BUDGET_S,
    FIRST_PAUSE_S,
    PAUSE_CAP_S,
    RETRYABLE,
    SOCKET_TIMEOUT_S,
    FailoverCluster,
    FailoverPipeline,
    cluster_nodes,
    connect_cluster,
    give_up,
)

__all__ = [
    "CLUSTER_SCHEMES",
    "FAILOVER_BUDGET_S",
    "FailoverCluster",
    "FailoverPipeline",
    "call_replicated",
    "cluster_nodes",
    "connect",
    "is_cluster",
    "run_script_replicated",
    "scan_keys",
    "scan_pages",
]


def connect(url: str, **options: Any) -> Redis:
    """A client for `url`; `options` override the defaults (e.g. ``socket_timeout``).

    A cluster client is typed as `Redis` (a cast): `RedisCluster` offers the same command
    methods (the same mixins, keyed commands routed by slot), so callers keep their
    annotations; where the two behave differently (scans, pipelines of scripts, pub/sub,
    `connection_pool`) ask `is_cluster`.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        return cast(Redis, connect_cluster(url, **options))
    settings: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 10,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    settings.update(options)
    return Redis.from_url(url, **settings)


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (or a wrapper of one that exposes its
    `nodes_manager`, as `actors/barrier.py`'s guarded client does)."""
    return isinstance(client, (RedisCluster, ClusterPipeline)) or (
        getattr(client, "nodes_manager", None) is not None
    )


def _cluster_of(client: object) -> RedisCluster:
    """The `RedisCluster` behind `client` (itself, or the one a wrapper holds)."""
    if isinstance(client, RedisCluster):
        return client
    inner = getattr(client, "wrapped", None)
    if isinstance(inner, RedisCluster):
        return inner
    raise TypeError(f"not a Redis Cluster client: {client!r}")


# -- scans ------------------------------------------------------------------------------


async def scan_pages(
    client: Redis, pattern: str, count: int = 1000, type_: str | None = None
) -> AsyncIterator[list[str]]:
    """The keys matching `pattern` (of type `type_`, when given), a SCAN reply at a time.

    On a cluster every master is scanned in turn (a replica holds nothing more). As with
    any SCAN, a key present from start to end is found (perhaps twice, and perhaps on
    two masters if its slot moves meanwhile); one written or removed meanwhile may not be.
    """
    if is_cluster(client):
        for node in cast(RedisCluster, client).get_primaries():
            cursor = 0
            while True:
                cursors, found = await cast(Any, client).scan(
                    cursor, match=pattern, count=count, _type=type_, target_nodes=node
                )
                if found:
                    yield [_text(key) for key in found]
                cursor = int(next(iter(cursors.values()))) if cursors else 0
                if cursor == 0:
                    break
        return
    cursor = 0
    while True:
        cursor, found = await client.scan(cursor, match=pattern, count=count, _type=type_)
        if found:
            yield [_text(key) for key in found]
        if int(cursor) == 0:
            break


async def scan_keys(
    client: Redis, pattern: str, count: int = 1000, type_: str | None = None
) -> AsyncIterator[str]:
    """The keys matching `pattern`, one by one (see `scan_pages`)."""
    async for page in scan_pages(client, pattern, count, type_):
        for key in page:
            yield key


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- a write, then WAIT on its connection --------------------------------------------------


async def run_script_replicated(
    client: Redis,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[Any],
    replicas: int,
    timeout_ms: int,
) -> Any:
    """`script(keys, args)`, then ``WAIT replicas timeout_ms`` (see `call_replicated`)."""
    if not keys:
        raise ValueError("a replicated script call needs a key (WAIT follows its slot)")
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    return await call_replicated(client, keys[0], command, replicas, timeout_ms, script=script)


async def call_replicated(
    client: Redis,
    key: str,
    command: tuple[Any, ...],
    replicas: int,
    timeout_ms: int,
    *,
    script: AsyncScript | None = None,
) -> Any:
    """Run `command` (whose keys are in `key`'s slot) and answer its reply once
    `replicas` replicas have the write, or `timeout_ms` passed.

    The command and ``WAIT`` go on one connection, back to back (a non-transactional
    pipeline; on a cluster, to the master of `key`'s slot), so WAIT waits for this write.
    A WAIT that answers fewer replicas (one down, or lagging) is counted
    (`orchestra_redis_wait_timeouts_total`) and the reply returned all the same: the
    write is done, only less safe. With `replicas` 0 this is the plain command.

    An ``EVALSHA`` answered NOSCRIPT (a new master after a failover, a flushed script
    cache) loads `script` and runs again. On a cluster, connection errors, CLUSTERDOWN
    and redirections (the slot moved: the command did not run) are tried again until
    `FAILOVER_BUDGET_S`; as with every retried command, a connection lost after the
    command ran runs it twice.

    A client wrapped by `actors/barrier.py` has its barrier awaited first.
    """
    if replicas <= 0:
        return await _plain(client, command, script)
    if is_cluster(client):
        barrier = getattr(client, "barrier", None)
        if barrier is not None:
            await barrier()
        return await _cluster_replicated(
            _cluster_of(client), key, command, replicas, timeout_ms, script
        )
    for _ in range(2):
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*command)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            reply, acked = await pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError) and script is not None:
            await client.script_load(script.script)
            continue
        return _answer(reply, acked, replicas)
    raise reply  # NOSCRIPT again, right after SCRIPT LOAD


async def _plain(client: Redis, command: tuple[Any, ...], script: AsyncScript | None) -> Any:
    try:
        return await client.execute_command(*command)
    except NoScriptError:
        if script is None:
            raise
        await client.script_load(script.script)
        return await client.execute_command(*command)


def _answer(reply: Any, acked: Any, replicas: int) -> Any:
    if isinstance(reply, Exception):
        raise reply
    if isinstance(acked, Exception) or int(acked) < replicas:
        metrics.REDIS_WAIT_TIMEOUTS.inc()
    return reply


async def _cluster_replicated(
    cluster: RedisCluster,
    key: str,
    command: tuple[Any, ...],
    replicas: int,
    timeout_ms: int,
    script: AsyncScript | None,
) -> Any:
    """Both commands on the slot master's connection, sent by hand: redis-py's cluster
    pipeline would, on a retry, send WAIT elsewhere (it forgets `target_nodes`) and
    resend a script whose first answer was 0 or empty."""
    budget_s = getattr(cluster, "failover_budget_s", FAILOVER_BUDGET_S)
    deadline = time.monotonic() + budget_s
    pause_s = FIRST_PAUSE_S
    reload = False  # the slots map, from the cluster
    failed: str | None = None  # the node to ask last for it
    while True:
        try:
            if reload:
                try:
                    await cluster.nodes_manager.initialize(last_failed_node_name=failed)
                except RedisClusterException as exc:  # no node reachable, or no full map
                    raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
                reload, failed = False, None
            await cluster.initialize()
            node = cluster.get_node_from_key(key)
            if node is None:
                raise SlotNotCoveredError(f"no master serves the slot of {key!r}")
            sent = [PipelineCommand(0, *command), PipelineCommand(1, "WAIT", replicas, timeout_ms)]
            try:
                await node.execute_pipeline(sent)
            except (RedisConnectionError, RedisTimeoutError):
                failed = node.name
                await node.disconnect_free_connections()
                raise
            reply, acked = sent[0].result, sent[1].result
            if isinstance(reply, NoScriptError) and script is not None:
                await node.execute_command("SCRIPT", "LOAD", script.script)
                continue
            if isinstance(reply, (MovedError, AskError, ClusterDownError, TryAgainError)):
                raise reply  # not run: the slot has moved (or is moving), or is down
            return _answer(reply, acked, replicas)
        except Exception as exc:
            if type(exc) not in RETRYABLE and not isinstance(
                exc, (MovedError, AskError, TryAgainError)
            ):
                raise
            reload = not isinstance(exc, TryAgainError)  # read the slot map again
            if time.monotonic() + pause_s > deadline:
                give_up(exc)
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, PAUSE_CAP_S)
