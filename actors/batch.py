"""Running a batch of one partition's mail: one turn per message, in order.

Round trips. The states of every actor the batch addresses are read in one round trip
before the first turn. Turns that nobody waits on (no `ask`er, no agent command to push)
are committed together: their commits are held back and go in one script call with the
next turn that someone waits on, or at the end of the batch (`turn_commit.py`). So a
batch of tells costs one commit, and an `ask` is answered as soon as its turn is done.
The after-commit effects (pushes, emits, SQL history) run beside the loop, in commit
order (`effects.py`): the mail behind a turn does not wait for its SQL writes.

What a turn sees is what it would see if each turn committed on its own:
- its actor's state as the turns before it left it: the state read for the batch (read
  after the batch's mail was seen, so it holds everything written before the message
  was sent; a partition woken by new mail reads it while it takes the mail) with the
  changes of the earlier turns of the same actor applied. When an earlier turn wrote
  that hash in another way (an agent command bumps the agent's `commandSeq`, a raw
  write), what is held back is committed first and the hash read back from that commit;
- everything else through a guarded env (`barrier.py`): before a handler's first read of
  Redis or SQL, or its first socket emit, the held-back turns are committed and the
  after-commit effects of the turns before it have run, in order.
If the lease is lost, nothing held back is written and the batch stops there: those
entries stay pending for the partition's next holder, like the ones after them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from actors.actor import Actor, ActorEnv, ActorFactory
from actors.addresses import Address
from actors.barrier import guarded_env
from actors.effects import AfterCommit
from actors.home import Home
from actors.messages import Message
from actors.streams import Entry
from actors.tracing import message_trace_id, turn_context
from actors.turn import Turn, decode_state
from actors.turn_commit import Plan, commit
from actors.values import read_raw_states, read_states_of
from orchestra import metrics
from orchestra.errors import OrchestraError

log = logging.getLogger(__name__)


@dataclass
class _Done:
    """A turn committed or held back, and what is left to do once it is committed."""

    actor: Actor | None
    turn: Turn | None
    kind: str | None = None  # the actor kind it was for (None: no message), for the metrics
    started: float = 0.0  # time.perf_counter() when its message was taken


class _LeaseLost(Exception):
    """The commit found another holder on the lease: nothing of it was written."""


class BatchRunner:
    """Runs one partition's mailbox entries, a batch at a time. Each partition loop has
    its own runner: what is held back, and the barrier of its handlers' env, are the
    partition's."""

    def __init__(
        self,
        env: ActorEnv,
        kinds: dict[str, ActorFactory],
        home: Home,
        sent: Callable[[], None] = lambda: None,
    ) -> None:
        self.env = env
        self.kinds = kinds
        self.home = home
        self.partitions = home.partitions
        self._sent = sent  # told after a commit that added to the outgoing stream
        self.turn_env = guarded_env(env, self._barrier)
        self.effects = AfterCommit(env)
        self._committing = asyncio.Lock()  # commits go out one at a time, in order
        self._plan: Plan | None = None  # the commits held back
        self._held: list[_Done] = []  # their turns, in order
        self._states: dict[str, dict[str, str]] = {}  # the batch's actors' state hashes
        self._stale: set[str] = set()  # ...of which a turn wrote other than as changes
        self._failure: BaseException | None = None  # of a commit made at the barrier
        self._read_back: dict[str, str] | None = None
        self._started = 0.0  # when the turn being handled took its message

    async def run(
        self,
        holder: str,
        group: str,
        entries: list[Entry],
        known: dict[str, dict[str, str]],
    ) -> bool:
        """Handle `entries` in order; False when the lease was lost (the entries not yet
        committed stay pending for the partition's next holder). A Redis error leaves
        them pending too, and is raised. `known`: state hashes read after the entries
        for them were sent (and after every earlier batch committed), to read no more."""
        parsed = [
            (entry_id, *_parse(entry_id, fields, self.partitions)) for entry_id, fields in entries
        ]
        state_keys = list(dict.fromkeys(k for _, _, k in parsed if k is not None))
        missing = [key for key in state_keys if key not in known]
        states = await read_states_of(self.env.redis, missing)
        states.update({key: known[key] for key in state_keys if key in known})
        self._states, self._stale = states, set()
        self._plan, self._held, self._failure = Plan(self.home, holder, group), [], None
        try:
            for entry_id, message, state_key in parsed:
                if await self._one(entry_id, message, state_key):
                    await self._flush()
            await self._flush()
        except _LeaseLost:
            return False
        finally:
            self._plan, self._held, self._states = None, [], {}
        return True

    async def _one(self, entry_id: str, message: Message | None, state_key: str | None) -> bool:
        """Handle one entry, its commit held back; whether someone waits on it (an
        `ask`er for the reply, an agent for a command)."""
        self._started = time.perf_counter()
        if message is None or state_key is None:  # deleted, or no message at all
            self._hold(entry_id, None, None, None, {})
            return False
        if state_key in self._stale:
            self._states[state_key] = await self._fresh(state_key)
        with turn_context(message):  # its trace id and ids on its log lines
            actor, turn, reply = await self._handle(message, self._states[state_key])
        if self._failure is not None:  # committing at the barrier failed: stop here
            failure, self._failure = self._failure, None
            raise failure
        if actor is not None and turn is not None:
            try:
                changes, others = self._hold(entry_id, message, actor, turn, reply)
            except Exception:  # a write that cannot be sent: the turn fails, not the loop
                log.exception("the turn of %s on %s cannot commit", turn.address, message.type)
                self._hold(entry_id, message, None, None, _internal_error(message))
                return bool(message.reply_to)
            self._stale |= others & self._states.keys()
            if state_key not in self._stale:
                self._states[state_key].update(changes)
            return bool(message.reply_to or turn.commands)
        self._hold(entry_id, message, None, None, reply)
        return bool(message.reply_to)

    def _hold(
        self,
        entry_id: str,
        message: Message | None,
        actor: Actor | None,
        turn: Turn | None,
        reply: dict[str, Any],
    ) -> tuple[dict[str, str], set[str]]:
        """Add a turn (or only a reply and an ack) to what is held back: see
        `Plan.add_turn` for what it returns."""
        assert self._plan is not None
        written: tuple[dict[str, str], set[str]] = ({}, set())
        if actor is not None and turn is not None:
            written = self._plan.add_turn(entry_id, turn, reply)
        else:
            self._plan.add_reply(entry_id, message, reply)
        self._held.append(_Done(actor, turn, self._kind(message), self._started))
        return written

    async def _handle(
        self, message: Message, raw_state: dict[str, str]
    ) -> tuple[Actor | None, Turn | None, dict[str, Any]]:
        """Run the handler: (actor, turn, reply) to commit, or (None, None, error reply)
        when it failed (its effects are dropped)."""
        address = Address.parse(message.to)
        factory = self.kinds.get(address.kind)
        turn = Turn(address=address, message=message, state=decode_state(raw_state))
        try:
            if factory is None:
                raise OrchestraError(f"no actor kind {address.kind!r}")
            actor: Actor = factory(self.turn_env)
            return actor, turn, {"ok": await actor.on_receive(turn)}
        except OrchestraError as exc:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            return None, None, {"error": error}
        except Exception:
            if self._failure is None:  # else it is the failed commit's doing
                log.exception("actor %s failed on %s (%s)", address, message.type, message.id)
            return None, None, _internal_error(message)

    def _kind(self, message: Message | None) -> str | None:
        """The metrics' label of the actor kind a message is for (never its id)."""
        if message is None:
            return None
        kind = message.to.partition(":")[0]
        return kind if kind in self.kinds else "unknown"

    async def close(self) -> None:
        """Let the after-commit effects of what was committed run, then stop."""
        await self.effects.close()

    async def _barrier(self) -> None:
        """A handler is about to reach out: commit what is held back first, and let the
        after-commit effects of the turns before it run. (An effect reaching out waits
        for nothing: the turns after it are not its business.)"""
        if self.effects.running_here():
            return
        if self._plan:
            try:
                await self._flush()
            except (RedisError, _LeaseLost) as exc:
                self._failure = exc  # the turn is dropped once its handler returns
        await self.effects.wait()

    async def _fresh(self, state_key: str) -> dict[str, str]:
        """A state hash that an earlier turn of the batch wrote, as it is now."""
        self._stale.discard(state_key)
        if self._plan:
            await self._flush(read_back=state_key)
            if self._read_back is not None:
                return self._read_back
        [raw] = await read_raw_states(self.env.redis, [state_key])
        return raw

    async def _flush(self, read_back: str | None = None) -> None:
        """Commit what is held back, then queue those turns' after-commit effects."""
        async with self._committing:
            self._read_back = None
            plan, held = self._plan, self._held
            if not plan:
                return
            self._plan, self._held = Plan(plan.home, plan.holder, plan.group), []
            committed = await commit(self.env.scripts, plan, read_back)
            if committed is None:
                raise _LeaseLost
            if plan.sent:
                self._sent()
            self._read_back = committed.read_back
            _count_turns(held)
            for done, result in zip(held, committed.results, strict=True):
                if done.actor is not None and done.turn is not None:
                    self.effects.add(done.actor, done.turn, result)


def _count_turns(held: list[_Done]) -> None:
    """Each committed turn, by actor kind, and its time from taking its message."""
    now = time.perf_counter()
    for done in held:
        if done.kind is not None:
            metrics.ACTOR_TURNS.labels(done.kind).inc()
            metrics.ACTOR_TURN_SECONDS.labels(done.kind).observe(now - done.started)


def _internal_error(message: Message) -> dict[str, Any]:
    return {
        "error": {
            "code": "SYS_001",
            "message": "internal error",
            "details": {"traceId": message_trace_id(message)},
        }
    }


def _parse(
    entry_id: str, fields: dict[str, str], partitions: int
) -> tuple[Message | None, str | None]:
    """The entry's message and its actor's state key; (None, None) for an entry deleted
    from the stream (XAUTOCLAIM gives it back empty) or one that is no message."""
    if not fields:
        return None, None
    try:
        message = Message.from_fields(fields)
        return message, Address.parse(message.to).state_key(partitions)
    except (KeyError, ValueError) as exc:
        log.error("dropping mailbox entry %s, not a message (%s): %.200s", entry_id, exc, fields)
        return None, None
