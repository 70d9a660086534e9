"""Redis out of reach for a moment (a failover) answers CONN_001, which clients repeat,
not SYS_001 (a bug) (found by tests/chaos/test_sessions_under_master_kill.py)."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.responses import as_orchestra_error
from orchestra import trace


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to 127.0.0.1:7001. Connection refused."),
        RedisTimeoutError("Timeout reading from socket"),
        ClusterDownError("The cluster is down"),
        TryAgainError("TRYAGAIN"),
    ],
)
def test_redis_out_of_reach_is_a_connection_failure(error: Exception) -> None:
    with trace.bound(traceId="req-trace-9"):
        answer = as_orchestra_error(error)
    assert (answer.code, answer.details) == ("CONN_001", {"traceId": "req-trace-9"})


@pytest.mark.parametrize(
    "error", [AuthenticationError("invalid password"), ResponseError("WRONGTYPE")]
)
def test_other_redis_errors_are_still_bugs(error: Exception) -> None:
    assert as_orchestra_error(error).code == "SYS_001"
