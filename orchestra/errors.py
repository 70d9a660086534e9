"""Every error Orchestra answers with, each carrying its protocol code (PROTOCOL.md §2).

The gateway turns an `OrchestraError` into a Response or an HTTP answer in one place
(`gateway.responses`); nothing else formats errors for the wire.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentNotAvailable",
    "AuthenticationFailed",
    "ConnectionFailed",
    "ConnectionTimeout",
    "DatabaseError",
    "Forbidden",
    "InternalError",
    "InvalidParameters",
    "NotFound",
    "OrchestraError",
    "RateLimited",
    "ResourceExhausted",
    "TaskExecutionFailed",
]


class OrchestraError(Exception):
    """Base of all errors that carry a protocol code."""

    code = "SYS_001"
    name = "INTERNAL_SERVER_ERROR"
    http_status = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConnectionFailed(OrchestraError):
    """Raised when a peer could not be reached."""

    code, name, http_status = "CONN_001", "CONNECTION_FAILED", 503


class ConnectionTimeout(OrchestraError):
    """Raised when a peer did not answer in time (an `ask`, a ping)."""

    code, name, http_status = "CONN_002", "CONNECTION_TIMEOUT", 504


class AuthenticationFailed(OrchestraError):
    """Raised when credentials are missing, expired, forged or revoked."""

    code, name, http_status = "AUTH_001", "AUTHENTICATION_FAILED", 401


class Forbidden(OrchestraError):
    """Raised when the caller is authenticated but the thing belongs to someone else."""

    code, name, http_status = "AUTH_002", "FORBIDDEN", 403


class AgentNotAvailable(OrchestraError):
    """Raised when no online agent fits, or the named agent is offline or full."""

    code, name, http_status = "AGENT_001", "AGENT_NOT_AVAILABLE", 409


class TaskExecutionFailed(OrchestraError):
    """Raised when a worker failed."""

    code, name, http_status = "TASK_001", "TASK_EXECUTION_FAILED", 500


class NotFound(OrchestraError):
    """Raised when a task, session or other record is unknown."""

    code, name, http_status = "TASK_002", "TASK_NOT_FOUND", 404


class InvalidParameters(OrchestraError):
    """Raised when a payload does not validate, an event is unknown, or a type is wrong."""

    code, name, http_status = "PARAM_001", "INVALID_PARAMETERS", 400


class RateLimited(OrchestraError):
    """Raised when a user or agent is over its rate limit."""

    code, name, http_status = "RATE_001", "RATE_LIMITED", 429


class InternalError(OrchestraError):
    """Raised for a bug; the details carry the trace id that the log line carries too."""


class DatabaseError(OrchestraError):
    """Raised when the SQL store failed."""

    code, name, http_status = "DB_001", "DATABASE_ERROR", 500


class ResourceExhausted(OrchestraError):
    """Raised when a payload is too large, a queue is full, or there are too many connections."""

    code, name, http_status = "RES_001", "RESOURCE_EXHAUSTED", 413


BY_CODE: dict[str, type[OrchestraError]] = {
    cls.code: cls
    for cls in (
        ConnectionFailed,
        ConnectionTimeout,
        AuthenticationFailed,
        Forbidden,
        AgentNotAvailable,
        TaskExecutionFailed,
        NotFound,
        InvalidParameters,
        RateLimited,
        OrchestraError,
        DatabaseError,
        ResourceExhausted,
    )
}


def from_info(info: dict[str, Any]) -> OrchestraError:
    """Rebuild an error from an ErrorInfo received over the wire (clients, tests)."""
    cls = BY_CODE.get(str(info.get("code")), OrchestraError)
    return cls(str(info.get("message", "")), info.get("details"))
