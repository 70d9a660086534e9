"""The dispatcher actor: takes waiting tasks off the queues and gives them to agents.

There is one dispatcher (`dispatcher:default`), so dispatch decisions are made one turn at
a time and two tasks never race for an agent's last slot. A turn ("kick") looks at the
queues in priority order (high, normal, low; first come first served within one), finds the
agents that may take each task (the owner's agents, online, healthy, with a free slot and
the needed capabilities, not one that rejected the task) and lets the task's strategy pick.
A task no agent can take stays queued and is told why; kicks come when a task is queued,
an agent registers or frees a slot, and every few seconds while anything waits.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from typing import Any

from actors.actor import Actor
from actors.addresses import Address, task_address
from actors.dispatch import AgentSnapshot, TaskNeeds, eligible, strategy, why_not
from actors.turn import Turn, decode_state
from actors.values import strings, text
from orchestra import keys

DISPATCHER = Address("dispatcher", "default")
PRIORITIES = ("high", "normal", "low")
_SCAN = 200  # queued tasks looked at per kick
_PENDING_S = 30.0  # how long an assignment counts as load before the agent's state shows it
_RETRY_KICK_S = 5.0
# What a kick reads of each queued task.
_TASK_FIELDS = [
    "status", "ownerId", "rejectedBy", "tool", "requiredCapabilities", "strategy", "attempts"
]  # fmt: skip


@dataclass
class _Agent:
    snapshot: AgentSnapshot
    owner_id: str
    running: set[str]


class DispatcherActor(Actor):
    kind = "dispatcher"

    async def on_kick(self, turn: Turn) -> None:
        now = time.time()
        partitions = self.env.settings.partitions
        seen = await self._look(turn)
        agents = seen.agents(now)
        pending = self._count_pending(turn, agents, seen.pending_status, now)
        cursor = int(turn.state.get("cursor", 0))
        rng = random.Random()
        max_age_s = self.env.settings.heartbeat_interval_s * 3
        waiting = 0
        for (priority, member), task in zip(seen.queued, seen.tasks, strict=True):
            sid, _, tid = member.partition("/")
            if task.get("status") != "queued":
                turn.write(_dequeue(keys.dispatch_queue(priority, partitions), member))
                continue
            allowed = [
                a.snapshot
                for a in agents.values()
                # The owner's own agents only, an admin's too: an admin uses another
                # user's agent only by naming it (`agentId`), never through the queue.
                if a.owner_id == task.get("ownerId")
                and a.snapshot.id not in (task.get("rejectedBy") or [])
            ]
            needs = TaskNeeds(
                tool=task["tool"],
                required_capabilities=frozenset(task.get("requiredCapabilities") or ()),
            )
            candidates = eligible(allowed, needs, max_heartbeat_age_s=max_age_s)
            if not candidates:
                waiting += 1
                reason = why_not(allowed, needs, max_heartbeat_age_s=max_age_s)
                turn.tell(task_address(sid, tid), "waiting", {"reason": reason})
                continue
            pick = strategy(task.get("strategy") or self.env.settings.dispatch_strategy)
            chosen = pick.choose(candidates, cursor=cursor, rng=rng)
            cursor += 1
            turn.tell(task_address(sid, tid), "assign", {"agentId": chosen.id})
            pending[member] = [chosen.id, now, int(task.get("attempts") or 0)]
            agent = agents[chosen.id]
            agent.snapshot = replace(agent.snapshot, running=agent.snapshot.running + 1)
        turn.set(cursor=cursor, pending=pending)
        if waiting and float(turn.state.get("nextKickAt", 0)) <= now:
            turn.set(nextKickAt=now + _RETRY_KICK_S)
            turn.schedule(_RETRY_KICK_S, "kick")

    async def _look(self, turn: Turn) -> _Seen:
        """What a kick looks at, in two round trips: the online agents and the queues,
        then the agents' states, the queued tasks' fields and the statuses of the tasks
        assigned lately (`pending`)."""
        redis = self.env.redis
        partitions = self.env.settings.partitions
        async with redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.agents_online(partitions))
            for priority in PRIORITIES:
                pipe.zrange(keys.dispatch_queue(priority, partitions), 0, _SCAN - 1)
            online, *queues = await pipe.execute()
        queued = [
            (priority, text(member))
            for priority, members in zip(PRIORITIES, queues, strict=True)
            for member in members
        ]
        pending = list(turn.state.get("pending") or {})
        agent_keys = [keys.agent(text(agent_id), partitions) for agent_id in online]
        task_keys = [keys.task(*_split(member), partitions) for _, member in queued]
        pending_keys = [keys.task(*_split(member), partitions) for member in pending]
        async with redis.pipeline(transaction=False) as pipe:
            for key in agent_keys:
                pipe.hgetall(key)
            for key in task_keys:
                pipe.hmget(key, _TASK_FIELDS)
            for key in pending_keys:
                pipe.hmget(key, ["status", "attempts"])
            replies = await pipe.execute()
        agent_states = [decode_state(strings(raw)) for raw in replies[: len(agent_keys)]]
        task_replies = replies[len(agent_keys) : len(agent_keys) + len(task_keys)]
        tasks = [
            decode_state(
                {f: text(v) for f, v in zip(_TASK_FIELDS, values, strict=True) if v is not None}
            )
            for values in task_replies
        ]
        statuses = replies[len(agent_keys) + len(task_keys) :]
        return _Seen(
            agent_states,
            queued,
            tasks,
            {m: _progress(v) for m, v in zip(pending, statuses, strict=True)},
        )

    def _count_pending(
        self,
        turn: Turn,
        agents: dict[str, _Agent],
        statuses: dict[str, tuple[str | None, int]],
        now: float,
    ) -> dict[str, list[Any]]:
        """Assignments the agents' states do not show yet count as load, so that quick
        kicks in a row do not hand one free slot out twice. One stops counting once the
        agent lists the task, or the task has moved on: assigned elsewhere, ended, or
        queued again after that attempt (its `attempts` says which one it is at: still
        queued with the count it had when assigned, the assignment is on its way)."""
        pending: dict[str, list[Any]] = {}
        for member, (agent_id, at, *seen) in (turn.state.get("pending") or {}).items():
            agent = agents.get(agent_id)
            _, tid = _split(member)
            if agent is None or tid in agent.running or now - float(at) > _PENDING_S:
                continue
            status, attempts = statuses.get(member, (None, 0))
            before = int(seen[0]) if seen else attempts - (status == '"assigned"')
            if (status, attempts) not in (('"queued"', before), ('"assigned"', before + 1)):
                continue
            pending[member] = [agent_id, at, before]
            agent.snapshot = replace(agent.snapshot, running=agent.snapshot.running + 1)
        return pending


@dataclass
class _Seen:
    """What one kick read."""

    agent_states: list[dict[str, Any]]
    queued: list[tuple[str, str]]  # (priority, "<sid>/<tid>") in queue order
    tasks: list[dict[str, Any]]  # the queued tasks' `_TASK_FIELDS`, in the same order
    pending_status: dict[str, tuple[str | None, int]]  # a pending member -> raw status, attempts

    def agents(self, now: float) -> dict[str, _Agent]:
        found: dict[str, _Agent] = {}
        for state in self.agent_states:
            if state.get("id"):
                found[state["id"]] = _Agent(
                    AgentSnapshot.from_state(state, now),
                    state.get("ownerId", ""),
                    set(state.get("running") or ()),
                )
        return found


def _progress(values: Any) -> tuple[str | None, int]:
    """A task's raw `status` field and its `attempts`, as HMGET gives them."""
    status, attempts = values
    return (None if status is None else text(status)), int(text(attempts) if attempts else 0)


def _split(member: str) -> tuple[str, str]:
    sid, _, tid = member.partition("/")
    return sid, tid


def _dequeue(queue: str, member: str) -> Any:
    return lambda pipe: pipe.zrem(queue, member)
