"""Committing a turn: state, events, commands, messages, reply and mailbox ack at once.

The commit runs in a MULTI/EXEC that WATCHes the partition's lease key and checks that
this node still holds it with the same fencing token: a node that lost its lease writes
nothing, and the message stays pending for the partition's next holder.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from actors import streams
from actors.actor import ActorEnv
from actors.addresses import Address
from actors.messages import Message
from actors.turn import CommitResult, Turn, encode_field
from actors.values import read_state, text
from orchestra import keys

REPLY_TTL_S = 60

Fence = tuple[str, str]  # (lease key, holder value)


class LeaseTouched(Exception):
    """Raised when the watched lease key changed during a commit (this node's own renewal
    does that too): nothing was written, and the turn may be tried again."""


Ack = tuple[str, str, str]  # (stream, group, entry id)


async def load_state(redis: Redis, address: Address) -> dict[str, Any]:
    return await read_state(redis, address.state_key())


async def commit_turn(
    env: ActorEnv, turn: Turn, reply: dict[str, Any], fence: Fence, ack: Ack, partitions: int
) -> CommitResult | None:
    """Write everything the turn did; None when the lease was lost meanwhile."""
    lease_key, holder = fence
    async with env.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(lease_key)
            if text(await pipe.get(lease_key) or b"") != holder:
                return None
            pipe.multi()
            position = 0
            if turn.changes:
                pipe.hset(
                    turn.address.state_key(),
                    mapping={k: encode_field(v) for k, v in turn.changes.items()},
                )
                position += 1
            for event in turn.events:
                streams.queue_xadd(
                    pipe,
                    keys.session_events(event.session_id),
                    {"event": event.event, "data": encode_field(event.data)},
                )
                position += 1
            first_command = position
            for command in turn.commands:
                await env.scripts.outbox_append(
                    keys=[keys.agent(command.agent_id), keys.agent_outbox(command.agent_id)],
                    args=[command.event, encode_field(command.data)],
                    client=pipe,
                )
                position += 1
            for message in turn.outgoing:
                target = Address.parse(message.to).partition(partitions)
                streams.queue_xadd(pipe, keys.mailbox(target), message.fields())
            for op in turn.writes:
                op(pipe)
            for delay_s, message in turn.timers:
                partition = Address.parse(message.to).partition(partitions)
                due_ms = int((time.time() + delay_s) * 1000)
                pipe.zadd(keys.timers(partition), {json.dumps(message.fields()): due_ms})
            _queue_reply(pipe, turn.message, reply)
            pipe.xack(*ack)
            results = await pipe.execute()
        except WatchError:
            raise LeaseTouched from None
    ids = results[first_command : first_command + len(turn.commands)]
    return CommitResult(command_ids=[int(i) for i in ids])


async def reply_only(
    redis: Redis, message: Message, reply: dict[str, Any], fence: Fence, ack: Ack
) -> bool:
    """Answer a message whose handler failed: no state change, but the message is done."""
    lease_key, holder = fence
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(lease_key)
            if text(await pipe.get(lease_key) or b"") != holder:
                return False
            pipe.multi()
            _queue_reply(pipe, message, reply)
            pipe.xack(*ack)
            await pipe.execute()
            return True
        except WatchError:
            raise LeaseTouched from None


def _queue_reply(pipe: Any, message: Message, reply: dict[str, Any]) -> None:
    if message.reply_to:
        key = keys.reply(message.reply_to)
        pipe.lpush(key, json.dumps(reply, separators=(",", ":"), default=str))
        pipe.expire(key, REPLY_TTL_S)
