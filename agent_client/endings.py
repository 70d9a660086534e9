"""How a task ends on the agent: its final reports, and a worker a dead daemon left behind.

`final_events` turns a worker's end (`WorkerExit`) into the `worker:status` and
`task:result` the outbox sends once all output is stored; `end_orphan` kills the process
group a previous daemon left running, if it is still the same process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

import psutil

from agent_client.spool import FinalEvents
from agent_client.workers import WorkerExit
from agent_client.workers.base import describe_exit

__all__ = ["create_time", "end_orphan", "final_events"]

log = logging.getLogger(__name__)


def final_events(
    agent_id: str, attempt: Any, task_id: str, ended: WorkerExit, *, duration: float
) -> FinalEvents:
    """The final `worker:status` and `task:result` of a worker that ended so."""
    if ended.error is not None:
        status, message = "error", ended.error
    elif ended.stopped:
        status, message = "cancelled", "the worker was stopped on request"
    elif ended.succeeded or (ended.succeeded is None and ended.exit_code == 0):
        status, message = "completed", None
    else:
        status, message = "error", describe_exit(ended.exit_code)
    ids: dict[str, Any] = {"taskId": task_id, "agentId": agent_id}
    if isinstance(attempt, int):
        ids["attempt"] = attempt
    state: dict[str, Any] = ids | {"status": status}
    outcome: dict[str, Any] = ids | {
        "success": status == "completed",
        "duration": round(duration, 3),
    }
    if message is not None:
        state["message"] = message
        outcome["error"] = message
    result: dict[str, Any] = {}
    if ended.exit_code is not None:
        result["exitCode"] = ended.exit_code
        if ended.exit_code < 0:
            with contextlib.suppress(ValueError):
                result["signal"] = signal.Signals(-ended.exit_code).name
    result.update(ended.result or {})
    if result or status != "error":
        outcome["result"] = result
    if ended.resource_usage is not None:
        outcome["resourceUsage"] = ended.resource_usage
    return [("worker:status", state), ("task:result", outcome)]


def end_orphan(meta: Mapping[str, Any]) -> None:
    """Kill the process group a previous daemon left running, if it is still the same."""
    pid, created = meta.get("pid"), meta.get("createTime")
    if not isinstance(pid, int) or not isinstance(created, int | float):
        return
    if create_time(pid) != created:
        return  # gone, or the pid now belongs to someone else
    log.warning("ending the orphaned worker process group %d", pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def create_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None
