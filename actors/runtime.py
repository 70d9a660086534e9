"""The actor runtime on Redis (DESIGN.md §2).

Mailboxes are `partitions` streams; an actor's messages all go to the partition its
address hashes to. A node consumes a partition only while it holds that partition's
lease, and every turn's commit is fenced on the lease: a node that lost its lease (it was
paused, or presumed dead) cannot write. The loop of one partition handles its messages
one at a time, so an actor has one turn at a time, in the order messages were added.
A node taking over a partition first claims the entries the previous holder left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors import streams
from actors.actor import Actor, ActorEnv, ActorFactory, ActorRef
from actors.addresses import Address
from actors.membership import Membership, rendezvous_owner
from actors.messages import Message
from actors.turn import CommitResult, Turn
from actors.turn_commit import LeaseTouched, commit_turn, load_state, reply_only
from actors.values import text
from orchestra import keys
from orchestra.aio import cancel_and_wait
from orchestra.errors import BY_CODE, ConnectionTimeout, OrchestraError

log = logging.getLogger(__name__)

GROUP = "actors"
_BATCH = 100
_COMMIT_ATTEMPTS = 5
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
        await streams.xadd(
            self.redis, keys.mailbox(address.partition(self.partitions)), message.fields()
        )

    async def ask(
        self, address: Address, type: str, body: dict[str, Any], *, timeout_s: float | None = None
    ) -> Any:
        """Send and wait for the reply; CONN_002 if none comes within the timeout."""
        timeout_s = timeout_s or self.settings.ask_timeout_s
        message = Message(to=str(address), type=type, body=body, sender="ask")
        message = Message(
            to=message.to, type=type, body=body, sender="ask", id=message.id, reply_to=message.id
        )
        reply_key = keys.reply(message.id)
        await streams.xadd(
            self.redis, keys.mailbox(address.partition(self.partitions)), message.fields()
        )
        try:
            # The client-side guard makes sure we never hang even if Redis stalls.
            raw = await asyncio.wait_for(
                self.redis.blpop([reply_key], timeout=timeout_s), timeout=timeout_s + 1
            )
        except (TimeoutError, RedisTimeoutError):
            raw = None  # Redis's own read timeout on the blocking pop says the same
        if raw is None:
            raise ConnectionTimeout(f"{address} did not answer {type} within {timeout_s:g} s")
        answer = json.loads(raw[1])
        if "error" in answer:
            info = answer["error"]
            raise BY_CODE.get(info["code"], OrchestraError)(info["message"], info.get("details"))
        return answer.get("ok")

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
        with contextlib.suppress(RedisError):
            for partition, holder in list(self._held.items()):
                await self.env.scripts.lease_release(keys=[keys.lease(partition)], args=[holder])
            await self.membership.leave()
        self._held.clear()

    @property
    def held_partitions(self) -> list[int]:
        return sorted(self._held)

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
        nodes = await self.membership.beat()
        desired = {p for p in range(self.partitions) if rendezvous_owner(p, nodes) == self.node_id}
        scripts = self.env.scripts
        for partition, holder in list(self._held.items()):
            if partition not in desired:
                await self._stop_partition(partition)
                await scripts.lease_release(keys=[keys.lease(partition)], args=[holder])
                del self._held[partition]
            elif not await scripts.lease_renew(
                keys=[keys.lease(partition)], args=[holder, self.lease_ttl_ms]
            ):
                log.warning("lost the lease of partition %d", partition)
                await self._stop_partition(partition)
                del self._held[partition]
        for partition in sorted(desired - set(self._held)):
            holder = await scripts.lease_acquire(
                keys=[keys.lease(partition), keys.lease_fence(partition)],
                args=[self.node_id, self.lease_ttl_ms],
            )
            if holder:
                self._held[partition] = holder.decode() if isinstance(holder, bytes) else holder
                self._loops[partition] = asyncio.create_task(
                    self._run_partition(partition), name=f"partition-{partition}"
                )

    async def _stop_partition(self, partition: int) -> None:
        task = self._loops.pop(partition, None)
        if task is not None:
            await cancel_and_wait(task)

    async def _run_partition(self, partition: int) -> None:
        """Handle the partition's mail in order while the lease is ours.

        Pending entries (left by a previous holder, or by a turn of ours that could not
        commit) always go before new ones, and new ones are only taken under the lease,
        so mail is handled in the order it was sent whoever holds the partition.
        """
        stream = keys.mailbox(partition)
        delay_s = 0.1
        while partition in self._held:
            try:
                await self._ensure_group(stream)
                if not await self._drain_pending(partition, stream):
                    continue
                while partition in self._held:
                    await self._fire_timers(partition)
                    kind, payload = await self._read_new(partition, stream)
                    if kind == _NOT_OURS:
                        self._lost(partition)
                        return
                    if kind == _IDLE:
                        # Wait for mail after the last entry (or for the next timer tick).
                        await self.redis.xread({stream: payload}, block=_TIMER_TICK_MS)
                        continue
                    for entry_id, fields in payload:
                        if not await self._handle(partition, stream, entry_id, fields):
                            break  # left pending: drain again, in order, before new mail
                    else:
                        continue
                    break
                delay_s = 0.1
            except RedisError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # redis-py turned our cancellation into a connection error
                log.warning("partition %d: %s; retrying in %.1f s", partition, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _read_new(self, partition: int, stream: str) -> tuple[int, Any]:
        answer = await self.env.scripts.mailbox_read(
            keys=[keys.lease(partition), stream],
            args=[self._held.get(partition, ""), GROUP, self.node_id, _BATCH],
        )
        kind = int(answer[0])
        if kind == _NEW:
            entries = [
                (
                    text(entry_id),
                    {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)},
                )
                for entry_id, flat in answer[1]
            ]
            return kind, entries
        return kind, (text(answer[1]) if kind == _IDLE else None)

    def _lost(self, partition: int) -> None:
        """The lease went to another node: stop here; the lease round may take it back."""
        log.warning("partition %d: lease lost, stopping its mailbox", partition)
        self._held.pop(partition, None)
        self._loops.pop(partition, None)

    async def _fire_timers(self, partition: int) -> None:
        """Move this partition's due timers into its mailbox (at most a tick late)."""
        await self.env.scripts.timers_due(
            keys=[keys.timers(partition), keys.mailbox(partition)],
            args=[int(time.time() * 1000), _BATCH],
        )

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_pending(self, partition: int, stream: str) -> bool:
        """Handle what a previous holder (or a turn of ours) left unacknowledged, in order.
        False when an entry could still not be handled (it stays first in line)."""
        start = "0-0"
        while True:
            start, entries = await streams.xautoclaim(
                self.redis, stream, GROUP, self.node_id, start, _BATCH
            )
            for entry_id, fields in entries:
                if not fields:  # an entry deleted from the stream comes back empty
                    await self.redis.xack(stream, GROUP, entry_id)
                elif not await self._handle(partition, stream, entry_id, fields):
                    return False
            if start == "0-0":
                return True

    async def _handle(
        self, partition: int, stream: str, entry_id: str, fields: dict[str, str]
    ) -> bool:
        """Handle one mailbox entry: a turn, committed with its ack, tried again from the
        start when the lease key moved under the commit (this node's renewal does that).
        False when it is still pending (the lease is gone, or contention went on)."""
        for _ in range(_COMMIT_ATTEMPTS):
            try:
                return await self._turn(partition, stream, entry_id, fields)
            except LeaseTouched:
                continue
        log.warning("partition %d: entry %s left pending after contention", partition, entry_id)
        return False

    async def _turn(
        self, partition: int, stream: str, entry_id: str, fields: dict[str, str]
    ) -> bool:
        message = Message.from_fields(fields)
        address = Address.parse(message.to)
        factory = self.kinds.get(address.kind)
        fence = (keys.lease(partition), self._held.get(partition, ""))
        ack = (stream, GROUP, entry_id)
        state = await load_state(self.redis, address)
        turn = Turn(address=address, message=message, state=state)
        reply: dict[str, Any]
        try:
            if factory is None:
                raise OrchestraError(f"no actor kind {address.kind!r}")
            actor: Actor = factory(self.env)
            reply = {"ok": await actor.on_receive(turn)}
        except OrchestraError as exc:
            reply = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
            return await reply_only(self.redis, message, reply, fence, ack)
        except Exception:
            log.exception("actor %s failed on %s (message %s)", address, message.type, message.id)
            error = {
                "code": "SYS_001",
                "message": "internal error",
                "details": {"traceId": message.id},
            }
            return await reply_only(self.redis, message, {"error": error}, fence, ack)
        result = await commit_turn(self.env, turn, reply, fence, ack, self.partitions)
        if result is None:
            return False  # the lease was lost: the new holder handles the message again
        await self._after_commit(actor, turn, result)
        return True

    async def _after_commit(self, actor: Actor, turn: Turn, result: CommitResult) -> None:
        """Push the turn's agent commands to their sockets, then the actor's own effects.

        A push that does not arrive is made good by the outbox: the agent gets every command
        after its `lastCommandId` again when it registers.
        """
        outlet = self.env.outlet
        for command, command_id in zip(turn.commands, result.command_ids, strict=True):
            try:
                await outlet.to_agent(
                    command.agent_id, command.event, {"commandId": command_id, **command.data}
                )
            except Exception:
                log.exception("pushing %s to agent %s failed", command.event, command.agent_id)
        for effect in turn.after:
            try:
                await effect(result)
            except Exception:
                log.exception("after-commit effect of %s failed", turn.address)
        try:
            await actor.on_committed(turn, result)
        except Exception:
            log.exception(
                "after-commit effects of %s on %s failed", turn.address, turn.message.type
            )
