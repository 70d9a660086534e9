"""`/health`: is this node serving, which node is it, which partitions does it hold, does
it lead the cluster-wide jobs. `/health/agents` (admins): the agents at a glance, as the
design's AgentHealthSummary."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors import Address
from gateway.rest.common import admin, node_of
from orchestra.codec import now_iso

bp = Blueprint("health")
PROBE = Address("probe", "health")
#: an agent whose ping round trip takes longer is not healthy (the design's alert rule)
SLOW_MS = 5000.0


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    node = node_of(request)
    checks = {
        "redis": await _check(node.redis.ping()),
        "database": await _check(node.store.ping()),
        # A round trip through a mailbox: some node holds that partition and handles it.
        "actors": await _check(
            node.system.ask(PROBE, "ping", {}, timeout_s=min(node.settings.ask_timeout_s, 5.0))
        ),
    }
    healthy = all(c["status"] == "pass" for c in checks.values())
    return json(
        {
            "status": "healthy" if healthy else "unhealthy",
            "timestamp": now_iso(),
            "node": node.settings.node_id,
            "partitions": node.system.held_partitions,
            # Whether this node runs the cluster-wide jobs (exactly one live node does).
            "leader": node.jobs.lease.is_leader,
            "checks": checks,
        },
        status=200 if healthy else 503,
    )


async def _check(probe: Awaitable[Any]) -> dict[str, Any]:
    """Time one round trip; a failure says only its kind (no addresses or credentials)."""
    started = time.perf_counter()
    try:
        await probe
    except Exception as exc:
        return {"status": "fail", "message": type(exc).__name__}
    return {"status": "pass", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


@bp.get("/health/agents")
async def agents_health(request: Request) -> HTTPResponse:
    """`{totalAgents, healthyAgents, timestamp, agents: [{agentId, name, status, healthy,
    latency, lastCheck}]}` over every agent not revoked: healthy when connected (online or
    busy) and its last ping came back within `SLOW_MS`. Admins only: it names every agent."""
    who = admin(request)
    views = await node_of(request).ops.visible_agents(who)
    agents = []
    for view in views:
        latency = view.latency
        healthy = view.status != "offline" and (latency is None or latency <= SLOW_MS)
        agents.append(
            {
                "agentId": view.id,
                "name": view.name,
                "status": view.status,
                "healthy": healthy,
                "latency": latency,
                "lastCheck": view.last_heartbeat,
            }
        )
    return json(
        {
            "totalAgents": len(agents),
            "healthyAgents": sum(1 for a in agents if a["healthy"]),
            "timestamp": now_iso(),
            "agents": agents,
        }
    )
