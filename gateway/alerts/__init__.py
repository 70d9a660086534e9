"""Alerts (issue 12; the original design's §9.2.2): rules in the settings, evaluated by the
leader, delivered once to the log, SQL and webhooks, resolved when they clear.

- `rules`: the rules, as pure functions of what they look at;
- `facts`: reading that from Redis and SQL; `tally`: the cluster's request counts;
- `evaluate`: the leader's job, firing and resolving (the firing set in Redis);
- `delivery`: every node's consumer of the alert events (SQL history, webhooks).

`Alerts` puts them together for a node: `gateway.node.Node` makes one, which adds its
jobs to the node's scheduler, and starts and stops it.
"""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.alerts.delivery import AlertDispatcher
from gateway.alerts.evaluate import AlertEvaluator
from gateway.alerts.rules import RULES
from gateway.alerts.tally import BUCKET_S, RequestTally
from gateway.jobs import Jobs
from orchestra.db import Store
from orchestra.metrics import ALERTS_FIRING
from orchestra.settings import Settings

__all__ = ["RULES", "AlertDispatcher", "AlertEvaluator", "Alerts", "RequestTally"]


class Alerts:
    """A node's part in alerting: counting its requests, evaluating the rules while it
    leads, and delivering its share of the alert events."""

    def __init__(self, redis: Redis, store: Store, settings: Settings, jobs: Jobs) -> None:
        self._jobs = jobs
        self.tally = RequestTally(redis, settings.alert_window_s)
        self.evaluator = AlertEvaluator(redis, store, settings)
        self.dispatcher = AlertDispatcher(redis, store, settings)
        jobs.add(
            "evaluate-alerts", settings.alert_interval_s, self.evaluator.evaluate, cluster_wide=True
        )
        jobs.add(
            "count-requests",
            min(settings.alert_interval_s, BUCKET_S),
            self._flush,
            cluster_wide=False,  # each node adds its own counts
        )

    async def _flush(self) -> None:
        await self.tally.flush()
        if not self._jobs.lease.is_leader:
            ALERTS_FIRING.clear()  # the leader alone exports the alerts firing

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.tally.flush()
