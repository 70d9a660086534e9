"""Moving a partition's outgoing stream on: the second half of a transactional outbox.

A turn writes only keys of its partition's hash slot (`turn_commit.py`). What it sends
elsewhere (mail to an actor of another partition, a command to an agent living in another
partition, an `ask`'s reply, a notification) is an entry of the partition's outgoing
stream, written in the same commit. The node holding the partition moves those entries
on, here, at least once; the receiving slot drops a repeat by the entry's id
(`lua/deliver.lua`). So a crash between the commit and the delivery loses nothing (the
next holder delivers from the stream's head), and one after the delivery doubles nothing
(docs/redis-cluster.md §3).

Rules that make it exactly once and in order:
- the entries for one receiving slot (a lane) are delivered in stream order, and never
  past one that failed: the stream is always read from its head, and a lane's entries go
  in one script call, which applies all of them or none;
- a delivered entry is deleted from the stream only after its delivery succeeded; a
  forwarder that lost its lease may still deliver a prefix, which the receiver's mark
  turns into a no-op or an in-order step;
- replies go last: an `ask`er hears back only once everything else the turn sent is
  delivered (when a lane fails, the round's replies wait for the next round).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from actors import streams
from actors.actor import ActorEnv
from actors.home import Home
from actors.values import text
from orchestra import keys
from orchestra.placement import slot_tag

log = logging.getLogger(__name__)

_BATCH = 200  # entries moved per round
_RETRY_S = (0.05, 2.0)  # backoff after a failed round: first, longest


@dataclass
class _Lane:
    """The entries of one round for one receiving slot, in stream order."""

    tag: str
    ids: list[str] = field(default_factory=list)
    writes: list[list[Any]] = field(default_factory=list)
    ttl_ms: int = 0


class Forwarder:
    """Delivers one partition's outgoing stream while this node holds the partition."""

    def __init__(self, env: ActorEnv, home: Home) -> None:
        self.env = env
        self.home = home
        self.seen = "0-0"  # the newest entry id read: the partition's loop waits past it
        self._wake = asyncio.Event()
        self._wake.set()  # a new holder first delivers what the previous one left

    def poke(self) -> None:
        """New entries may wait (a commit added some, or the stream grew)."""
        self._wake.set()

    async def run(self) -> None:
        delay_s = _RETRY_S[0]
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self._round():
                    pass
                delay_s = _RETRY_S[0]
            except RedisError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.warning(
                    "partition %d: forwarding failed, retrying: %s", self.home.partition, exc
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_S[1])
                self._wake.set()
            except Exception:  # a bug: keep the entries, say so, try again later
                log.exception("partition %d: forwarding failed, retrying", self.home.partition)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_S[1])
                self._wake.set()

    async def _round(self) -> bool:
        """Deliver what the stream holds, from its head. True when more may wait."""
        redis = self.env.redis
        entries = await streams.xrange(redis, self.home.out, "-", "+", _BATCH)
        if not entries:
            return False
        self.seen = max(self.seen, entries[-1][0], key=_id_order)
        lanes: dict[str, _Lane] = {}
        for entry_id, fields in entries:
            tag = fields.get("to", "")
            lane = lanes.setdefault(tag, _Lane(tag))
            lane.ids.append(entry_id)
            lane.writes.append(_decode(entry_id, fields.get("w", "")))
            lane.ttl_ms = max(lane.ttl_ms, int(fields.get("ttl") or 0))
        replies = [lane for lane in lanes.values() if keys.inbox_of_replies(lane.tag)]
        others = [lane for lane in lanes.values() if not keys.inbox_of_replies(lane.tag)]
        delivered, failed = await self._deliver_all(others)
        if not failed:
            more, failed = await self._deliver_all(replies)
            delivered += more
        if delivered:
            await redis.xdel(self.home.out, *delivered)
        if failed:
            raise failed[0]
        return len(entries) == _BATCH

    async def _deliver_all(self, lanes: list[_Lane]) -> tuple[list[str], list[RedisError]]:
        """Deliver lanes concurrently: the ids of those delivered, the errors of the rest
        (their entries stay in the stream for the next round)."""
        answers = await asyncio.gather(
            *(self._deliver(lane) for lane in lanes), return_exceptions=True
        )
        delivered: list[str] = []
        failed: list[RedisError] = []
        for lane, answer in zip(lanes, answers, strict=True):
            if isinstance(answer, RedisError):
                failed.append(answer)
            elif isinstance(answer, Exception):
                log.error("lane %d -> %s failed: %r", self.home.partition, lane.tag, answer)
                failed.append(RedisError(f"lane {lane.tag}: {answer!r}"))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                delivered += lane.ids
        return delivered, failed

    async def _deliver(self, lane: _Lane) -> None:
        """One lane, one script call in the receiving slot; then push the agent commands
        it put in outboxes to their agents' sockets."""
        names = [keys.inbound(lane.tag)]
        index: dict[str, int] = {names[0]: 1}

        def at(key: str) -> int:
            if slot_tag(key) != lane.tag:
                raise ValueError(f"{key} is not in slot tag {lane.tag}")
            if key not in index:
                names.append(key)
                index[key] = len(names)
            return index[key]

        payload = []
        for entry_id, write in zip(lane.ids, lane.writes, strict=True):
            if not write:  # unreadable: delivered as nothing, so it cannot block the lane
                continue
            if write[0] == "O":
                payload.append([entry_id, ["O", at(write[1]), at(write[2]), *write[3:5]]])
            else:
                payload.append([entry_id, ["C", at(write[1]), *write[2:]]])
        scripts = self.env.scripts
        answer: Any = await scripts.durable(
            scripts.deliver, names, [self.home.tag, lane.ttl_ms, json.dumps(payload)]
        )
        _, commands, errors = answer
        for error in errors:
            log.error("a write delivered to %s failed: %s", lane.tag, text(error))
        by_id = dict(zip(lane.ids, lane.writes, strict=True))
        for entry_id, command_id in commands:
            write = by_id[text(entry_id)]
            await self._push(write[5], write[3], write[4], int(command_id))

    async def _push(self, agent_id: str, event: str, data: str, command_id: int) -> None:
        """A command now in its agent's outbox, to the agent's socket. One that does not
        arrive is made good by the outbox (the agent gets what it lacks when it registers,
        and unacknowledged commands are sent again)."""
        try:
            await self.env.outlet.to_agent(
                agent_id, event, {"commandId": command_id, **json.loads(data)}
            )
        except Exception:
            log.exception("pushing %s to agent %s failed", event, agent_id)


def _decode(entry_id: str, raw: str) -> list[Any]:
    with contextlib.suppress(ValueError):
        write = json.loads(raw)
        if isinstance(write, list) and len(write) >= 3 and write[0] in ("C", "O"):
            return write
    log.error("outgoing entry %s is not a write, dropped: %.200s", entry_id, raw)
    return []


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
