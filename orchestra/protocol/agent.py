"""Events an agent daemon sends on `/agent` (PROTOCOL.md §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestra.protocol.base import Payload

OutputType = Literal["user", "assistant", "tool", "tool-result", "system"]
StreamType = Literal["stdout", "stderr", "log"]
AgentReportedStatus = Literal["starting", "running", "paused", "completed", "error", "cancelled"]


class SystemInfo(BaseModel):
    cpu: float = Field(ge=0)
    memory: float = Field(ge=0)
    disk: float = Field(ge=0)


class RunningTask(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    last_seq: int = Field(0, ge=0)


class AgentRegister(Payload):
    agent_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=256)
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    version: str = Field(max_length=64)
    metadata: dict[str, Any] | None = None
    max_concurrency: int | None = Field(None, gt=0, le=1024)
    last_command_id: int | None = Field(None, ge=0)
    running_tasks: list[RunningTask] | None = None


class AgentHeartbeat(Payload):
    agent_id: str = Field(min_length=1, max_length=128)
    system_info: SystemInfo | None = None


class TaskRef(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)


class TaskAccepted(TaskRef):
    estimated_duration: float | None = None


class TaskRejected(TaskRef):
    reason: str = Field(max_length=4096)


class TaskProgress(TaskRef):
    progress: float = Field(ge=0, le=100)
    current_step: str | None = None
    estimated_remaining: float | None = None


class TaskResult(TaskRef):
    success: bool
    result: Any = None
    error: str | None = None
    duration: float = Field(ge=0)
    resource_usage: dict[str, Any] | None = None


class WorkerOutput(TaskRef):
    seq: int = Field(ge=1)
    type: OutputType
    content: Any
    details: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


class TaskStream(TaskRef):
    seq: int = Field(ge=1)
    type: StreamType
    data: str


class WorkerStatusReport(TaskRef):
    status: AgentReportedStatus
    message: str | None = None


class WorkerPermissionRequest(TaskRef):
    permission_id: str = Field(min_length=1, max_length=128)
    tool: str
    input: Any = None


class CommandAck(Payload):
    command_id: int = Field(ge=1)


class Pong(Payload):
    pass
