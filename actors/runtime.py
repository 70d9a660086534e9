"""The actor runtime on Redis (DESIGN.md §2).

Mailboxes are `partitions` streams; an actor's messages all go to the partition its
address hashes to. A node consumes a partition only while it holds that partition's
lease, and every turn's commit is fenced on the lease: a node that lost its lease (it was
paused, or presumed dead) cannot write. The loop of one partition takes its mail in
batches and handles it one message at a time, so an actor has one turn at a time, in the
order messages were added. A node taking over a partition first claims the entries the
previous holder left pending.

Round trips: taking a batch of new mail (and firing the partition's due timers) is one
script call; reading the states of the batch's actors is one more, sent alongside it when
new mail woke an idle partition. Then each turn is its handler and its share of a commit
script call: a turn someone waits on (an `ask`, an agent command) commits at once, with
the turns before it; the others commit together at the end of the batch (`batch.py`,
`turn_commit.py`). An `ask` sends its message and waits for the answer on the node's
reply inbox (`replies.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors import streams
from actors.actor import ActorEnv, ActorFactory, ActorRef
from actors.addresses import Address
from actors.batch import BatchRunner
from actors.forwarder import Forwarder
from actors.home import Home
from actors.membership import Membership, rendezvous_owner
from actors.messages import Message
from actors.replies import ReplyInbox
from actors.values import read_states_of, text
from orchestra import keys, metrics
from orchestra.aio import cancel_and_wait
from orchestra.errors import BY_CODE, ConnectionTimeout, OrchestraError

log = logging.getLogger(__name__)

GROUP = "actors"
_BATCH = 100  # mailbox entries taken per read
_TIMER_TICK_MS = 250  # how long an idle partition waits for mail before it looks at its timers
_NOT_OURS, _NEW, _IDLE = 0, 1, 2  # the answers of mailbox_read.lua


class ActorSystem:
    """One node of the actor system: sends messages and runs the partitions it holds."""

    def __init__(self, env: ActorEnv, kinds: dict[str, ActorFactory]) -> None:
        self.env = env
        self.redis: Redis = env.redis
        self.settings = env.settings
        self.node_id = env.settings.node_id
        self.partitions = env.settings.partitions
        self.kinds = kinds
        self.lease_ttl_ms = int(env.settings.lease_ttl_s * 1000)
        self.membership = Membership(self.redis, self.node_id, env.settings.lease_ttl_s)
        self.replies = ReplyInbox(self.redis, self.node_id)
        self._held: dict[int, str] = {}  # partition -> lease holder value "<node>:<fence>"
        self._loops: dict[int, asyncio.Task[None]] = {}
        self._leases_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- sending -----------------------------------------------------------------------

    def ref(self, address: Address) -> ActorRef:
        return ActorRef(self, address)

    async def tell(
        self, address: Address, type: str, body: dict[str, Any], sender: str = ""
    ) -> None:
        message = Message(to=str(address), type=type, body=body, sender=sender)
        await self._post(address, message)

    async def ask(
        self, address: Address, type: str, body: dict[str, Any], *, timeout_s: float | None = None
    ) -> Any:
        """Send and wait for the reply; CONN_002 if none comes within the timeout."""
        timeout_s = timeout_s or self.settings.ask_timeout_s
        message = Message(
            to=str(address), type=type, body=body, sender="ask", reply_to=self.replies.name
        )
        answer = self.replies.expect(message.id)
        try:
            async with asyncio.timeout(timeout_s):
                await self._post(address, message)
                reply = await answer
        except TimeoutError:
            raise ConnectionTimeout(
                f"{address} did not answer {type} within {timeout_s:g} s"
            ) from None
        finally:
            self.replies.forget(message.id)
        if "error" in reply:
            info = reply["error"]
            raise BY_CODE.get(info["code"], OrchestraError)(info["message"], info.get("details"))
        return reply.get("ok")

    async def _post(self, address: Address, message: Message) -> None:
        """Add a message to its actor's mailbox (durable: see `Scripts.durable`)."""
        mailbox = keys.mailbox(address.partition(self.partitions), self.partitions)
        flat = [item for pair in message.fields().items() for item in pair]
        await self.env.scripts.durable_command(mailbox, "XADD", mailbox, "*", *flat)

    # -- running -----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster and start taking partition leases; returns once the first round
        of leases has been tried."""
        self._leases_task = asyncio.create_task(self._keep_leases(), name="actor-leases")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._leases_task is not None:
            await cancel_and_wait(self._leases_task)
        for partition in list(self._loops):
            await self._stop_partition(partition)
        await self.replies.close()
        with contextlib.suppress(RedisError):
            for partition, holder in list(self._held.items()):
                await self.env.scripts.lease_release(
                    keys=self._release_keys(partition), args=[holder]
                )
            await self.membership.leave()
        self._held.clear()

    def _release_keys(self, partition: int) -> list[str]:
        """A partition lease, and the mark its release leaves for the next holder."""
        home = Home(partition, self.partitions)
        return [home.lease, home.released]

    @property
    def held_partitions(self) -> list[int]:
        return sorted(self._held)

    async def mailbox_depth(self) -> int:
        """Messages waiting in the mailboxes of the partitions held: not yet taken (the
        group's lag) or taken and not yet acknowledged (pending). One round trip."""
        held = self.held_partitions
        if not held:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in held:
                pipe.xinfo_groups(keys.mailbox(partition, self.partitions))
            answers = await pipe.execute(raise_on_error=False)
        depth = 0
        for groups in answers:
            for group in groups if isinstance(groups, list) else ():
                if text(group.get("name")) == GROUP:
                    depth += int(group.get("pending") or 0) + int(group.get("lag") or 0)
        return depth

    async def _keep_leases(self) -> None:
        period_s = self.settings.lease_ttl_s / 3
        while True:
            try:
                await self._lease_round()
            except RedisError as exc:
                log.warning("lease round failed, retrying: %s", exc)
            finally:
                self._ready.set()
            await asyncio.sleep(period_s)

    async def _lease_round(self) -> None:
        """Renew, release and take leases, each partition on its own: one whose Redis
        master is failing over must not hold up the renewals of the others (on a cluster
        they live on other masters)."""
        try:
            nodes = await self.membership.beat()
        except RedisError as exc:
            # Keep what is held (renewing it) and take nothing until the beat works again.
            log.warning("membership beat failed: %s", exc)
            desired = set(self._held)
        else:
            desired = {
                p for p in range(self.partitions) if rendezvous_owner(p, nodes) == self.node_id
            }
        held = list(self._held.items())
        await asyncio.gather(
            *(self._keep(partition, holder, partition in desired) for partition, holder in held),
            *(self._take(partition) for partition in sorted(desired - set(self._held))),
        )

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        """A lease call, given up after a third of a lease time (the client may retry a
        failing master for longer): the round after it tries again."""
        try:
            async with asyncio.timeout(self.settings.lease_ttl_s / 3):
                return await call
        except TimeoutError:
            raise RedisTimeoutError("no answer within a third of a lease time") from None

    async def _keep(self, partition: int, holder: str, wanted: bool) -> None:
        """Renew a held lease, or release it when the partition belongs elsewhere now."""
        scripts = self.env.scripts
        try:
            if not wanted:
                await self._stop_partition(partition)
                await scripts.lease_release(keys=self._release_keys(partition), args=[holder])
                self._held.pop(partition, None)
            elif not await self._bounded(
                scripts.lease_renew(
                    keys=[keys.lease(partition, self.partitions)],
                    args=[holder, self.lease_ttl_ms],
                )
            ):
                log.warning("lost the lease of partition %d", partition)
                await self._stop_partition(partition)
                self._held.pop(partition, None)
        except RedisError as exc:
            log.warning("partition %d: lease not renewed this round: %s", partition, exc)

    async def _take(self, partition: int) -> None:
        home = Home(partition, self.partitions)
        try:
            answer = await self._bounded(
                self.env.scripts.lease_acquire(
                    keys=[home.lease, home.fence, home.released, home.taken],
                    args=[self.node_id, self.lease_ttl_ms, secrets.token_hex(8)],
                )
            )
        except RedisError as exc:
            log.warning("partition %d: lease not taken this round: %s", partition, exc)
            return
        if answer and partition not in self._held:
            self._held[partition] = text(answer[0])
            if int(answer[1]):
                metrics.LEASE_TAKEOVERS.inc()
                log.info("took over partition %d, whose lease had expired", partition)
            self._loops[partition] = asyncio.create_task(
                self._run_partition(partition), name=f"partition-{partition}"
            )

    async def _stop_partition(self, partition: int) -> None:
        task = self._loops.pop(partition, None)
        if task is not None:
            await cancel_and_wait(task)

    async def _run_partition(self, partition: int) -> None:
        """Handle the partition's mail in order while the lease is ours.

        Pending entries (left by a previous holder, or by a batch of ours that a Redis
        error cut short) always go before new ones, and new ones are only taken under the
        lease, so mail is handled in the order it was sent whoever holds the partition.
        """
        home = Home(partition, self.partitions)
        forwarder = Forwarder(self.env, home)
        forwarding = asyncio.create_task(forwarder.run(), name=f"forwarder-{partition}")
        runner = BatchRunner(self.env, self.kinds, home, forwarder.poke)
        try:
            await self._consume(runner, forwarder, home)
        finally:
            try:
                await runner.close()
            finally:  # (a second cancel may cut the close short)
                await cancel_and_wait(forwarding)

    async def _consume(self, runner: BatchRunner, forwarder: Forwarder, home: Home) -> None:
        partition, stream = home.partition, home.mailbox
        delay_s = 0.1
        while partition in self._held:
            try:
                await self._ensure_group(stream)
                if not await self._drain_pending(runner, partition, stream):
                    continue
                woke: list[str] = []
                while partition in self._held:
                    (kind, payload), known = await asyncio.gather(
                        self._read_new(home), read_states_of(self.redis, woke)
                    )
                    if kind == _NOT_OURS:
                        self._lost(partition)
                        return
                    if kind == _IDLE:
                        # Wait for mail after the last entry (or for the next timer tick);
                        # the states of the actors it is for are read with the next take.
                        # New entries of the outgoing stream (an output frame's
                        # notification, stored by any node) wake the forwarder.
                        after = {stream: payload, home.out: forwarder.seen}
                        found = await streams.xread_streams(
                            self.redis, after, _BATCH, _TIMER_TICK_MS
                        )
                        if found.get(home.out):
                            forwarder.poke()
                        woke = _state_keys(found.get(stream, []), self.partitions)
                        continue
                    woke = []
                    await self._handle(runner, partition, stream, payload, known)
                    delay_s = 0.1
            except RedisError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # redis-py turned our cancellation into a connection error
                log.warning("partition %d: %s; retrying in %.1f s", partition, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            except Exception:
                # A bug must not end the loop while the lease round keeps the lease: the
                # entry stays pending and is tried again, the failure in the log.
                log.exception("partition %d failed; retrying in %.1f s", partition, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _read_new(self, home: Home) -> tuple[int, Any]:
        """New mail under the lease, due timers first (one script call)."""
        answer = await self.env.scripts.mailbox_read(
            keys=[home.lease, home.mailbox, home.timers],
            args=[
                self._held.get(home.partition, ""),
                GROUP,
                self.node_id,
                _BATCH,
                int(time.time() * 1000),
            ],
        )
        kind = int(answer[0])
        if kind == _NEW:
            entries = [
                (
                    text(entry_id),
                    # (fields: none for an entry trimmed while it was pending)
                    {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)},
                )
                for entry_id, flat in ((e, f or []) for e, f in answer[1])
            ]
            return kind, entries
        return kind, (text(answer[1]) if kind == _IDLE else None)

    def _lost(self, partition: int) -> None:
        """The lease went to another node: stop here; the lease round may take it back."""
        log.warning("partition %d: lease lost, stopping its mailbox", partition)
        self._held.pop(partition, None)
        self._loops.pop(partition, None)

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_pending(self, runner: BatchRunner, partition: int, stream: str) -> bool:
        """Handle what a previous holder (or a batch of ours) left unacknowledged, in
        order. False when the lease was lost meanwhile."""
        start = "0-0"
        while True:
            start, entries = await streams.xautoclaim(
                self.redis, stream, GROUP, self.node_id, start, _BATCH
            )
            if entries and not await self._handle(runner, partition, stream, entries):
                return False
            if start == "0-0":
                return True

    async def _handle(
        self,
        runner: BatchRunner,
        partition: int,
        stream: str,
        entries: list[streams.Entry],
        known: dict[str, dict[str, str]] | None = None,
    ) -> bool:
        """Handle a batch of entries in order. False when the lease was lost: the rest
        stay pending for the next holder, and this node stops consuming the partition."""
        holder = self._held.get(partition)
        if holder is not None:
            if await runner.run(holder, GROUP, entries, known or {}):
                return True
            self._lost(partition)
        return False


def _state_keys(entries: list[streams.Entry], partitions: int) -> list[str]:
    """The state hashes of the actors that mailbox entries are for (malformed ones aside)."""
    found = []
    for _, fields in entries:
        with contextlib.suppress(ValueError):
            found.append(Address.parse(fields.get("to", "")).state_key(partitions))
    return list(dict.fromkeys(found))
