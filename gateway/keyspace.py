"""Which key layout the data in Redis is in, checked once when a gateway node starts.

Layout 2 (`orchestra.keys`, docs/redis-cluster.md §2) names keys differently from
layout 1, and places a task in its session's partition where layout 1 placed it by its
own address: a node of one layout cannot see the other's sessions, tasks, queued work or
agents' outboxes, and nodes of both running together would break one-turn-at-a-time.
So Redis carries a mark, `orch:keyspace` = `keys.LAYOUT`, and beside it the partition
count its keys were placed with (`orch:keyspace:partitions`: changing the count moves
every session's keys too). A node starts only when both match its own:

- no mark and no data of layout 1: a fresh Redis, marked now (set-if-absent, so nodes
  starting together agree: the first count written wins and the others compare to it);
- no mark but keys of layout 1, another mark (`migrating`: a migration was interrupted),
  or another partition count: the node refuses to start and says to run
  `orchestra redis migrate` (`gateway/migrate.py`), which moves the data, stop-the-world.
"""

from __future__ import annotations

from redis.asyncio import Redis

from orchestra import keys
from orchestra.redis_client import connect, scan_keys
from orchestra.settings import Settings, SettingsError

#: Keys only layout 1 wrote (`git show 6c5b0ec:orchestra/keys.py`), as SCAN patterns:
#: session and agent keys with their own hash tags, untagged actor state, the partition
#: mailboxes, leases (with fences and release marks), timers and dispatch queues.
LAYOUT_1_PATTERNS = (
    "orch:{s:*",
    "orch:{a:*",
    "orch:actor:*",
    "orch:mbox:*",
    "orch:lease:*",
    "orch:timers:*",
    "orch:queue:*",
)
#: Layout 1's name of the online agents' set. (Keys both layouts name alike, such as
#: `orch:tasks` or `orch:nodes`, prove nothing: an actor system run outside a gateway
#: node writes them unmarked, while every Redis a layout-1 node ran on keeps its
#: mailboxes and fence counters, which the patterns find.)
LAYOUT_1_KEYS = ("orch:agents:online",)
MIGRATING = "migrating"
_SCAN_COUNT = 1000


class LayoutMismatch(SettingsError):
    """Redis holds data of another key layout or partition count: the node must not start.
    A settings error: the command prints its one line and exits with status 2."""


def partitions_key() -> str:
    """The partition count the keys of this Redis were placed with (beside the mark)."""
    return f"{keys.keyspace()}:partitions"


async def layout_1_key(redis: Redis) -> str | None:
    """A key only a deployment of layout 1 writes, or None when Redis holds none. Scans
    the whole keyspace (every master of a cluster) in the worst case."""
    for key in LAYOUT_1_KEYS:
        if await redis.exists(key):
            return key
    for pattern in LAYOUT_1_PATTERNS:
        async for key in scan_keys(redis, pattern, _SCAN_COUNT):
            return key
    return None


async def ensure_layout(redis: Redis, settings: Settings) -> None:
    """Return when this node may use Redis; mark a fresh Redis; else raise
    `LayoutMismatch` with a one-line message naming what to do."""
    migrate = "stop every gateway node and run `orchestra redis migrate`"
    mark = await redis.get(keys.keyspace())
    if mark is None:
        found = await layout_1_key(redis)
        if found is not None:
            raise LayoutMismatch(
                f"Redis holds data of key layout 1 (e.g. {found!r}) and this node uses "
                f"layout {keys.LAYOUT}: {migrate} (it moves sessions, tasks, queued work "
                "and agents' outboxes) before starting this version"
            )
        # The count first: a start cut short between the two writes leaves no mark, and
        # the next start compares with the count written.
        await redis.set(partitions_key(), settings.partitions, nx=True)
        await _check_partitions(redis, settings, migrate)
        await redis.set(keys.keyspace(), keys.LAYOUT, nx=True)
        mark = await redis.get(keys.keyspace())
    if mark == MIGRATING:
        raise LayoutMismatch(
            "a migration of the Redis keys is under way or was interrupted: run "
            "`orchestra redis migrate` again (no gateway node running) before starting"
        )
    if mark != keys.LAYOUT:
        raise LayoutMismatch(
            f"Redis is marked key layout {mark!r} ({keys.keyspace()}) and this node uses "
            f"layout {keys.LAYOUT}: {migrate}, or run the version that wrote it"
        )
    await redis.set(partitions_key(), settings.partitions, nx=True)
    await _check_partitions(redis, settings, migrate)


async def _check_partitions(redis: Redis, settings: Settings, migrate: str) -> None:
    stored = await redis.get(partitions_key())
    if stored is not None and int(stored) != settings.partitions:
        raise LayoutMismatch(
            f"Redis keys are placed for {int(stored)} partitions and this node is set to "
            f"{settings.partitions} (ORCHESTRA_PARTITIONS): set it back to {int(stored)}, or "
            f"{migrate} --partitions {settings.partitions} (a new count moves every "
            "session's keys)"
        )


async def check(settings: Settings) -> None:
    """`ensure_layout` on a client of its own: what `orchestra gateway` runs before it
    starts serving, so that a refusal is one line and an exit status, not a server's
    failed start with its traceback (`Node.start` checks again)."""
    redis = connect(settings.redis_url)
    try:
        await ensure_layout(redis, settings)
    finally:
        await redis.aclose()
