"""`orchestra redis migrate --partitions N` on a Redis of layout 2 placed for another
count: every partition's keys carry its tag, and an actor's partition depends on the
count, so a new count moves nearly everything. Stop-the-world, as `gateway/migrate.py`:

1. refuse while a node is alive; mark Redis `migrating`, the old count in
   `orch:keyspace:from-partitions`, the new one in `orch:keyspace:partitions`;
2. *staging*: deliver what each old partition's outgoing stream still holds (as its
   forwarder would: `actors/forwarder.py`, the receivers' marks dropping repeats), so
   that every message, agent command and notification is in its receiver's keys; move
   the keys of sessions, tasks, agents, other actors, the queues and the online set to
   their new names; copy the unfinished mail and the timers of the old partitions into
   staging keys of the new ones (`orch:migrate:mbox:<n>`, `orch:migrate:timers:<n>`),
   and the highest fence into `orch:migrate:fence`;
3. *cleaning*: delete the old partitions' keys (mailboxes, timers, leases, fences,
   release marks, outgoing streams, commit memos, the receivers' marks). A new
   partition's key may have the very name an old one had (partition 0's tag is `p:0:0`
   for most counts): which is why the new ones wait in staging keys until now;
4. *placing*: move the staging keys to the new partitions' names, fences at least the
   old highest; mark Redis layout 2.

Each phase is recorded (`orch:keyspace:phase`) when it is done, so a run interrupted in
one makes it again (each step skips what it did) and never an earlier one.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from redis.asyncio import Redis

from actors.actor import ActorEnv
from actors.forwarder import Forwarder
from actors.home import Home
from actors.scripts import Scripts
from gateway.keyspace import MIGRATING, partitions_key
from gateway.layout1 import Found
from gateway.migrate import FROM_PARTITIONS, Migration, MigrationRefused, Report
from orchestra import keys
from orchestra.redis_client import scan_keys

log = logging.getLogger(__name__)

_PAGE = 1000
PHASE = f"{keys.keyspace()}:phase"
STAGED_MAIL, STAGED_TIMERS = "orch:migrate:mbox:", "orch:migrate:timers:"
STAGED_FENCE = "orch:migrate:fence"


class _NoSockets:
    """The outlet of the draining forwarders: no agent is connected (every gateway is
    stopped); commands stay in the outboxes, which agents read when they register."""

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        return None


class Repartition(Migration):
    """One run moving a layout-2 Redis from `old` partitions to `partitions`."""

    def __init__(self, redis: Redis, old: int, partitions: int, **options: Any) -> None:
        super().__init__(redis, partitions, **options)
        self.old = old

    def mailbox_of(self, partition: int) -> str:
        return f"{STAGED_MAIL}{partition}"

    def timers_of(self, partition: int) -> str:
        return f"{STAGED_TIMERS}{partition}"

    async def run(self) -> Report:
        mark = await self.redis.get(keys.keyspace())
        if mark == MIGRATING:
            target = int(await self.redis.get(partitions_key()) or self.partitions)
            if target != self.partitions:
                raise MigrationRefused(
                    f"an interrupted move from {self.old} to {target} partitions: run it "
                    f"again with --partitions {target}"
                )
        elif not self.owned:
            await self._refuse_if_alive(Found())
        phase = await self.redis.get(PHASE) if mark == MIGRATING else None
        self.say(
            f"{'would move' if self.dry_run else 'moving'} the keys from {self.old} to "
            f"{self.partitions} partitions"
        )
        if not self.dry_run and mark != MIGRATING:
            await self.redis.set(FROM_PARTITIONS, self.old)
            await self.redis.set(partitions_key(), self.partitions)
            await self.redis.set(keys.keyspace(), MIGRATING)
        if phase in (None, "staging"):
            await self._stage()
            await self._phase("cleaning")
        if phase in (None, "staging", "cleaning"):
            await self._clean()
            await self._phase("placing")
        await self._place()
        if not self.dry_run:
            await self.redis.set(keys.keyspace(), keys.LAYOUT)
            await self.redis.delete(PHASE, FROM_PARTITIONS)
            self.report.marked = f"marked layout {keys.LAYOUT}, {self.partitions} partitions"
        return self.report

    async def _phase(self, name: str) -> None:
        if not self.dry_run:
            await self.redis.set(PHASE, name)

    # -- staging ---------------------------------------------------------------------

    async def _stage(self) -> None:
        await self._drain()
        moves: dict[str, str] = {}
        async for key in scan_keys(self.redis, f"{keys.PREFIX}:{{p:*", _PAGE):
            new = entity_name(key, self.partitions)
            if new is not None and new != key:
                moves[key] = new
        await self._move_keys(moves)
        homes = [Home(n, self.old) for n in range(self.old)]
        await self._rebuild_mailboxes({h.partition: h.mailbox for h in homes})
        await self._rebuild_timers({h.partition: h.timers for h in homes})
        highest = max([int(await self.redis.get(h.fence) or 0) for h in homes], default=0)
        if highest and not self.dry_run:
            staged = int(await self.redis.get(STAGED_FENCE) or 0)
            await self.redis.set(STAGED_FENCE, max(staged, highest))

    async def _drain(self) -> None:
        """Deliver the old partitions' outgoing streams, as their forwarders would."""
        env = ActorEnv(
            redis=self.redis,
            scripts=Scripts(self.redis),
            store=cast(Any, None),  # (forwarding reads no SQL)
            settings=cast(Any, None),
            outlet=cast(Any, _NoSockets()),
        )
        for partition in range(self.old):
            home = Home(partition, self.old)
            waiting = int(await self.redis.xlen(home.out))
            if not waiting:
                continue
            self.say(f"partition {partition}: {waiting} entries of its outgoing stream")
            if self.dry_run:
                continue
            forwarder = Forwarder(env, home)
            while await forwarder._round():
                pass

    # -- cleaning and placing --------------------------------------------------------

    async def _clean(self) -> None:
        names = []
        for partition in range(self.old):
            home = Home(partition, self.old)
            names += [home.mailbox, home.timers, home.lease, home.fence, home.released, home.out]
            names.append(home.taken)
        names = [name for name in names if await self.redis.exists(name)]
        for pattern in (f"{keys.PREFIX}:{{p:*}}:mbox:commit:*", f"{keys.PREFIX}:{{*}}:inbound"):
            names += [key async for key in scan_keys(self.redis, pattern, _PAGE)]
        await self._drop(names)

    async def _place(self) -> None:
        moves = {}
        for partition in range(self.partitions):
            moves[self.mailbox_of(partition)] = keys.mailbox(partition, self.partitions)
            moves[self.timers_of(partition)] = keys.timers(partition, self.partitions)
        moved = self.report.moved
        await self._move_keys(moves)
        self.report.moved = moved  # (the staging keys: not counted twice)
        fences = [keys.lease_fence(n, self.partitions) for n in range(self.partitions)]
        await self._carry_fences([STAGED_FENCE], fences)
        if not self.dry_run:
            await self.redis.delete(STAGED_FENCE)


def entity_name(key: str, partitions: int) -> str | None:
    """The name under `partitions` of a layout-2 key of an actor, a queue or the online
    set (`orch:{p:N:k}:s:<sid>...`, `:a:<aid>...`, `:actor:<address>`, `:queue:<p>`,
    `:agents:online`); None for a partition's own keys and any other key."""
    head = f"{keys.PREFIX}:{{p:"
    end = key.find("}:")
    if not key.startswith(head) or end < 0:
        return None
    rest = key[end + 2 :]
    kind, _, ident = rest.partition(":")
    if kind == "s" and ident:
        if ":task:" in ident:
            sid, _, tid = ident.partition(":task:")
            return keys.task(sid, tid, partitions)
        if ident.endswith(":events"):
            return keys.session_events(ident.removesuffix(":events"), partitions)
        return keys.session(ident, partitions)
    if kind == "a" and ident:
        if ident.endswith(":outbox"):
            return keys.agent_outbox(ident.removesuffix(":outbox"), partitions)
        return keys.agent(ident, partitions)
    if kind == "actor" and ident:
        return keys.actor_state(ident, partitions)
    if kind == "queue" and ident:
        return keys.dispatch_queue(ident, partitions)
    if rest == "agents:online":
        return keys.agents_online(partitions)
    return None
