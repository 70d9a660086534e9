"""Read models sent to clients: AgentView, SessionView, TaskView (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Any

from orchestra.protocol.base import View


class AgentLoad(View):
    running: int
    max: int


class AgentWorkdirs(View):
    """Where the agent runs tasks: the roots it allows, the directories used lately
    (most recent first), as the agent reported them."""

    roots: list[str] = []
    recent: list[str] = []


class AgentView(View):
    id: str
    name: str
    status: str
    connected_at: str | None = None
    last_heartbeat: str | None = None
    latency: float | None = None
    healthy: bool | None = None
    """Our extension: connected and answering the health check's pings in time."""
    capabilities: list[str]
    tools: list[dict[str, Any]] = []
    agent_version: str | None = None
    version: str | None = None
    """The agent's software version under its 1.0 name (same as `agentVersion`)."""
    system_info: dict[str, float] | None = None
    load: AgentLoad
    workdirs: AgentWorkdirs | None = None
    """Our extension; None until the agent has reported any."""


class TaskView(View):
    id: str
    session_id: str
    agent_id: str | None = None
    tool: str
    type: str
    priority: str
    status: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    last_seq: int = 0
    worker_session_id: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int | None = None
    result: Any = None


class PermissionView(View):
    """A tool's request to use a tool, and what became of it (PROTOCOL.md §4, §8)."""

    permission_id: str
    session_id: str
    task_id: str
    tool: str
    input: Any = None
    title: str | None = None
    suggestions: Any = None
    status: str  # pending | allowed | denied | timeout | cancelled
    asked_at: str
    expires_at: str
    decided_by: str | None = None
    decision: str | None = None  # allow | deny, once resolved
    scope: str | None = None  # once | session, once resolved
    reason: str | None = None  # answered | timeout | cancelled | worker-ended


class SessionView(View):
    id: str
    owner_id: str
    title: str
    status: str
    participants: list[str]
    agent_id: str | None = None
    created_at: str
    epoch: str
    tasks: list[TaskView]
