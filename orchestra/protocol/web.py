"""Requests a web client sends on `/web` (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestra.protocol.base import Payload

Priority = Literal["low", "normal", "high"]
Identifier = str  # ids are opaque strings; length is bounded below


class AgentsList(Payload):
    pass


class UserSync(Payload):
    pass


class SessionJoin(Payload):
    session_id: str = Field(min_length=1, max_length=128)
    last_event_id: str | None = Field(None, max_length=64)
    epoch: str | None = Field(None, max_length=64)


class SessionLeave(Payload):
    session_id: str = Field(min_length=1, max_length=128)


class WorkerStart(Payload):
    session_id: str | None = Field(None, min_length=1, max_length=128)
    agent_id: str | None = Field(None, min_length=1, max_length=128)
    task_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    tool: str = Field(min_length=1, max_length=64)
    type: Literal["chat", "code", "analysis"] = "code"
    working_directory: str | None = Field(None, max_length=4096)
    initial_prompt: str | None = None
    claude_session_id: str | None = Field(None, max_length=128)
    command: str | list[str] | None = None
    priority: Priority = "normal"
    required_capabilities: list[str] = Field(default_factory=list, max_length=64)
    strategy: str | None = Field(None, max_length=64)


class WorkerInput(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    input: str
    agent_id: str | None = None
    tool: str | None = None


class WorkerStop(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    mode: Literal["interrupt", "kill"] = "interrupt"


class WorkerPermissionDecision(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    permission_id: str = Field(min_length=1, max_length=128)
    decision: Literal["allow", "deny"]
    message: str | None = None
