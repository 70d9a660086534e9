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
from actors.turn import Turn
from actors.values import read_state, text
from orchestra import keys

DISPATCHER = Address("dispatcher", "default")
PRIORITIES = ("high", "normal", "low")
_SCAN = 200  # queued tasks looked at per kick
_PENDING_S = 30.0  # how long an assignment counts as load before the agent's state shows it
_RETRY_KICK_S = 5.0


@dataclass
class _Agent:
    snapshot: AgentSnapshot
    owner_id: str
    running: set[str]


class DispatcherActor(Actor):
    kind = "dispatcher"

    async def on_kick(self, turn: Turn) -> None:
        redis = self.env.redis
        now = time.time()
        agents = await self._agents(now)
        pending = await self._count_pending(turn, agents, now)
        cursor = int(turn.state.get("cursor", 0))
        rng = random.Random()
        max_age_s = self.env.settings.heartbeat_interval_s * 3
        waiting = 0
        for priority in PRIORITIES:
            for member in await redis.zrange(keys.dispatch_queue(priority), 0, _SCAN - 1):
                sid, _, tid = text(member).partition("/")
                task = await read_state(redis, keys.task(sid, tid))
                if task.get("status") != "queued":
                    turn.write(_dequeue(priority, text(member)))
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
                pending[f"{sid}/{tid}"] = [chosen.id, now]
                agent = agents[chosen.id]
                agent.snapshot = replace(agent.snapshot, running=agent.snapshot.running + 1)
        turn.set(cursor=cursor, pending=pending)
        if waiting and float(turn.state.get("nextKickAt", 0)) <= now:
            turn.set(nextKickAt=now + _RETRY_KICK_S)
            turn.schedule(_RETRY_KICK_S, "kick")

    async def _agents(self, now: float) -> dict[str, _Agent]:
        redis = self.env.redis
        found: dict[str, _Agent] = {}
        for agent_id in await redis.smembers(keys.agents_online()):
            state = await read_state(redis, keys.agent(text(agent_id)))
            if state.get("id"):
                found[state["id"]] = _Agent(
                    AgentSnapshot.from_state(state, now),
                    state.get("ownerId", ""),
                    set(state.get("running") or ()),
                )
        return found

    async def _count_pending(
        self, turn: Turn, agents: dict[str, _Agent], now: float
    ) -> dict[str, list[Any]]:
        """Assignments the agents' states do not show yet count as load, so that quick
        kicks in a row do not hand one free slot out twice. One stops counting once the
        agent lists the task, or the task has moved on (assigned elsewhere, or ended)."""
        pending: dict[str, list[Any]] = {}
        for member, (agent_id, at) in (turn.state.get("pending") or {}).items():
            agent = agents.get(agent_id)
            sid, _, tid = member.partition("/")
            if agent is None or tid in agent.running or now - float(at) > _PENDING_S:
                continue
            status = await self.env.redis.hget(keys.task(sid, tid), "status")
            if status is None or text(status) not in ('"queued"', '"assigned"'):
                continue
            pending[member] = [agent_id, at]
            agent.snapshot = replace(agent.snapshot, running=agent.snapshot.running + 1)
        return pending


def _dequeue(priority: str, member: str) -> Any:
    return lambda pipe: pipe.zrem(keys.dispatch_queue(priority), member)
