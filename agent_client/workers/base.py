"""The small interface every worker implements (custom today, claude and qwcoder later).

A worker owns one subprocess for one task. It turns what the process prints into output
items and hands them, in order, to an `OutputSink`; it never talks to the network. The
task manager (`agent_client.tasks`) owns the sink, which numbers the items (`seq`),
spools them to disk and sends them, so a worker stays ignorant of acks and reconnects.
"""

from __future__ import annotations

import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = [
    "OutputSink",
    "StopMode",
    "Worker",
    "WorkerExit",
    "WorkerSpec",
    "WorkerStartError",
    "describe_exit",
    "worker_environment",
]

StopMode = Literal["interrupt", "kill", "terminate"]
"""`interrupt`: SIGINT, escalating; `kill`: SIGKILL at once; `terminate`: SIGTERM, escalating
(what the daemon uses when it shuts down)."""

OutputSink = Callable[[str, dict[str, Any]], None]
"""Takes (event, fields): `("task:stream", {"type", "data", "timestamp"})` or
`("worker:output", {"type", "content", ...})`. Called in output order; never blocks."""


class WorkerStartError(Exception):
    """The worker's process could not be started (bad command, missing executable)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run one task."""

    task_id: str
    tool: str
    parameters: Mapping[str, Any]
    working_directory: Path
    stop_grace_s: float
    max_chunk_bytes: int = 64 * 1024
    """Longest piece of output in one item; longer lines are split so no event nears the
    gateway's payload limit (an item the gateway refuses would stall the task's seqs)."""


@dataclass(frozen=True)
class WorkerExit:
    """How a worker's process ended."""

    exit_code: int | None
    """The process's return code; negative -N when it was killed by signal N."""
    stopped: bool
    """A stop (interrupt, kill, terminate) was requested before it ended."""


class Worker(ABC):
    """One task's process: start it, feed it input, stop it, wait for it."""

    tool: ClassVar[str]

    def __init__(self, spec: WorkerSpec, emit: OutputSink) -> None:
        self.spec = spec
        self.emit = emit

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        """Why these task parameters cannot run on this worker, or None when they can."""
        return None

    @property
    @abstractmethod
    def pid(self) -> int | None:
        """The process id (also its process group id), once started."""

    @abstractmethod
    async def start(self) -> None:
        """Start the process; raises `WorkerStartError` when it cannot be started."""

    @abstractmethod
    async def send_input(self, text: str) -> None:
        """Queue text for the process's stdin; never blocks on a process that does not read."""

    @abstractmethod
    async def stop(self, mode: StopMode) -> None:
        """Ask the process to end; returns once signalled, escalation continues behind."""

    @abstractmethod
    async def wait(self) -> WorkerExit:
        """Wait until the process has ended and all of its output has been emitted."""

    async def permission(self, permission_id: str, decision: str, message: str | None) -> None:
        """A permission decision from the user; workers that never ask ignore it."""
        return None


def describe_exit(exit_code: int | None) -> str:
    """A short human description of a return code, naming the signal when there was one."""
    if exit_code is None:
        return "the worker ended without an exit code"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"the worker was killed by {name}"
    return f"the worker exited with code {exit_code}"


def worker_environment(task_id: str) -> dict[str, str]:
    """The environment for a worker: ours, without Orchestra's own settings.

    Why: the agent's secret (and any other credential Orchestra was given through the
    environment) must not reach the commands it runs on someone else's behalf.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    env["ORCHESTRA_TASK_ID"] = task_id
    return env
