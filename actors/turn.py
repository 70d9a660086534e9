"""A turn: what one message's handler changes, committed to Redis in one transaction.

A handler never writes to Redis itself. It records its effects on the `Turn` (state
fields, session events, agent commands, messages to other actors, a reply), and the
runtime commits them together with the acknowledgement of the mailbox entry in one Lua
script call, fenced on the partition's lease (`turn_commit.py`). So a message's effect
happens once: either all of it and the ack, or none of it and the message is handled
again (DESIGN.md §2, guarantee 2).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors.addresses import Address
from actors.messages import Message
from actors.messages import encode_field as encode_field  # where turns take it from
from orchestra.trace import current_trace_id

AfterCommit = Callable[["CommitResult"], Awaitable[None]]
Write = Callable[[Any], None]  # queues one more command on the commit (`writes.py`)


def decode_state(raw: dict[str, str]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            state[key] = json.loads(value)
        except ValueError:
            state[key] = value
    return state


@dataclass(slots=True)
class SessionEvent:
    session_id: str
    event: str
    data: dict[str, Any]


@dataclass(slots=True)
class AgentCommand:
    agent_id: str
    event: str
    data: dict[str, Any]


@dataclass(slots=True)
class CommitResult:
    """What the commit produced: the agent commands it put in outboxes of the partition's
    own slot, and their commandIds, in order. (A command to an agent living in another
    partition is put in its outbox, and pushed, by the forwarder.)"""

    command_ids: list[int] = field(default_factory=list)
    commands: list[AgentCommand] = field(default_factory=list)


@dataclass
class Turn:
    """The effects of handling one message, and the state as the handler sees it."""

    address: Address
    message: Message
    state: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    events: list[SessionEvent] = field(default_factory=list)
    commands: list[AgentCommand] = field(default_factory=list)
    outgoing: list[Message] = field(default_factory=list)
    timers: list[tuple[float, Message]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    state_keys_to_delete: list[str] = field(default_factory=list)
    after: list[AfterCommit] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return bool(self.state)

    def set(self, **fields: Any) -> None:
        """Change state fields; the handler sees the new values at once."""
        self.state.update(fields)
        self.changes.update(fields)

    def emit(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        """Append an event to a session's stream; watchers receive it with its eventId."""
        self.events.append(SessionEvent(session_id, event, data))

    def command(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        """Queue a command in an agent's outbox; it gets the next commandId, and the
        turn's trace id as `traceId` (the agent logs its work on it under that id)."""
        trace_id = self.message.trace_id or current_trace_id()
        if trace_id:
            data = {**data, "traceId": trace_id}
        self.commands.append(AgentCommand(agent_id, event, data))

    def tell(self, to: Address, type: str, body: dict[str, Any] | None = None) -> None:
        self.outgoing.append(
            Message(to=str(to), type=type, body=body or {}, sender=str(self.address))
        )

    def schedule(self, delay_s: float, type: str, body: dict[str, Any] | None = None) -> None:
        """Send this actor `type` after `delay_s`, even if this node dies meanwhile."""
        message = Message(to=str(self.address), type=type, body=body or {}, sender="timer")
        self.timers.append((delay_s, message))

    def write(self, op: Write) -> None:
        """Add a Redis write to the turn's commit (a queue of the dispatcher, say): `op`
        gets a pipeline-like recorder and calls one redis-py command method on it per
        write, each writing one key (`actors/writes.py`)."""
        self.writes.append(op)

    def after_commit(self, effect: AfterCommit) -> None:
        """Run `effect` once the turn has committed (socket emits to non-session rooms)."""
        self.after.append(effect)
