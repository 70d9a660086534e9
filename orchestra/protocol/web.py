"""Requests a web client sends on `/web` (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

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
    batch: bool = False
    """The session's events come to this socket as `session:events` frames."""


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
    worker_session_id: str | None = Field(
        None,
        max_length=256,
        validation_alias=AliasChoices("workerSessionId", "claudeSessionId", "worker_session_id"),
    )
    ai_config_id: str | None = Field(None, min_length=1, max_length=128)
    model: str | None = Field(None, min_length=1, max_length=256)
    permission_mode: str | None = Field(None, min_length=1, max_length=64)
    allowed_tools: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=256
    )
    command: str | list[str] | None = None
    pty: bool = False
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] | None = Field(
        None, max_length=256
    )
    timeout_s: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    priority: Priority = "normal"
    required_capabilities: list[str] = Field(default_factory=list, max_length=64)
    strategy: str | None = Field(None, max_length=64)


class WorkerInput(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    input: str
    eof: bool | None = None
    """Ends the input: an AI tool finishes and exits, a command's stdin is closed."""
    agent_id: str | None = None
    tool: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _eof_alone_needs_no_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("eof") is True and "input" not in data:
            return {**data, "input": ""}
        return data


class WorkerStop(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    mode: Literal["interrupt", "kill"] = "interrupt"


class WorkerPermissionDecision(Payload):
    task_id: str = Field(min_length=1, max_length=128)
    permission_id: str = Field(min_length=1, max_length=128)
    decision: Literal["allow", "deny"]
    scope: Literal["once", "session"] = "once"
    message: str | None = Field(None, max_length=4096)
    updated_input: dict[str, Any] | None = None
