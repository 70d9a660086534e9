"""Committing turns: state, events, commands, messages, replies and mailbox acks at once.

A commit is one call of `lua/turn_commit.lua`, which first checks that this node still
holds the partition's lease with the same fencing token: a node that lost its lease
writes nothing, and the messages stay pending for the partition's next holder. One call
may commit several turns of one partition, in order (`actors/batch.py` decides when);
either all of them and their acks happen or none. Every key written is declared to the
script, and every one is in the partition's hash slot: what goes elsewhere is written to
the partition's outgoing stream and moved on by its forwarder (`forwarder.py`), so the
call is valid on Redis Cluster.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from actors.addresses import Address
from actors.home import Home
from actors.messages import Message
from actors.replies import REPLY_TTL_MS, encode_reply
from actors.scripts import Scripts
from actors.turn import AgentCommand, CommitResult, Turn, encode_field
from actors.values import read_state, text
from actors.writes import record
from orchestra import keys
from orchestra.placement import slot_tag

log = logging.getLogger(__name__)

_WRITES_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


async def load_state(redis: Redis, address: Address, partitions: int) -> dict[str, Any]:
    return await read_state(redis, address.state_key(partitions))


@dataclass
class Committed:
    """A commit that took place: each turn's result, in order, and the hash read back
    right after it (when one was asked for)."""

    results: list[CommitResult]
    read_back: dict[str, str] | None = None


@dataclass
class Plan:
    """What one script call commits: the turns' writes and the mailbox entries to ack.
    Each key is declared once in KEYS and named by its index.

    Every key the commit writes is in the partition's slot (`Home.holds`). A write to any
    other key (mail to another partition, a command in the outbox of an agent living
    elsewhere, a reply, a notification) becomes an entry of the partition's outgoing
    stream, written in the same commit and delivered once by the forwarder
    (`actors/forwarder.py`)."""

    home: Home
    holder: str
    group: str
    keys: list[str] = field(default_factory=list)
    writes: list[list[str | int]] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    commands: list[list[AgentCommand]] = field(default_factory=list)  # committed here
    sent: int = 0  # entries added to the outgoing stream
    _index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key(self.home.lease)
        self.key(self.home.mailbox)

    def __bool__(self) -> bool:
        return bool(self.entry_ids)

    def key(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            self.keys.append(name)
            index = self._index[name] = len(self.keys)
        return index

    def add_turn(
        self, entry_id: str, turn: Turn, reply: dict[str, Any]
    ) -> tuple[dict[str, str], set[str]]:
        """Add the turn's effects, its reply and its ack. Returns the state fields it
        sets, encoded, and the keys it writes otherwise. Raises (adding nothing) when a
        write cannot be sent."""
        partitions = self.home.partitions
        mark = len(self.writes), self.sent
        try:
            changes = {k: encode_field(v) for k, v in turn.changes.items()}
            if changes:
                fields = [item for pair in changes.items() for item in pair]
                self._write(turn.address.state_key(partitions), "HSET", *fields)
            for event in turn.events:
                stream = keys.session_events(event.session_id, partitions)
                data = encode_field(event.data)
                self._write(stream, "XADD", "*", "event", event.event, "data", data)
            others = set()
            direct = []
            for command in turn.commands:
                agent = keys.agent(command.agent_id, partitions)
                outbox = keys.agent_outbox(command.agent_id, partitions)
                data = encode_field(command.data)
                if self.home.holds(agent):
                    self.writes.append(
                        ["O", self.key(agent), self.key(outbox), command.event, data]
                    )
                    direct.append(command)
                else:
                    write = ["O", agent, outbox, command.event, data, command.agent_id]
                    self._send(agent, write)
                others |= {agent, outbox}
            for message in turn.outgoing:
                target = keys.mailbox(Address.parse(message.to).partition(partitions), partitions)
                self._write(target, "XADD", "*", *_flat(message.fields()))
            for recorded in record(turn.writes):
                self._write(recorded.key, recorded.command, *recorded.args)
                others.add(recorded.key)
            now = time.time()
            for delay_s, message in turn.timers:
                at = Address.parse(message.to).partition(partitions)
                due_ms = int((now + delay_s) * 1000)
                timers = keys.timers(at, partitions)
                self._write(timers, "ZADD", due_ms, json.dumps(message.fields()))
        except Exception:
            del self.writes[mark[0] :]
            self.sent = mark[1]
            raise
        self.add_reply(entry_id, turn.message, reply, commands=direct)
        return changes, others

    def add_reply(
        self,
        entry_id: str,
        message: Message | None,
        reply: dict[str, Any],
        commands: list[AgentCommand] | None = None,
    ) -> None:
        """Only the reply (when someone asked) and the ack: a turn whose handler failed,
        or an entry that is no message."""
        if message is not None and message.reply_to:
            inbox = keys.replies(message.reply_to)
            self._write(inbox, "RPUSH", encode_reply(message.id, reply), ttl_ms=REPLY_TTL_MS)
            self._write(inbox, "PEXPIRE", REPLY_TTL_MS, ttl_ms=REPLY_TTL_MS)
        self.entry_ids.append(entry_id)
        self.commands.append(commands or [])

    def _write(self, key: str, command: str, *args: Any, ttl_ms: int = 0) -> None:
        """A command on one key: in the commit when the key is in the partition's slot,
        else by the outgoing stream."""
        if self.home.holds(key):
            self.writes.append(["C", self.key(key), command, *map(_arg, args)])
        else:
            self._send(key, ["C", key, command, *map(_arg, args)], ttl_ms)

    def _send(self, key: str, write: list[Any], ttl_ms: int = 0) -> None:
        """Add an entry for the forwarder: the receiving slot's tag, the write (naming its
        keys), and how long the receiver keeps its mark of it (0: for ever)."""
        fields = ["to", slot_tag(key), "w", _WRITES_ENCODER.encode(write)]
        if ttl_ms:
            fields += ["ttl", str(ttl_ms)]
        self.writes.append(["C", self.key(self.home.out), "XADD", "*", *fields])
        self.sent += 1


async def commit(scripts: Scripts, plan: Plan, read_back: str | None = None) -> Committed | None:
    """Run the plan; None when the lease was lost (nothing was written). `read_back`: a
    hash to return as it is right after the commit (an actor's state). A call sent again
    (the client's retry after a lost connection) commits once and answers the same."""
    wanted = plan.key(read_back) if read_back is not None else 0
    memo = plan.key(keys.commit_memo(plan.home.mailbox, plan.entry_ids[0]))
    writes = _WRITES_ENCODER.encode(plan.writes)
    answer: Any = await scripts.durable(
        scripts.turn_commit,
        plan.keys,
        [plan.holder, plan.group, wanted, writes, memo, *plan.entry_ids],
    )
    if int(answer[0]) != 1:
        return None
    _, ids, flat, errors = answer
    for error in errors:
        log.error("a write of a turn (entries %s) failed: %s", plan.entry_ids, text(error))
    results = []
    position = 0
    for commands in plan.commands:
        count = len(commands)
        command_ids = [int(i) for i in ids[position : position + count]]
        results.append(CommitResult(command_ids, commands))
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
