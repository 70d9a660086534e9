"""`GET /metrics`: this node's metrics in Prometheus's text format, and the timing of
every REST request (`instrument`).

Each node serves its own (`orchestra/metrics.py`); the cluster's figures only while it
leads (`LEADER_ONLY`), and those its leader job counts only while they are recent. With
`metrics_token` set, a scrape must send `Authorization: Bearer <metrics_token>`
(AUTH_001 otherwise); unset, anyone who reaches the port may read them: they hold no ids
and no secrets, only counts by event name, error code, route pattern and status.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, raw

from gateway.jobs.metrics import ClusterGauges
from gateway.openapi import documented
from gateway.rest.common import node_of
from orchestra import metrics
from orchestra.errors import AuthenticationFailed

bp = Blueprint("metrics")

#: Engine.IO's own route: its requests are sockets (counted as such), a websocket's
#: request lasts as long as the connection.
_SOCKETS = "/socket.io"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/metrics")
@documented(answer={"type": "string"}, media_type="text/plain", public=True, errors=["AUTH_001"])
async def scrape(request: Request) -> HTTPResponse:
    node = node_of(request)
    _check_token(request, node.settings.metrics_token)
    body = generate_latest(_Exported(node.metrics.cluster))
    return raw(body, content_type=CONTENT_TYPE_LATEST)


def _check_token(request: Request, token: str) -> None:
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise AuthenticationFailed("a metrics scrape needs the metrics token")


class _Exported:
    """The default registry, less the cluster's figures where this node may not give them."""

    def __init__(self, cluster: ClusterGauges) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        leader = self.cluster.lease.is_leader
        counted = self.cluster.exported()
        for family in REGISTRY.collect():
            if family.name in metrics.CLUSTER_WIDE and not counted:
                continue
            if family.name in metrics.LEADER_ONLY and not leader:
                continue
            yield family


def instrument(app: Sanic) -> None:
    """Time every REST request, by method, route pattern (never the path with its ids)
    and status class: from the first request middleware to the last response one, so
    the time includes authentication and the rate limit, and refusals are timed too."""

    async def start_timer(request: Request) -> None:
        request.ctx.metrics_started_s = time.perf_counter()

    async def observe(request: Request, response: HTTPResponse) -> None:
        started = getattr(request.ctx, "metrics_started_s", None)
        if started is None or request.path.startswith(_SOCKETS):
            return
        route = request.uri_template if request.route is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        metrics.HTTP_LATENCY.labels(
            method, route or "unmatched", f"{response.status // 100}xx"
        ).observe(time.perf_counter() - started)

    app.on_request(start_timer, priority=1000)  # the first of the request middleware
    app.on_response(observe, priority=1000)  # the last of the response middleware
