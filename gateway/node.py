"""One gateway node: its connections, its actor system and its socket namespaces.

Everything a request handler needs hangs off the `Node`, which the Sanic app keeps in
`app.ctx.node`; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from redis.asyncio import Redis

from actors import KINDS, ActorEnv, ActorSystem, Scripts
from gateway.agent_health import find_silent_agents
from gateway.alerts import Alerts
from gateway.auth import Tokens, verify_agent_handshake
from gateway.command_resend import CommandResender
from gateway.feed import SessionFeed
from gateway.history import History
from gateway.jobs import Jobs, LeaderLease, trim_session_streams
from gateway.jobs.housekeeping import add_housekeeping
from gateway.jobs.metrics import NodeMetrics
from gateway.keyspace import ensure_layout
from gateway.login_limit import LoginLimiter
from gateway.operations import Operations
from gateway.outlet import AGENT, WEB, SocketOutlet
from gateway.rate_limit import RateLimiter
from gateway.revocation import Credentials
from gateway.socket_caps import SocketCaps
from gateway.sockets.agent import AgentNamespace
from gateway.sockets.cluster_manager import ClusterRedisManager
from gateway.sockets.metered import RedisManager
from gateway.sockets.server import Server, origin_check
from gateway.sockets.web import WebNamespace
from gateway.web_push import PushDispatcher
from gateway.webhooks import WebhookDispatcher
from orchestra import keys
from orchestra.db import Store
from orchestra.loop_watch import LoopWatch, settle_heap
from orchestra.redis_client import connect, is_cluster
from orchestra.settings import Settings

log = logging.getLogger(__name__)

#: The longest one part of a stopping node may take (`Node.stop`).
STOP_STEP_S = 5.0


def connect_redis(url: str) -> Redis:
    """A client that rides out a Redis restart or a cluster failover: commands retry
    with backoff (`orchestra.redis_client.connect`; `redis+cluster://` for a cluster)."""
    return connect(url)


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = connect_redis(settings.redis_url)
        self.scripts = Scripts(
            self.redis,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )
        self.store = Store(settings.database_url, secrets_key=settings.secrets_key)
        # Revoked families are remembered until their last access token would have expired.
        self.credentials = Credentials(
            self.redis, self.store, family_ttl_s=settings.access_token_ttl_s + 60
        )
        self.tokens = Tokens(settings, self.store, self.credentials)
        self.rate_limiter = RateLimiter(self.redis, settings)
        self.login_limiter = LoginLimiter(self.redis, settings)
        # Engine.IO's own limit sits above ours, so that an oversized event reaches the
        # namespace and gets RES_001 instead of a dropped connection.
        transport_limit = settings.max_payload_bytes * 4 + 64 * 1024
        self.sio = Server(
            async_mode="sanic",
            # On a cluster, python-socketio's own manager cannot connect: ours, on our client.
            client_manager=(
                ClusterRedisManager(
                    settings.redis_url, channel=keys.socketio_channel(), redis=self.redis
                )
                if is_cluster(self.redis)
                else RedisManager(settings.redis_url, channel=keys.socketio_channel())
            ),
            # The gateway's own origin (its console) and those listed; "*" only if the
            # user listed it (the production profile refuses that).
            cors_allowed_origins=origin_check(settings.allowed_origins),
            transports=list(settings.transports),
            max_http_buffer_size=transport_limit,
            ping_interval=25,
            ping_timeout=max(20, int(settings.connection_timeout_s)),
            # Events of one socket are handled one after another, in the order sent: an
            # agent's output and its final status must reach the stream in that order.
            async_handlers=False,
        )
        self.transport_limit = transport_limit
        self.loop_watch = (
            LoopWatch(settings.loop_stall_warn_ms / 1000) if settings.loop_stall_warn_ms else None
        )
        self.outlet = SocketOutlet(self.sio, self.redis, settings.partitions)
        env = ActorEnv(
            redis=self.redis,
            scripts=self.scripts,
            store=self.store,
            settings=settings,
            outlet=self.outlet,
        )
        self.system = ActorSystem(env, dict(KINDS))
        self.ops = Operations(self.redis, self.store, self.system, self.credentials)
        self.web = WebNamespace(WEB, self)
        self.agents = AgentNamespace(AGENT, self)
        self.history = History(self.redis, self.store, settings.partitions)
        self.feed = SessionFeed(self.history, self._send_to_web, self.web.send_shared)
        self.jobs = Jobs(
            LeaderLease(self.redis, self.scripts, settings.node_id, settings.lease_ttl_s)
        )
        self.jobs.add(
            "trim-session-streams",
            settings.stream_trim_interval_s,
            partial(
                trim_session_streams, self.redis, self.system, settings.session_stream_max_events
            ),
            cluster_wide=True,
        )
        self.jobs.add(
            "find-silent-agents",
            settings.heartbeat_interval_s,
            partial(find_silent_agents, self.redis, self.system, settings.heartbeat_interval_s),
            cluster_wide=True,
        )
        # The leader's health check (pings) and cleanup jobs (`gateway/jobs/housekeeping.py`).
        add_housekeeping(self.jobs, self.redis, self.system, settings)
        # Metrics (`GET /metrics`): this node's round trips and mailboxes, and while it
        # leads, the cluster's tasks, queue and archive lag (`gateway/jobs/metrics.py`).
        self.metrics = NodeMetrics(
            self.redis,
            self.store,
            self.system,
            self.jobs.lease,
            settings.metrics_interval_s,
        )
        self.jobs.add(
            "node-metrics", settings.metrics_interval_s, self.metrics.probe, cluster_wide=False
        )
        self.jobs.add(
            "cluster-metrics",
            settings.metrics_interval_s,
            self.metrics.cluster.refresh,
            cluster_wide=True,
        )
        self.resender = CommandResender(
            self.redis, self.outlet, lambda: self.agents.agents, settings.partitions
        )
        self.jobs.add(
            "resend-commands",
            settings.command_resend_after_s,
            self.resender.sweep,
            cluster_wide=False,  # each node looks after the agents connected to it
        )
        self.socket_caps = SocketCaps(self.redis, settings, self._socket_alive)
        self.jobs.add(
            "refresh-socket-slots",
            self.socket_caps.refresh_every_s,
            self.socket_caps.refresh,
            cluster_wide=False,  # each node renews the slots of its own sockets
        )
        # Every node delivers a share of the notifications to users' webhooks and devices.
        self.webhooks = WebhookDispatcher(self.redis, self.store, settings)
        self.push = PushDispatcher(self.redis, self.store, settings)
        # Alert rules (the leader evaluates them), their delivery, and the request counts
        # the error-rate rule reads (`gateway/alerts/`).
        self.alerts = Alerts(self.redis, self.store, settings, self.jobs)
        self.sio.register_namespace(self.web)
        self.sio.register_namespace(self.agents)
        self.credentials.on_revoked(self.web.revoked, self.web.recheck)
        self.credentials.on_revoked(self.agents.revoked, self.agents.recheck)

    async def start(self) -> None:
        # Redis must hold this version's key layout (or nothing yet): else refuse to start.
        await ensure_layout(self.redis, self.settings)
        if self.loop_watch is not None:
            await self.loop_watch.start()
        await self.store.open()
        await self.credentials.start()
        await self.system.start()
        await self.socket_caps.start()
        await self.jobs.start()
        await self.webhooks.start()
        await self.push.start()
        await self.alerts.start()
        settle_heap()  # after the start, whose objects live as long as the node
        log.info(
            "node %s up, holding partitions %s", self.settings.node_id, self.system.held_partitions
        )

    async def stop(self) -> None:
        """Each part stops in turn, within `STOP_STEP_S`: a part that hangs is named in the
        log and left behind, and the node still releases what it holds after it."""
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("webhooks", self.webhooks.stop),
            ("push", self.push.stop),
            ("alerts", self.alerts.stop),
            ("jobs", self.jobs.stop),
            ("feed", self.feed.close),
            ("credentials", self.credentials.stop),
            ("actors", self.system.stop),
            ("store", self.store.close),
            ("redis", self.redis.aclose),
        ]
        if isinstance(self.sio.manager, ClusterRedisManager):
            # It listens on `self.redis`, and would open it again: stop it first.
            steps.insert(-1, ("socket.io pub/sub", self.sio.manager.stop))
        if self.loop_watch is not None:
            steps.append(("loop watch", self.loop_watch.stop))
        for name, step in steps:
            try:
                await asyncio.wait_for(step(), STOP_STEP_S)
            except TimeoutError:
                log.warning("stopping: %s did not stop within %.0f s", name, STOP_STEP_S)
            except Exception as exc:
                log.warning("stopping: %s failed: %s", name, type(exc).__name__)

    async def verify_agent(self, auth: Any) -> tuple[str, int]:
        return await verify_agent_handshake(
            auth,
            store=self.store,
            redis=self.redis,
            settings=self.settings,
            credentials=self.credentials,
        )

    def _socket_alive(self, namespace: str, sid: str) -> bool:
        """Whether a socket is still connected to this node."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, namespace)
        return eio_sid is not None and eio_sid in self.sio.eio.sockets

    async def _send_to_web(self, socket: str, event: str, data: dict[str, Any]) -> None:
        await self.web.send(socket, event, data)
