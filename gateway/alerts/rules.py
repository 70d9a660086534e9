"""The alert rules (the original design's §9.2.2 and two more), as pure functions of facts.

Each rule gives the conditions that hold now, one per subject: an alert is a rule and a
subject (`<rule>:<subject>`), firing while its condition holds. The facts are read by
`gateway.alerts.facts`; what fires and resolves is decided by `gateway.alerts.evaluate`.

- `agent_offline` (error): an agent that has connected before is offline; one alert per
  agent. A revoked agent is not looked at.
- `high_latency` (warning): the online agents' average latency (their last ping's round
  trip) is over the threshold; one alert for all agents.
- `high_error_rate` (error): of the socket requests answered across the cluster in the
  window, more than the threshold's share got an error (with at least a minimum of
  requests, so that one failed request of two is not an alert).
- `permission_waiting` (warning): a worker's permission request has waited for an answer
  longer than the threshold; one alert per task.
- `task_queued` (warning): tasks have waited in the dispatch queue longer than the
  threshold (no agent online offers their tool, say); one alert per tool.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RULES",
    "AgentFacts",
    "Condition",
    "QueuedTask",
    "RequestCounts",
    "WaitingPermission",
    "agent_offline",
    "high_error_rate",
    "high_latency",
    "permission_waiting",
    "task_queued",
]

AGENT_OFFLINE = "agent_offline"
HIGH_LATENCY = "high_latency"
HIGH_ERROR_RATE = "high_error_rate"
PERMISSION_WAITING = "permission_waiting"
TASK_QUEUED = "task_queued"
RULES = (AGENT_OFFLINE, HIGH_LATENCY, HIGH_ERROR_RATE, PERMISSION_WAITING, TASK_QUEUED)


@dataclass(frozen=True)
class Condition:
    """A rule's condition holding now for one subject."""

    rule: str
    subject: str
    severity: str  # "warning" | "error"
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"


@dataclass(frozen=True)
class AgentFacts:
    id: str
    name: str
    status: str  # online | busy | offline
    latency_ms: float | None
    healthy: bool | None  # None: not reported


@dataclass(frozen=True)
class RequestCounts:
    ok: int
    error: int

    @property
    def total(self) -> int:
        return self.ok + self.error


@dataclass(frozen=True)
class WaitingPermission:
    session_id: str
    task_id: str
    permission_id: str
    tool: str
    waited_s: float


@dataclass(frozen=True)
class QueuedTask:
    session_id: str
    task_id: str
    tool: str
    waited_s: float
    waiting_for: str | None  # why no agent takes it, as the dispatcher said


def agent_offline(agents: list[AgentFacts]) -> list[Condition]:
    return [
        Condition(
            AGENT_OFFLINE,
            agent.id,
            "error",
            f"agent {agent.name or agent.id} is offline",
            {"agentId": agent.id, "name": agent.name},
        )
        for agent in agents
        if agent.status == "offline"
    ]


def high_latency(agents: list[AgentFacts], threshold_ms: float) -> list[Condition]:
    measured = [a for a in agents if a.status != "offline" and a.latency_ms is not None]
    if not measured:
        return []
    average = sum(a.latency_ms or 0.0 for a in measured) / len(measured)
    if average <= threshold_ms:
        return []
    slowest = max(measured, key=lambda a: a.latency_ms or 0.0)
    return [
        Condition(
            HIGH_LATENCY,
            "agents",
            "warning",
            f"average agent latency {average:.0f} ms is over {threshold_ms:.0f} ms "
            f"(slowest: {slowest.name or slowest.id}, {slowest.latency_ms:.0f} ms)",
            {
                "averageMs": round(average, 1),
                "thresholdMs": threshold_ms,
                "agents": len(measured),
                "slowestAgentId": slowest.id,
            },
        )
    ]


def high_error_rate(
    counts: RequestCounts, threshold: float, min_requests: int, window_s: float
) -> list[Condition]:
    if counts.total < min_requests or counts.error / counts.total <= threshold:
        return []
    rate = counts.error / counts.total
    return [
        Condition(
            HIGH_ERROR_RATE,
            "requests",
            "error",
            f"{rate:.0%} of {counts.total} requests in the last {duration(window_s)} "
            f"got an error (over {threshold:.0%})",
            {
                "rate": round(rate, 4),
                "threshold": threshold,
                "requests": counts.total,
                "errors": counts.error,
                "windowS": window_s,
            },
        )
    ]


def permission_waiting(waiting: list[WaitingPermission], threshold_s: float) -> list[Condition]:
    by_task: dict[str, list[WaitingPermission]] = defaultdict(list)
    for request in waiting:
        if request.waited_s > threshold_s:
            by_task[request.task_id].append(request)
    found = []
    for task_id, requests in by_task.items():
        oldest = max(requests, key=lambda r: r.waited_s)
        found.append(
            Condition(
                PERMISSION_WAITING,
                task_id,
                "warning",
                f"a permission request of {oldest.tool} has waited {duration(oldest.waited_s)} "
                f"for an answer (task {task_id})",
                {
                    "sessionId": oldest.session_id,
                    "taskId": task_id,
                    "permissionIds": [r.permission_id for r in requests],
                    "waitedS": round(oldest.waited_s),
                },
            )
        )
    return found


def task_queued(queued: list[QueuedTask], threshold_s: float) -> list[Condition]:
    by_tool: dict[str, list[QueuedTask]] = defaultdict(list)
    for task in queued:
        if task.waited_s > threshold_s:
            by_tool[task.tool].append(task)
    found = []
    for tool, tasks in by_tool.items():
        oldest = max(tasks, key=lambda t: t.waited_s)
        why = f": {oldest.waiting_for}" if oldest.waiting_for else ""
        found.append(
            Condition(
                TASK_QUEUED,
                tool,
                "warning",
                f"{len(tasks)} task(s) for {tool} queued longer than {duration(threshold_s)} "
                f"(oldest {duration(oldest.waited_s)}{why})",
                {
                    "tool": tool,
                    "tasks": len(tasks),
                    "oldestTaskId": oldest.task_id,
                    "sessionId": oldest.session_id,
                    "waitedS": round(oldest.waited_s),
                },
            )
        )
    return found


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
