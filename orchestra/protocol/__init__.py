"""Protocol payloads as validated models (PROTOCOL.md §4-5)."""

from orchestra.protocol.agent import (
    AgentHeartbeat,
    AgentRegister,
    CommandAck,
    Pong,
    TaskAccepted,
    TaskProgress,
    TaskRejected,
    TaskResult,
    TaskStream,
    WorkerOutput,
    WorkerPermissionRequest,
    WorkerStatusReport,
)
from orchestra.protocol.base import Payload, View
from orchestra.protocol.views import AgentLoad, AgentView, SessionView, TaskView
from orchestra.protocol.web import (
    AgentsList,
    SessionJoin,
    SessionLeave,
    UserSync,
    WorkerInput,
    WorkerPermissionDecision,
    WorkerStart,
    WorkerStop,
)

__all__ = [
    "AgentHeartbeat",
    "AgentLoad",
    "AgentRegister",
    "AgentView",
    "AgentsList",
    "CommandAck",
    "Payload",
    "Pong",
    "SessionJoin",
    "SessionLeave",
    "SessionView",
    "TaskAccepted",
    "TaskProgress",
    "TaskRejected",
    "TaskResult",
    "TaskStream",
    "TaskView",
    "UserSync",
    "View",
    "WorkerInput",
    "WorkerOutput",
    "WorkerPermissionDecision",
    "WorkerPermissionRequest",
    "WorkerStart",
    "WorkerStatusReport",
    "WorkerStop",
]
