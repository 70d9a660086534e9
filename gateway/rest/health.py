"""`/health`: is this node serving, which node is it, which partitions does it hold, does
it lead the cluster-wide jobs."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors import Address
from gateway.rest.common import node_of
from orchestra.codec import now_iso

bp = Blueprint("health")
PROBE = Address("probe", "health")


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
