"""Periodic jobs: the scheduler, the leader lease that gates cluster-wide jobs, the jobs."""

from gateway.jobs.leader import LeaderLease
from gateway.jobs.scheduler import Job, Jobs
from gateway.jobs.trim import trim_session_streams

__all__ = ["Job", "Jobs", "LeaderLease", "trim_session_streams"]
