"""The leader's health-check and cleanup jobs, added to a node's scheduler in one place."""

from __future__ import annotations

from functools import partial

from redis.asyncio import Redis

from actors import ActorSystem
from gateway.jobs.cleanup import (
    remove_dead_nodes,
    remove_dead_reply_lists,
    remove_orphan_queue_entries,
)
from gateway.jobs.health import ping_agents
from gateway.jobs.retention import retire_ended_sessions
from gateway.jobs.scheduler import Jobs
from orchestra.settings import Settings


def add_housekeeping(jobs: Jobs, redis: Redis, system: ActorSystem, settings: Settings) -> None:
    """Cluster-wide: each runs on the leader only, and is harmless if run twice."""
    jobs.add(
        "health-check",
        settings.agent_ping_interval_s,
        partial(ping_agents, redis, system),
        cluster_wide=True,
    )
    every_s = settings.cleanup_interval_s
    jobs.add(
        "cleanup-dead-nodes",
        every_s,
        partial(remove_dead_nodes, redis, settings.partitions, settings.lease_ttl_s),
        cluster_wide=True,
    )
    jobs.add(
        "cleanup-reply-lists", every_s, partial(remove_dead_reply_lists, redis), cluster_wide=True
    )
    jobs.add(
        "cleanup-queue-entries",
        every_s,
        partial(remove_orphan_queue_entries, redis, settings.partitions),
        cluster_wide=True,
    )
    jobs.add(
        "retire-ended-sessions",
        every_s,
        partial(retire_ended_sessions, redis, system, settings.session_stream_retention_s),
        cluster_wide=True,
    )
