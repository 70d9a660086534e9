"""The dispatcher's selection logic: which agents can take a task, and which one does.

Pure and synchronous (no Redis, no I/O), so that the task queue can call it with the agent
states it has read and the round-robin cursor it keeps, and tests can call it directly:

    candidates = eligible(snapshots, needs, max_heartbeat_age_s=30)
    if candidates:
        agent = strategy(name).choose(candidates, cursor=cursor, rng=rng)
    else:
        status = why_not(snapshots, needs, max_heartbeat_age_s=30)
"""

from actors.dispatch.candidates import AgentSnapshot, TaskNeeds, eligible, why_not
from actors.dispatch.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    Strategy,
    resource_score,
    strategy,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "AgentSnapshot",
    "Strategy",
    "TaskNeeds",
    "eligible",
    "resource_score",
    "strategy",
    "why_not",
]
