"""Workers by tool name: what the agent can run."""

from __future__ import annotations

from agent_client.workers.base import (
    OutputSink,
    StopMode,
    Worker,
    WorkerExit,
    WorkerSpec,
    WorkerStartError,
)
from agent_client.workers.custom import CustomWorker

__all__ = [
    "WORKERS",
    "CustomWorker",
    "OutputSink",
    "StopMode",
    "Worker",
    "WorkerExit",
    "WorkerSpec",
    "WorkerStartError",
]

WORKERS: dict[str, type[Worker]] = {CustomWorker.tool: CustomWorker}
"""The tools this agent implements; `claude` and `qwcoder` join here when written."""
