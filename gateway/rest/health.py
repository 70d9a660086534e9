"""`/health`: is this node serving, which node is it, which partitions does it hold, does
it lead the cluster-wide jobs, can it reach what it depends on, how are the agents.
`/health/agents` (admins): the agents at a glance, as the design's AgentHealthSummary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors import Address
from actors.values import read_fields, text
from actors.views import agent_healthy
from gateway.openapi import documented
from gateway.rest.common import admin, node_of
from orchestra import keys
from orchestra.codec import now_iso
from orchestra.protocol.rest import AgentHealthSummary, HealthStatus

bp = Blueprint("health")
PROBE = Address("probe", "health")
#: a check (one round trip) slower than this makes the node degraded
SLOW_CHECK_MS = 2000.0


@bp.get("/health")
@documented(answer=HealthStatus, public=True, also={503: HealthStatus})
async def health(request: Request) -> HTTPResponse:
    """The design's HealthStatus for this node: `status` is

    - `unhealthy` (answered with 503) when Redis, the SQL store or a round trip through an
      actor mailbox fails (`checks`, each with its round trip in `latencyMs`);
    - `degraded` (200) when they all pass but one took longer than 2 s, some connected
      agent is unhealthy (its last ping went unanswered for `agent_pong_timeout_s`), or
      no node holds the leader lease (the cluster-wide jobs are not running);
    - `healthy` (200) otherwise.

    `reasons` says why when it is not healthy. `agents` counts the connected (online or
    busy) agents and the healthy ones among them; `leader` tells whether this node runs
    the cluster-wide jobs, and `jobs` how often each job ran here (a cluster-wide job runs
    only on the leader)."""
    node = node_of(request)
    redis_check, database_check, actors_check = await asyncio.gather(
        _check(node.redis.ping()),
        _check(node.store.ping()),
        # A round trip through a mailbox: some node holds that partition and handles it.
        _check(node.system.ask(PROBE, "ping", {}, timeout_s=min(node.settings.ask_timeout_s, 5.0))),
    )
    checks = {"redis": redis_check, "database": database_check, "actors": actors_check}
    reasons = [f"{name}: {c['message']}" for name, c in checks.items() if c["status"] != "pass"]
    agents: dict[str, int] | None = None
    if not reasons:
        reasons += [
            f"{name} took {c['latencyMs']:g} ms"
            for name, c in checks.items()
            if c["latencyMs"] > SLOW_CHECK_MS
        ]
        agents, led = await _agents_and_leader(node.redis, node.settings.partitions)
        if agents["healthy"] < agents["total"]:
            unhealthy = agents["total"] - agents["healthy"]
            reasons.append(f"{unhealthy} connected agent(s) unhealthy")
        if not led:
            reasons.append("no node leads the cluster-wide jobs")
        status = "degraded" if reasons else "healthy"
    else:
        status = "unhealthy"
    answer: dict[str, Any] = {
        "status": status,
        "timestamp": now_iso(),
        "node": node.settings.node_id,
        "partitions": node.system.held_partitions,
        # Whether this node runs the cluster-wide jobs (exactly one live node does).
        "leader": node.jobs.lease.is_leader,
        "checks": checks,
        "agents": agents,
        "jobs": {name: runs.wire() for name, runs in node.jobs.runs.items()},
    }
    if reasons:
        answer["reasons"] = reasons
    return json(answer, status=503 if status == "unhealthy" else 200)


async def _check(probe: Awaitable[Any]) -> dict[str, Any]:
    """Time one round trip; a failure says only its kind (no addresses or credentials)."""
    started = time.perf_counter()
    try:
        await probe
    except Exception as exc:
        return {"status": "fail", "message": type(exc).__name__}
    return {"status": "pass", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


async def _agents_and_leader(redis: Any, partitions: int) -> tuple[dict[str, int], bool]:
    """`{total, healthy}` of the connected agents, and whether any node holds the leader
    lease (two round trips)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.agents_online(partitions))
        pipe.exists(keys.leader())
        online, led = await pipe.execute()
    states = await read_fields(
        redis,
        [keys.agent(text(a), partitions) for a in online],
        ["status", "healthy", "running", "maxConcurrency"],
    )
    connected = [s for s in states if s.get("status") == "online"]
    healthy = sum(1 for s in connected if agent_healthy(s))
    return {"total": len(connected), "healthy": healthy}, bool(led)


@bp.get("/health/agents")
@documented(answer=AgentHealthSummary, errors=["AUTH_002"])
async def agents_health(request: Request) -> HTTPResponse:
    """`{totalAgents, healthyAgents, timestamp, agents: [{agentId, name, status, healthy,
    latency, lastCheck, error?}]}` over every agent not revoked: healthy when connected
    (online or busy) and its last ping was answered within `agent_pong_timeout_s`;
    `latency` is that ping's round trip in ms, `lastCheck` when the last ping was answered
    or found unanswered (before any, the last heartbeat). Admins only: it names every
    agent."""
    who = admin(request)
    node = node_of(request)
    views = await node.ops.visible_agents(who)
    partitions = node.settings.partitions
    checked = await read_fields(
        node.redis, [keys.agent(v.id, partitions) for v in views], ["checkedAt"]
    )
    timeout_s = node.settings.agent_pong_timeout_s
    agents = []
    for view, state in zip(views, checked, strict=True):
        entry: dict[str, Any] = {
            "agentId": view.id,
            "name": view.name,
            "status": view.status,
            "healthy": bool(view.healthy),
            "latency": view.latency,
            "lastCheck": state.get("checkedAt") or view.last_heartbeat,
        }
        if view.status == "offline":
            entry["error"] = "offline"
        elif not view.healthy:
            entry["error"] = f"no pong within {timeout_s:g} s"
        agents.append(entry)
    return json(
        {
            "totalAgents": len(agents),
            "healthyAgents": sum(1 for a in agents if a["healthy"]),
            "timestamp": now_iso(),
            "agents": agents,
        }
    )
