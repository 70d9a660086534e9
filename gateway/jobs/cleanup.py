"""Cluster-wide cleanup jobs: what dead nodes left behind, and queue entries of tasks gone.

A node that dies (SIGKILL, a lost machine) cleans up nothing. Most of what it held runs
out by itself: its partition leases and the leader lease expire, its agents go offline
when their heartbeats stop (`gateway/agent_health.py`), its pending mailbox entries are
claimed by the partitions' next holders. What stays, the leader removes here:

- its entry in the live-node set `orch:nodes` (expired);
- its consumers in the mailboxes' and the notifications stream's consumer groups, once
  they hold no pending entry (the entries' new owners claimed them) and have been idle
  for two lease times (a node merely slow to renew its membership still reads, and a
  consumer that reads again is simply made anew);
- its sockets' slots in the per-user and per-agent socket sets, and its index of them;
- its ask reply lists (`expired reply lists`: they would expire a minute after their last
  answer; nobody will read them).

"Dead" means absent from `orch:nodes` (every live node renews its entry each third of
the lease time). Every step removes only what is still dead when it looks, so a run done
twice, or by two nodes during a change of leader, removes nothing more the second time.
Each job logs what it removed, and nothing when there was nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from actors.dispatcher import PRIORITIES
from actors.runtime import GROUP
from actors.values import text
from gateway.socket_caps import free_slots_of
from orchestra import keys

log = logging.getLogger(__name__)

_SCAN_PAGE = 500


async def live_nodes(redis: Redis) -> set[str]:
    """The nodes whose membership has not expired."""
    now_ms = int(time.time() * 1000)
    return {text(n) for n in await redis.zrangebyscore(keys.nodes(), now_ms, "+inf")}


async def remove_dead_nodes(redis: Redis, partitions: int, lease_ttl_s: float) -> Counter[str]:
    """Remove what nodes no longer alive left; what was removed, by kind."""
    removed: Counter[str] = Counter()
    dead: set[str] = set()
    now_ms = int(time.time() * 1000)
    expired = [text(n) for n in await redis.zrangebyscore(keys.nodes(), "-inf", now_ms)]
    if expired:
        # By score, not by name: a node that renewed meanwhile keeps its entry.
        removed["membership entries"] += int(
            await redis.zremrangebyscore(keys.nodes(), "-inf", now_ms)
        )
        dead.update(expired)
    live = await live_nodes(redis)
    idle_ms = int(lease_ttl_s * 2000)
    groups = [(keys.mailbox(p, partitions), GROUP) for p in range(partitions)]
    groups += [(keys.webhook_events(), group) for group in await _groups(redis)]
    for stream, group in groups:
        for consumer in await _consumers(redis, stream, group):
            name = text(consumer.get("name"))
            if name in live or int(consumer.get("pending", 0)) or int(consumer["idle"]) < idle_ms:
                continue
            await redis.xgroup_delconsumer(stream, group, name)
            removed["stream consumers"] += 1
            dead.add(name)
    async for key in redis.scan_iter(match=keys.node_socket_slots_pattern(), count=_SCAN_PAGE):
        node = keys.node_of_socket_slots(text(key))
        if node is not None and node not in live:
            removed["socket slots"] += await free_slots_of(redis, node)
            removed["socket slot indexes"] += 1
            dead.add(node)
    if removed:
        log.info("removed the leftovers of dead node(s) %s: %s", _names(dead), _counts(removed))
    return removed


async def remove_dead_reply_lists(redis: Redis) -> int:
    """Delete the ask reply lists of nodes no longer alive; how many."""
    live = await live_nodes(redis)
    gone: list[str] = []
    async for key in redis.scan_iter(match=keys.replies_pattern(), count=_SCAN_PAGE):
        inbox = keys.inbox_of_replies(text(key))
        # An inbox is "<node id>:<random>" (`actors/replies.py`).
        if inbox is not None and inbox.rpartition(":")[0] not in live:
            gone.append(text(key))
    deleted = int(await redis.delete(*gone)) if gone else 0
    if deleted:
        log.info("removed %d ask reply list(s) of dead nodes: %s", deleted, _names(gone))
    return deleted


async def remove_orphan_queue_entries(redis: Redis, partitions: int) -> int:
    """Remove the dispatch queue entries whose task no longer exists; how many."""
    removed: list[str] = []
    for priority in PRIORITIES:
        queue = keys.dispatch_queue(priority, partitions)
        cursor = 0
        while True:
            cursor, page = await redis.zscan(queue, cursor, count=_SCAN_PAGE)
            entries = [text(member) for member, _ in page]
            async with redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    sid, _, tid = entry.partition("/")
                    pipe.exists(keys.task(sid, tid or "-", partitions))
                found = await pipe.execute()
            # A task's queue entry is written after its hash (the task's commit writes the
            # hash; its forwarder then adds the entry in the dispatcher's partition): an
            # entry whose hash is absent belongs to no task, now or later (ids are not
            # reused).
            orphans = [e for e, exists in zip(entries, found, strict=True) if not exists]
            if orphans and int(await redis.zrem(queue, *orphans)):
                removed += orphans
            if int(cursor) == 0:
                break
    if removed:
        log.info(
            "removed %d queue entr%s of tasks that no longer exist: %s",
            len(removed),
            "y" if len(removed) == 1 else "ies",
            _names(removed),
        )
    return len(removed)


async def _groups(redis: Redis) -> list[str]:
    try:
        return [text(g["name"]) for g in await redis.xinfo_groups(keys.webhook_events())]
    except ResponseError:  # no such stream yet
        return []


async def _consumers(redis: Redis, stream: str, group: str) -> list[dict[str, Any]]:
    try:
        found = await redis.xinfo_consumers(stream, group)
    except ResponseError:  # no such stream or group (a partition never used)
        return []
    return [{text(k): v for k, v in c.items()} for c in found]


def _names(names: set[str] | list[str]) -> str:
    ordered = sorted(set(names))
    return ", ".join(ordered[:20]) + (" ..." if len(ordered) > 20 else "")


def _counts(removed: Counter[str]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(removed.items()))
