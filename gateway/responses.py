"""The one place errors become Responses (socket acks) and HTTP answers (PROTOCOL.md §2)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from redis.exceptions import AuthenticationError, ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sanic.response import HTTPResponse, json

from orchestra import metrics
from orchestra.codec import new_id, now_iso
from orchestra.errors import ConnectionFailed, InternalError, OrchestraError
from orchestra.trace import current_trace_id

log = logging.getLogger(__name__)

#: Redis out of reach for a moment (a restart, a master's failover on Redis Cluster): no
#: bug, and the request may be sent again (CONN_001, which clients repeat).
_REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError)


def error_info(exc: OrchestraError, *, expose_stack: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {"code": exc.code, "message": exc.message, "timestamp": now_iso()}
    if exc.details:
        info["details"] = exc.details
    cause = exc.__cause__
    if expose_stack and isinstance(exc, InternalError) and cause is not None:
        # Only a bug's trace helps anyone (development profile); a refusal's is noise.
        info["stack"] = "".join(traceback.format_exception(cause))
    return info


def as_orchestra_error(exc: BaseException) -> OrchestraError:
    """Our errors pass through; Redis out of reach is CONN_001; anything else is a bug,
    logged with a trace id: the request's (`orchestra/trace.py`), which the SYS_001's
    details carry."""
    if isinstance(exc, OrchestraError):
        return exc
    trace_id = current_trace_id() or new_id()
    if isinstance(exc, _REDIS_UNAVAILABLE) and not isinstance(exc, AuthenticationError):
        log.warning("Redis unavailable (trace %s): %s", trace_id, exc)
        return ConnectionFailed(
            f"Redis cannot be reached for the moment ({type(exc).__name__}); try again",
            {"traceId": trace_id},
        )
    log.error("internal error (trace %s)", trace_id, exc_info=exc)
    error = InternalError("internal server error", {"traceId": trace_id})
    error.__cause__ = exc
    return error


def ok(request_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"requestId": request_id, "success": True, "data": data or {}}


def fail(request_id: str, exc: BaseException, *, expose_stack: bool = False) -> dict[str, Any]:
    error = as_orchestra_error(exc)
    metrics.ERRORS.labels(error.code).inc()
    return {
        "requestId": request_id,
        "success": False,
        "error": error_info(error, expose_stack=expose_stack),
    }


def http_error(exc: BaseException, *, expose_stack: bool = False) -> HTTPResponse:
    error = as_orchestra_error(exc)
    metrics.ERRORS.labels(error.code).inc()
    return json({"error": error_info(error, expose_stack=expose_stack)}, status=error.http_status)
