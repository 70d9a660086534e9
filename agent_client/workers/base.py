"""The interface every worker adapter implements, one module per tool (PROTOCOL.md §8).

A worker owns one tool process (or, for a tool that runs one process a turn, a series of
them) for one task. It turns what the tool prints into output items and control events
and hands them, in order, to its `WorkerHost`; it never talks to the network. The task
manager (`agent_client.tasks`) is the host: it numbers the items (`seq`), spools them to
disk and sends them, so a worker stays ignorant of acks and reconnects.

What a worker is asked to do, and what it must guarantee:

- `start`: start the tool in the task's working directory, resuming the tool's own
  conversation when `spec.parameters["workerSessionId"]` is given, and send the initial
  prompt, if any;
- `send_input`: the user's next message (AI tools) or bytes for stdin (`custom`); `eof`
  ends the input: an AI tool finishes its turn and exits, `custom` gets its stdin closed;
- `interrupt`: end the current turn the tool's own way and keep the worker for more input
  (a control request, `turn/interrupt`, SIGINT);
- `stop`: end the worker (`kill`: now, its process group included; `terminate`: the
  graceful sequence, used when the agent shuts down);
- `decide`: the user's answer to a permission request the worker reported with
  `host.control("worker:permission", ...)`. Exactly one answer reaches the tool per
  request: an answer to a request the tool has given up on (it cancelled it, its turn
  was interrupted, the worker ended) is dropped, and a request the tool gives up on is
  reported with `worker:permission:cancelled` so that no one goes on showing it;
- `wait`: returns once the worker has ended and all its output has gone to the host.
"""

from __future__ import annotations

import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

__all__ = [
    "PermissionDecision",
    "StopMode",
    "ToolInfo",
    "Worker",
    "WorkerExit",
    "WorkerHost",
    "WorkerSpec",
    "WorkerStartError",
    "describe_exit",
    "worker_environment",
]

_OURS = "ORCHESTRA_"

StopMode = Literal["kill", "terminate"]
"""`kill`: end it now, process group included; `terminate`: the graceful sequence (what the
daemon uses when it shuts down)."""

Refused = Callable[[str, str], None]
"""Called with (code, message) when the gateway refuses a control event for good."""


class WorkerHost(Protocol):
    """Where a worker's events go, in the order it produces them (the task's outbox)."""

    def output(self, event: str, fields: dict[str, Any]) -> None:
        """An output item, `("task:stream", {type, data, timestamp})` or
        `("worker:output", {type, content, details?, usage?, stats?, timestamp})`: numbered,
        spooled, sent. Never blocks."""

    def control(
        self, event: str, fields: dict[str, Any], on_refused: Refused | None = None
    ) -> None:
        """A report that is not output (`worker:permission`, `worker:permission:cancelled`,
        `worker:status`): sent once the output before it is stored. Never blocks."""


class WorkerStartError(Exception):
    """The worker could not be started (missing executable, bad parameters)."""


@dataclass(frozen=True)
class ToolInfo:
    """A tool found on this machine, as `agent:register` lists it."""

    name: str
    version: str | None = None
    executable: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"name": self.name} | ({"version": self.version} if self.version else {})


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run one task."""

    task_id: str
    tool: str
    parameters: Mapping[str, Any]
    """The task's parameters (PROTOCOL.md §5 `task:assign`): prompt, workerSessionId,
    model, permissionMode, allowedTools, baseUrl, command, pty, env, timeoutS, ..."""
    working_directory: Path
    stop_grace_s: float
    attempt: int = 1
    executable: str | None = None
    """The tool's executable as found when the agent started (None: look it up on PATH)."""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Unsealed secrets of the task's AI config (`apiKey`): for the worker's environment
    only, never for an argument, an output item or a log line."""
    permission_timeout_s: float = 1800.0
    """How long the gateway keeps a permission request open before it answers deny; a tool
    with a timeout of its own must be told to wait at least this long."""
    max_chunk_bytes: int = 64 * 1024
    """Longest piece of output in one item; longer lines are split (or, for a tool's
    results, cut with `details.truncated`) so no event nears the gateway's payload limit."""


@dataclass(frozen=True)
class PermissionDecision:
    """A user's answer (or the gateway's timeout) to one permission request."""

    permission_id: str
    decision: Literal["allow", "deny"]
    scope: Literal["once", "session"] = "once"
    message: str | None = None
    updated_input: dict[str, Any] | None = None


@dataclass(frozen=True)
class WorkerExit:
    """How a worker ended."""

    exit_code: int | None
    """The process's return code; negative -N when it was killed by signal N."""
    stopped: bool
    """A stop (kill, terminate) was requested before it ended."""
    error: str | None = None
    """The worker's own account of a failure (an AI tool's error result, a timeout); when
    set the task ends `error` with this message whatever the exit code."""
    succeeded: bool | None = None
    """Whether the worker did its job, where it knows better than the exit code (an AI tool
    whose turns all ended well); None: the exit code says."""
    result: dict[str, Any] | None = None
    """Extra fields for `task:result.result` (workerSessionId, usage, ...)."""
    resource_usage: dict[str, Any] | None = None
    """`task:result.resourceUsage`: CPU time and peak memory of the worker's processes."""


class Worker(ABC):
    """One task's tool: start it, feed it, interrupt it, answer it, stop it, wait for it."""

    tool: ClassVar[str]
    """The tool's name on the wire (`claude`, `qwcoder`, `codex`, `gemini`, `custom`)."""
    executable_name: ClassVar[str | None] = None
    """The program to look for on PATH when the agent starts (None: always available)."""

    def __init__(self, spec: WorkerSpec, host: WorkerHost) -> None:
        self.spec = spec
        self.host = host

    @classmethod
    def version_of(cls, version_output: str) -> str | None:
        """The version in what `<executable> --version` printed."""
        words = version_output.strip().split()
        for word in words:
            if word[:1].isdigit():
                return word.strip(",()")
        return words[0] if words else None

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        """Why these task parameters cannot run on this worker, or None when they can."""
        return None

    @property
    @abstractmethod
    def pid(self) -> int | None:
        """The current process's id (also its process group id), once started."""

    @abstractmethod
    async def start(self) -> None:
        """Start the tool; raises `WorkerStartError` when it cannot be started."""

    @abstractmethod
    async def send_input(self, text: str, eof: bool = False) -> None:
        """The next user message, or bytes for stdin; never blocks on a busy tool."""

    @abstractmethod
    async def interrupt(self) -> None:
        """End the current turn and keep the worker for more input, where the tool can."""

    @abstractmethod
    async def stop(self, mode: StopMode) -> None:
        """End the worker; returns once asked, the escalation goes on behind."""

    async def decide(self, decision: PermissionDecision) -> None:
        """A permission decision; a worker that never asks drops it."""
        return None

    @abstractmethod
    async def wait(self) -> WorkerExit:
        """Wait until the worker has ended and all of its output has gone to the host."""


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


def worker_environment(spec: WorkerSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ours without Orchestra's own settings, then the
    task's `env`, then what the adapter adds (`extra`: its API key and base URL variables).

    Why: the agent's secret (and any other credential Orchestra was given through the
    environment) must not reach the commands it runs on someone else's behalf.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    given = spec.parameters.get("env")
    if isinstance(given, Mapping):
        env.update(
            {str(k): str(v) for k, v in given.items() if not str(k).startswith("ORCHESTRA_")}
        )
    env.update(extra or {})
    env["ORCHESTRA_TASK_ID"] = spec.task_id
    return env
