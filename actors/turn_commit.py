"""Committing turns: state, events, commands, messages, replies and mailbox acks at once.

A commit is one call of `lua/turn_commit.lua`, which first checks that this node still
holds the partition's lease with the same fencing token: a node that lost its lease
writes nothing, and the messages stay pending for the partition's next holder. One call
may commit several turns of one partition, in order (`actors/batch.py` decides when);
either all of them and their acks happen or none. Every key written is declared to the
script.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from actors.addresses import Address
from actors.messages import Message
from actors.replies import REPLY_TTL_MS, encode_reply
from actors.scripts import Scripts
from actors.turn import CommitResult, Turn, encode_field
from actors.values import read_state, text
from actors.writes import record
from orchestra import keys

log = logging.getLogger(__name__)

Fence = tuple[str, str]  # (lease key, holder value)
_WRITES_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


async def load_state(redis: Redis, address: Address) -> dict[str, Any]:
    return await read_state(redis, address.state_key())


@dataclass
class Committed:
    """A commit that took place: each turn's result, in order, and the hash read back
    right after it (when one was asked for)."""

    results: list[CommitResult]
    read_back: dict[str, str] | None = None


@dataclass
class Plan:
    """What one script call commits: the turns' writes and the mailbox entries to ack.
    Each key is declared once in KEYS and named by its index."""

    fence: Fence
    stream: str
    group: str
    keys: list[str] = field(default_factory=list)
    writes: list[list[str | int]] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    commands: list[int] = field(default_factory=list)  # agent commands of each turn
    _index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key(self.fence[0])
        self.key(self.stream)

    def __bool__(self) -> bool:
        return bool(self.entry_ids)

    def key(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            self.keys.append(name)
            index = self._index[name] = len(self.keys)
        return index

    def add_turn(
        self, entry_id: str, turn: Turn, reply: dict[str, Any], partitions: int
    ) -> tuple[dict[str, str], set[str]]:
        """Add the turn's effects, its reply and its ack. Returns the state fields it
        sets, encoded, and the keys it writes otherwise. Raises (adding nothing) when a
        write cannot be sent."""
        own: list[list[str | int]] = []
        changes = {k: encode_field(v) for k, v in turn.changes.items()}
        if changes:
            fields = [item for pair in changes.items() for item in pair]
            own.append(self._call("HSET", turn.address.state_key(), *fields))
        writes: list[list[str | int]] = []
        for event in turn.events:
            stream = keys.session_events(event.session_id)
            data = encode_field(event.data)
            writes.append(self._call("XADD", stream, "*", "event", event.event, "data", data))
        others = set()
        for command in turn.commands:
            agent, outbox = keys.agent(command.agent_id), keys.agent_outbox(command.agent_id)
            data = encode_field(command.data)
            writes.append(["O", self.key(agent), self.key(outbox), command.event, data])
            others |= {agent, outbox}
        for message in turn.outgoing:
            target = keys.mailbox(Address.parse(message.to).partition(partitions))
            writes.append(self._call("XADD", target, "*", *_flat(message.fields())))
        for write in record(turn.writes):
            writes.append(self._call(write.command, write.key, *write.args))
            others.add(write.key)
        now = time.time()
        for delay_s, message in turn.timers:
            timers = keys.timers(Address.parse(message.to).partition(partitions))
            due_ms = int((now + delay_s) * 1000)
            writes.append(self._call("ZADD", timers, due_ms, json.dumps(message.fields())))
        self.writes += own + writes
        self.add_reply(entry_id, turn.message, reply, commands=len(turn.commands))
        return changes, others

    def add_reply(
        self, entry_id: str, message: Message | None, reply: dict[str, Any], commands: int = 0
    ) -> None:
        """Only the reply (when someone asked) and the ack: a turn whose handler failed,
        or an entry that is no message."""
        if message is not None and message.reply_to:
            inbox = keys.replies(message.reply_to)
            self.writes.append(self._call("RPUSH", inbox, encode_reply(message.id, reply)))
            self.writes.append(self._call("PEXPIRE", inbox, REPLY_TTL_MS))
        self.entry_ids.append(entry_id)
        self.commands.append(commands)

    def _call(self, command: str, key: str, *args: Any) -> list[str | int]:
        return ["C", self.key(key), command, *map(_arg, args)]


async def commit(scripts: Scripts, plan: Plan, read_back: str | None = None) -> Committed | None:
    """Run the plan; None when the lease was lost (nothing was written). `read_back`: a
    hash to return as it is right after the commit (an actor's state). A call sent again
    (the client's retry after a lost connection) commits once and answers the same."""
    wanted = plan.key(read_back) if read_back is not None else 0
    memo = plan.key(keys.commit_memo(plan.stream, plan.entry_ids[0]))
    writes = _WRITES_ENCODER.encode(plan.writes)
    answer: Any = await scripts.turn_commit(
        keys=plan.keys, args=[plan.fence[1], plan.group, wanted, writes, memo, *plan.entry_ids]
    )
    if int(answer[0]) != 1:
        return None
    _, ids, flat, errors = answer
    for error in errors:
        log.error("a write of a turn (entries %s) failed: %s", plan.entry_ids, text(error))
    results = []
    position = 0
    for count in plan.commands:
        results.append(CommitResult([int(i) for i in ids[position : position + count]]))
        position += count
    state = None
    if wanted:
        state = {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
    return Committed(results, state)


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _arg(value: Any) -> str:
    """A command argument as redis-py would send it, as a JSON string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"a turn's write cannot send {type(value).__name__} {value!r}")
