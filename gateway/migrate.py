"""`orchestra redis migrate`: move the data of key layout 1 to layout 2, stop-the-world.

Layout 2 (docs/redis-cluster.md §2, §5) renames every key of a partition's things and
places a task in its session's partition, where layout 1 placed it by its own address:
old data is invisible to the new code, so it is moved, with no gateway node running:

1. refuse while a node is alive (a live member of `orch:nodes`, a held lease, the leader
   lease); mark Redis `migrating`, with the partition count the keys are placed for;
2. move each key that moves whole (sessions' and tasks' state and event streams, agents'
   state and outboxes, other actors' state, the dispatch queues and the online agents):
   DUMP, RESTORE under its new name with its time to live, DEL the old one (this works
   across slots on a cluster, and stream consumer groups travel with DUMP);
3. rebuild the mailboxes: the mail each old `orch:mbox:<p>` had not finished (entries
   pending in its group `actors`, and those after its last delivered id), merged from
   all of them in id order, goes to the new mailbox of its `to` address's partition
   (an actor's mail all came from one old mailbox, so its order holds), under an id made
   from the old one; then group `actors` at 0 on each. Timers likewise, by their `to`;
4. carry the fence counters over (each new one at least the old maximum, so fencing
   tokens never go back); drop leases, release marks, commit memos and reply lists;
5. mark Redis with `keys.LAYOUT`, last.

Run again after an interruption, it picks up where it stopped: a key already moved is
skipped (its old name is gone, or its new one exists), mail already added is recognised
by its id (each new mailbox is filled in increasing id order), timers and fences are
set-like. A layout-2 Redis moves to another partition count likewise
(`gateway/repartition.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.keyspace import MIGRATING, partitions_key
from gateway.layout1 import Found
from orchestra import keys
from orchestra.placement import partition_of
from orchestra.redis_client import connect, scan_keys
from orchestra.settings import SettingsError

GROUP = "actors"  # the mailboxes' consumer group (`actors/runtime.py`)
#: While a change of partition count runs: the count the keys were placed with before.
FROM_PARTITIONS = f"{keys.keyspace()}:from-partitions"
_MAX_OLD_PARTITIONS = 4096  # `settings.partitions` at most: new ids keep old ids' order
_PAGE = 1000
_CONCURRENCY = 32  # keys moved at once


class MigrationRefused(SettingsError):
    """The migration cannot run now (a node is alive, another layout): one line, status 2."""


@dataclass
class Report:
    """What a run did (or, dry, would do)."""

    moved: int = 0
    mail: int = 0
    timers: int = 0
    fences: int = 0
    dropped: int = 0
    marked: str = ""

    @property
    def changed(self) -> bool:
        """Whether layout-1 data was found (and moved, unless dry)."""
        return bool(self.moved or self.mail or self.timers or self.fences or self.dropped)

    def line(self) -> str:
        if not self.changed:
            return f"nothing to migrate ({self.marked})" if self.marked else "nothing to migrate"
        return (
            f"moved {self.moved} keys to layout {keys.LAYOUT}, {self.mail} waiting messages "
            f"and {self.timers} timers to their new partitions, carried {self.fences} fence "
            f"counters over, dropped {self.dropped} keys"
        )


class Migration:
    """One run over one Redis (single or cluster) to layout 2 with `partitions`.

    `owned`: the caller owns the only node there is (`orchestra up`), so a node that
    seems alive (it was killed a moment ago) is no reason to refuse. `say` gets one line
    per step."""

    def __init__(
        self,
        redis: Redis,
        partitions: int,
        *,
        dry_run: bool = False,
        owned: bool = False,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        # (redis-py's annotations cover bytes and str answers alike: this client decodes.)
        self.redis: Any = redis
        self.partitions = partitions
        self.dry_run = dry_run
        self.owned = owned
        self.say = say
        self.report = Report()

    async def run(self) -> Report:
        mark = await self.redis.get(keys.keyspace())
        stored = await self.redis.get(partitions_key())
        moving = await self.redis.get(FROM_PARTITIONS)
        if (mark == keys.LAYOUT and stored is not None and int(stored) != self.partitions) or (
            mark == MIGRATING and moving is not None
        ):
            from gateway.repartition import Repartition  # (it builds on this module)

            old = int(moving if moving is not None else stored)
            return await Repartition(
                self.redis, old, self.partitions, dry_run=self.dry_run, owned=self.owned,
                say=self.say,
            ).run()  # fmt: skip
        if mark == keys.LAYOUT:
            if stored is None and not self.dry_run:
                await self.redis.set(partitions_key(), self.partitions)
            self.report.marked = f"already layout {keys.LAYOUT}, {self.partitions} partitions"
            return self.report
        if mark not in (None, MIGRATING):
            raise MigrationRefused(
                f"Redis is marked key layout {mark!r} ({keys.keyspace()}): this version "
                f"migrates layout 1 to {keys.LAYOUT} only"
            )
        if mark == MIGRATING and stored is not None and int(stored) != self.partitions:
            raise MigrationRefused(
                f"an interrupted migration to {int(stored)} partitions: run it again with "
                f"--partitions {int(stored)}"
            )
        found = Found()
        async for key in scan_keys(self.redis, f"{keys.PREFIX}:*", _PAGE):
            found.add(key, self.partitions)
        if not self.owned:
            await self._refuse_if_alive(found)
        if not found and mark is None:
            self.report.marked = f"no data of layout 1; marked layout {keys.LAYOUT}"
            await self._mark(keys.LAYOUT)
            return self.report
        self.say(("would migrate: " if self.dry_run else "migrating: ") + found.summary())
        await self._mark(MIGRATING)
        await self._move_keys(found.moves)
        await self._rebuild_mailboxes(found.mailboxes)
        await self._rebuild_timers(found.timers)
        await self._carry_fences(list(found.fences.values()))
        await self._drop([*found.leases, *found.dropped])
        rebuilt = [*found.mailboxes.values(), *found.timers.values(), *found.fences.values()]
        await self._drop(rebuilt, counted=False)
        await self._mark(keys.LAYOUT)
        return self.report

    # -- the steps ---------------------------------------------------------------------

    async def _refuse_if_alive(self, found: Found) -> None:
        now_ms = int(time.time() * 1000)
        alive = await self.redis.zrangebyscore(keys.nodes(), f"({now_ms}", "+inf")
        if alive:
            raise MigrationRefused(
                f"gateway nodes are alive ({', '.join(sorted(alive))} in {keys.nodes()}): "
                "stop every gateway node first (a killed one counts as alive for a lease "
                "time)"
            )
        held = list(found.leases)
        async for key in scan_keys(self.redis, f"{keys.PREFIX}:{{p:*}}:lease", _PAGE):
            held.append(key)
        if await self.redis.exists(keys.leader()):
            held.append(keys.leader())
        if held:
            raise MigrationRefused(
                f"a gateway node may still be alive: it holds {held[0]}"
                f"{f' and {len(held) - 1} more leases' if len(held) > 1 else ''}; stop every "
                "gateway node and wait a lease time (ORCHESTRA_LEASE_TTL_S)"
            )

    async def _mark(self, value: str) -> None:
        if self.dry_run:
            return
        await self.redis.set(partitions_key(), self.partitions)
        await self.redis.set(keys.keyspace(), value)
        if value == keys.LAYOUT:
            self.report.marked = self.report.marked or f"marked layout {value}"

    async def _move_keys(self, moves: dict[str, str]) -> None:
        """DUMP, RESTORE under the new name with the same time to live, DEL: a few keys
        at a time. A key whose new name exists was moved by an interrupted run."""
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def move(old: str, new: str) -> None:
            async with limit:
                if self.dry_run:
                    there = await self.redis.exists(old)
                    self.report.moved += int(bool(there))
                    return
                if not await self.redis.exists(new):
                    dumped = await self.redis.dump(old)
                    if dumped is None:
                        return
                    ttl_ms = await self.redis.pttl(old)
                    try:
                        await self.redis.restore(new, max(int(ttl_ms), 0), dumped)
                    except ResponseError as exc:
                        if "BUSYKEY" not in str(exc):
                            raise
                await self.redis.delete(old)
                self.report.moved += 1

        await asyncio.gather(*(move(old, new) for old, new in moves.items()))
        if moves:
            self.say(f"keys moved: {self.report.moved}")

    def mailbox_of(self, partition: int) -> str:
        """Where the mail of a new partition goes."""
        return keys.mailbox(partition, self.partitions)

    def timers_of(self, partition: int) -> str:
        """Where the timers of a new partition go."""
        return keys.timers(partition, self.partitions)

    async def _rebuild_mailboxes(self, mailboxes: dict[int, str]) -> None:
        waiting: list[tuple[int, int, int, dict[str, str]]] = []
        for old_partition, key in mailboxes.items():
            for entry_id, fields in await self._unfinished(key):
                waiting.append((*_order(entry_id), old_partition, fields))
        waiting.sort(key=lambda item: item[:3])
        tops: dict[str, tuple[int, int] | None] = {}
        for ms, seq, old_partition, fields in waiting:
            new_id = (ms, seq * _MAX_OLD_PARTITIONS + old_partition)
            target = self.mailbox_of(partition_of(fields.get("to", ""), self.partitions))
            if target not in tops:
                tops[target] = await self._top(target)
            top = tops[target]
            if top is not None and new_id <= top:
                continue  # added by an interrupted run
            if not self.dry_run:
                await self.redis.xadd(target, fields, id=f"{new_id[0]}-{new_id[1]}")
            tops[target] = new_id
            self.report.mail += 1
        for target in tops if not self.dry_run else ():
            try:
                await self.redis.xgroup_create(target, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        if mailboxes:
            self.say(f"waiting messages carried over: {self.report.mail}")

    async def _unfinished(self, mailbox: str) -> list[tuple[str, dict[str, str]]]:
        """The entries of an old mailbox that were not handled: pending in its group, or
        after the group's last delivered id (all of them when it has no group)."""
        try:
            groups = await self.redis.xinfo_groups(mailbox)
        except ResponseError:
            return []  # gone: carried over and deleted by an interrupted run
        last = "0-0"
        pending: set[str] = set()
        for group in groups:
            if group.get("name") == GROUP:
                last = str(group.get("last-delivered-id") or "0-0")
                if int(group.get("pending") or 0):
                    start = "-"
                    while True:
                        ids = [
                            str(item["message_id"])
                            for item in await self.redis.xpending_range(
                                mailbox, GROUP, min=start, max="+", count=_PAGE
                            )
                        ]
                        pending.update(ids)
                        if len(ids) < _PAGE:
                            break
                        start = "(" + ids[-1]
        start = min(pending, key=_order) if pending else f"({last}"
        found: list[tuple[str, dict[str, str]]] = []
        while True:
            page: list[Any] = await self.redis.xrange(mailbox, min=start, max="+", count=_PAGE)
            for entry_id, fields in page:
                if entry_id in pending or _order(entry_id) > _order(last):
                    found.append((entry_id, fields))
            if len(page) < _PAGE:
                return found
            start = "(" + page[-1][0]

    async def _top(self, stream: str) -> tuple[int, int] | None:
        last = await self.redis.xrevrange(stream, "+", "-", count=1)
        return _order(last[0][0]) if last else None

    async def _rebuild_timers(self, timers: dict[int, str]) -> None:
        for key in timers.values():
            start = 0
            while True:
                page = await self.redis.zrange(key, start, start + _PAGE - 1, withscores=True)
                for member, score in page:
                    try:
                        to = str(json.loads(member).get("to", ""))
                    except (ValueError, AttributeError):
                        to = ""
                    target = self.timers_of(partition_of(to, self.partitions))
                    if not self.dry_run:
                        await self.redis.zadd(target, {member: score})
                    self.report.timers += 1
                if len(page) < _PAGE:
                    break
                start += _PAGE
        if timers:
            self.say(f"timers carried over: {self.report.timers}")

    async def _carry_fences(self, fences: list[str], into: list[str] | None = None) -> None:
        """Each counter of `into` (the new partitions' fences) at least the highest of
        `fences`."""
        highest = 0
        for key in fences:
            highest = max(highest, int(await self.redis.get(key) or 0))
        if not highest:
            return
        if into is None:
            into = [keys.lease_fence(p, self.partitions) for p in range(self.partitions)]
        for fence in into:
            if int(await self.redis.get(fence) or 0) < highest:
                if not self.dry_run:
                    await self.redis.set(fence, highest)
                self.report.fences += 1
        self.say(f"fencing tokens start above {highest}")

    async def _drop(self, names: list[str], *, counted: bool = True) -> None:
        for start in range(0, len(names), _PAGE):
            batch = names[start : start + _PAGE]
            gone = len(batch) if self.dry_run else int(await self.redis.delete(*batch))
            self.report.dropped += gone if counted else 0


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def migrate(
    redis_url: str,
    partitions: int,
    *,
    dry_run: bool = False,
    owned: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Report:
    """One migration on a client of its own (`orchestra redis migrate`, `orchestra up`)."""
    redis = connect(redis_url)
    try:
        return await Migration(redis, partitions, dry_run=dry_run, owned=owned, say=say).run()
    finally:
        await redis.aclose()
