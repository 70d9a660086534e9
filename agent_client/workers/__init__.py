"""Workers by tool name: what the agent can run (see `registry` and `base`)."""

from __future__ import annotations

from agent_client.workers.base import (
    PermissionDecision,
    StopMode,
    ToolInfo,
    Worker,
    WorkerExit,
    WorkerHost,
    WorkerSpec,
    WorkerStartError,
)
from agent_client.workers.registry import discover, load_workers

__all__ = [
    "PermissionDecision",
    "StopMode",
    "ToolInfo",
    "Worker",
    "WorkerExit",
    "WorkerHost",
    "WorkerSpec",
    "WorkerStartError",
    "discover",
    "load_workers",
]
