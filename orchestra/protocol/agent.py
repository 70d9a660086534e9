"""Events an agent daemon sends on `/agent` (PROTOCOL.md §5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field

from orchestra.errors import InvalidParameters
from orchestra.protocol.base import Payload

OutputType = Literal["user", "assistant", "thinking", "tool", "tool-result", "system", "result"]
StreamType = Literal["stdout", "stderr", "log"]
AgentReportedStatus = Literal["starting", "running", "paused", "completed", "error", "cancelled"]


class SystemInfo(BaseModel):
    cpu: float = Field(ge=0)
    memory: float = Field(ge=0)
    disk: float = Field(ge=0)


Attempt = Annotated[int, Field(ge=1, le=1_000_000)]


class RunningTask(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    attempt: Attempt | None = None
    last_seq: int = Field(0, ge=0)


class ToolRef(BaseModel):
    """A tool the agent found on its machine (`claude`, `custom`, ...) and its version."""

    name: str = Field(min_length=1, max_length=64)
    version: str | None = Field(None, max_length=64)


class AgentRegister(Payload):
    agent_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=256)
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    tools: list[ToolRef] = Field(default_factory=list, max_length=64)
    agent_version: str | None = Field(None, max_length=64)
    metadata: dict[str, Any] | None = None
    max_concurrency: int | None = Field(None, gt=0, le=1024)
    last_command_id: int | None = Field(None, ge=0)
    running_tasks: list[RunningTask] | None = None

    @property
    def software_version(self) -> str | None:
        """`agentVersion` (1.1); a 1.0 agent put its version in `version`, where the
        envelope's protocol version also lives."""
        return self.agent_version or self.version


class AgentHeartbeat(Payload):
    agent_id: str = Field(min_length=1, max_length=128)
    system_info: SystemInfo | None = None
    metadata: dict[str, Any] | None = None
    """Our extension: keys that replace those of the registration's `metadata` (our
    daemon sends `recentWorkdirs` when its list changed)."""


class TaskRef(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=128)
    attempt: Attempt | None = None
    """The attempt the report is about (1.1); absent (1.0): the current one."""


class TaskAccepted(TaskRef):
    estimated_duration: float | None = None


class TaskRejected(TaskRef):
    reason: str = Field(max_length=4096)
    code: str | None = Field(None, max_length=16)
    """Our agents say `PARAM_001` when the task's own parameters are at fault (a working
    directory outside the allowed roots): no other agent would take it either."""


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


# -- output in batches (1.1) ------------------------------------------------------------

MAX_BATCH_ITEMS = 512
"""Items one `worker:output` / `task:stream` batch frame may carry (PROTOCOL.md §5)."""
MAX_BATCH_BYTES = 512 * 1024
"""The JSON of one batch frame, at most (PROTOCOL.md §5)."""


class OutputItem(BaseModel):
    """One item of a batch: a single frame's own fields, without the frame's ids and seq."""

    model_config = Payload.model_config
    timestamp: Any = None


class WorkerOutputItem(OutputItem):
    type: OutputType
    content: Any
    details: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


class TaskStreamItem(OutputItem):
    type: StreamType
    data: str


class _Batch(TaskRef):
    seq: int = Field(ge=1)
    """The first item's seq; the items carry seq, seq+1, ..."""

    @classmethod
    def parse(cls, data: Any) -> Self:
        """PARAM_001 names the first item at fault (`item 3: ...`); nothing is kept."""
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list) and len(items) > MAX_BATCH_ITEMS:
            raise InvalidParameters(
                f"a batch holds at most {MAX_BATCH_ITEMS} items, not {len(items)}",
                {"errors": [{"field": "items", "problem": "too many items"}]},
            )
        try:
            return super().parse(data)
        except InvalidParameters as exc:
            errors = (exc.details or {}).get("errors") or []
            bad = next((e for e in errors if e["field"].startswith("items.")), None)
            if bad is None:
                raise
            index = bad["field"].split(".")[1]
            raise InvalidParameters(
                f"item {index} of the batch is invalid ({bad['field']}: {bad['problem']})",
                {"errors": errors, "item": int(index) if index.isdigit() else index},
            ) from None


class WorkerOutputBatch(_Batch):
    items: list[WorkerOutputItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class TaskStreamBatch(_Batch):
    items: list[TaskStreamItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class WorkerStatusReport(TaskRef):
    status: AgentReportedStatus
    message: str | None = None


class WorkerPermissionRequest(TaskRef):
    permission_id: str = Field(min_length=1, max_length=128)
    tool: str = Field(min_length=1, max_length=256)
    input: Any = None
    title: str | None = Field(None, max_length=4096)
    suggestions: Any = None


class WorkerPermissionCancelled(TaskRef):
    permission_id: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(None, max_length=4096)


class CommandAck(Payload):
    command_id: int = Field(ge=1)


class Pong(Payload):
    pass
