"""What the alert rules look at, read from Redis and SQL in a few round trips.

- agents: the registered agents (SQL, revoked ones left out) that have an actor state in
  Redis, with their status, their last ping's latency and, where the health check keeps
  one, their `healthy` flag;
- permission requests still pending, of the tasks running now (SQL lists those; their
  task actors' states hold the requests);
- tasks queued longer than a threshold (the dispatch queues' scores are their arrival
  times), with their tool and why they wait;
- the cluster's request counts of the window (`gateway.alerts.tally`).
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from actors.dispatcher import PRIORITIES
from actors.permissions import pending
from actors.values import read_fields, text
from actors.views import agent_status
from gateway.alerts.rules import AgentFacts, QueuedTask, WaitingPermission
from orchestra import keys
from orchestra.codec import parse_timestamp
from orchestra.db import Store

__all__ = ["MAX_LOOKED_AT", "agents", "queued_tasks", "waiting_permissions"]

MAX_LOOKED_AT = 5000  # running tasks, and old queue entries of each priority, per look

_AGENT_FIELDS = ["id", "name", "status", "running", "maxConcurrency", "latencyMs", "healthy"]


async def agents(redis: Redis, store: Store, partitions: int) -> list[AgentFacts]:
    records = [a for a in await store.list_agents() if not a.revoked]
    if not records:
        return []
    states = await read_fields(
        redis, [keys.agent(a.id, partitions) for a in records], _AGENT_FIELDS
    )
    found = []
    for record, state in zip(records, states, strict=True):
        if "status" not in state:
            continue  # never connected
        healthy = state.get("healthy")
        found.append(
            AgentFacts(
                id=record.id,
                name=str(state.get("name") or record.name),
                status=agent_status(state),
                latency_ms=_number(state.get("latencyMs")),
                healthy=healthy if isinstance(healthy, bool) else None,
            )
        )
    return found


async def waiting_permissions(
    redis: Redis, store: Store, partitions: int
) -> list[WaitingPermission]:
    running = await store.running_tasks(limit=MAX_LOOKED_AT)
    if not running:
        return []
    states = await read_fields(
        redis, [keys.task(sid, tid, partitions) for tid, sid, _ in running], ["permissions"]
    )
    now = time.time()
    found = []
    for (task_id, session_id, _), state in zip(running, states, strict=True):
        for view in pending(state):
            asked = view.get("askedAt")
            if not isinstance(asked, str):
                continue
            found.append(
                WaitingPermission(
                    session_id=session_id,
                    task_id=task_id,
                    permission_id=str(view.get("permissionId")),
                    tool=str(view.get("tool") or "the worker"),
                    waited_s=now - parse_timestamp(asked).timestamp(),
                )
            )
    return found


async def queued_tasks(redis: Redis, older_than_s: float, partitions: int) -> list[QueuedTask]:
    """The queued tasks that arrived more than `older_than_s` ago."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for priority in PRIORITIES:
            pipe.zrangebyscore(
                keys.dispatch_queue(priority, partitions),
                "-inf",
                (now - older_than_s) * 1000,
                start=0,
                num=MAX_LOOKED_AT,
                withscores=True,
            )
        queues = await pipe.execute()
    entries: list[tuple[str, str, float]] = []
    for members in queues:
        for member, score in members:
            sid, _, tid = text(member).partition("/")
            entries.append((sid, tid, float(score) / 1000))
    if not entries:
        return []
    states = await read_fields(
        redis,
        [keys.task(sid, tid, partitions) for sid, tid, _ in entries],
        ["status", "tool", "waitingFor"],
    )
    return [
        QueuedTask(
            session_id=sid,
            task_id=tid,
            tool=str(state.get("tool") or "?"),
            waited_s=now - queued_at,
            waiting_for=_text_or_none(state.get("waitingFor")),
        )
        for (sid, tid, queued_at), state in zip(entries, states, strict=True)
        if state.get("status") == "queued"  # an entry the dispatcher has not removed yet
    ]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text_or_none(value: Any) -> str | None:
    return value[:300] if isinstance(value, str) and value else None
