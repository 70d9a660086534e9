"""`/health`: is this node serving, which node is it, which partitions does it hold."""

from __future__ import annotations

import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.rest.common import node_of
from orchestra.codec import now_iso

bp = Blueprint("health")


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    node = node_of(request)
    checks = {}
    started = time.perf_counter()
    try:
        await node.redis.ping()
        checks["redis"] = {
            "status": "pass",
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
        }
    except Exception as exc:
        checks["redis"] = {"status": "fail", "message": type(exc).__name__}
    started = time.perf_counter()
    try:
        await node.store.ping()
        checks["database"] = {
            "status": "pass",
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
        }
    except Exception as exc:
        checks["database"] = {"status": "fail", "message": type(exc).__name__}
    healthy = all(c["status"] == "pass" for c in checks.values())
    return json(
        {
            "status": "healthy" if healthy else "unhealthy",
            "timestamp": now_iso(),
            "node": node.settings.node_id,
            "partitions": node.system.held_partitions,
            "checks": checks,
        },
        status=200 if healthy else 503,
    )
