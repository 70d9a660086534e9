"""Read models sent to clients: AgentView, SessionView, TaskView (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Any

from orchestra.protocol.base import View


class AgentLoad(View):
    running: int
    max: int


class AgentView(View):
    id: str
    name: str
    status: str
    connected_at: str | None = None
    last_heartbeat: str | None = None
    latency: float | None = None
    capabilities: list[str]
    version: str | None = None
    system_info: dict[str, float] | None = None
    load: AgentLoad


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
    error: str | None = None
    exit_code: int | None = None
    result: Any = None


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
