"""The node's periodic jobs, on APScheduler's AsyncIOScheduler in the server's loop.

A job is an async function of no arguments, run every `interval_s`. A *cluster-wide* job
(trimming streams, and later heartbeat timeouts, cleanup, alert rules) does its work only
on the node that holds the leader lease (`gateway/jobs/leader.py`); a *node* job runs on
every node (the lease's own renewal is one). A run that fails is logged and the next one
comes as planned; a run still going when the next is due makes APScheduler skip that one
(runs never overlap), and runs missed while the loop was busy are made up once, not many
times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.jobs.leader import LeaderLease
from orchestra.aio import cancel_and_wait
from orchestra.codec import now_iso

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


@dataclass
class JobRuns:
    """How often a job ran on this node, and when it last started (ISO-8601): `/health`
    shows them, so one can tell from outside which node runs the cluster-wide jobs."""

    cluster_wide: bool
    runs: int = 0
    last_run_at: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"clusterWide": self.cluster_wide, "runs": self.runs, "lastRunAt": self.last_run_at}


class Jobs:
    def __init__(self, lease: LeaderLease) -> None:
        self.lease = lease
        # APScheduler logs every run at INFO: a job every few seconds would drown the log.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[object]] = set()
        self.runs: dict[str, JobRuns] = {}
        self._stopping = False
        self.add("leader-lease", lease.renew_every_s, lease.refresh, cluster_wide=False)

    def add(self, name: str, interval_s: float, job: Job, *, cluster_wide: bool) -> None:
        """Run `job` every `interval_s` (the first run one interval after the start)."""
        runs = self.runs[name] = JobRuns(cluster_wide)

        async def run() -> None:
            task = asyncio.current_task()
            if self._stopping or task is None or (cluster_wide and not self.lease.is_leader):
                return
            runs.runs += 1
            runs.last_run_at = now_iso()
            self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # Stopping: end quietly (APScheduler would log the cancellation as an error).
            except Exception:
                log.exception("job %s failed", name)
            finally:
                self._running.discard(task)

        self._scheduler.add_job(
            run,
            "interval",
            seconds=interval_s,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,  # late is better than never on a busy loop
        )

    async def start(self) -> None:
        await self.lease.refresh()  # lead at once where no other node does
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, end the runs in progress, and give up the leadership."""
        if not self._stopping and self._scheduler.running:
            # Takes effect at the loop's next turn: runs starting before then see `_stopping`.
            self._scheduler.shutdown(wait=False)
        self._stopping = True
        for task in list(self._running):
            await cancel_and_wait(task)
        await self.lease.release()
