"""The one log sanitiser (`orchestra/sanitise.py`), the log formats it sits under
(`orchestra/logs.py`), and the trace context they print (`orchestra/trace.py`)."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
from collections.abc import Iterator

import pytest

from actors.batch import _internal_error
from actors.messages import Message
from gateway.responses import as_orchestra_error
from orchestra import trace
from orchestra.logs import JsonFormatter, TextFormatter
from orchestra.sanitise import MASK, is_secret_name, sanitise_text, sanitise_value

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiI0MiIsImV4cCI6MTcwMDAwMDAwMH0."
    "c2lnbmF0dXJlLXRoYXQtaXMtbm90LXJlYWw"
)
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----"
)
#: what our own secrets look like: agent and webhook secrets, the JWT secret, the
#: secrets key, HMAC signatures, API keys of the AI tools
SECRETS = [
    secrets.token_urlsafe(32),
    "whsec_" + secrets.token_urlsafe(32),
    secrets.token_urlsafe(48),
    base64.b64encode(os.urandom(32)).decode(),
    secrets.token_hex(32),
    "sk-ant-api03-" + secrets.token_urlsafe(40),
    "sk-proj-" + secrets.token_urlsafe(24),
    "ghp_" + secrets.token_urlsafe(27),
    JWT,
]
#: what must stay readable
KEPT = [
    secrets.token_hex(16),  # ids, trace ids
    "1700000000000-0",  # eventIds
    "/tmp/pytest-of-root/pytest-12/test_something_long_enough_to_count0/agents/work",
    "/home/someone/Projects/OrchestraWorkspaceForTheTeam/src/Main",
    "the access token expired; Basic authentication failed",
    "refused worker:start from 4kGz0Tt7xQAAAB: RATE_001",
    "task 0123456789abcdef0123456789abcdef: assigned to agent 89abcdef0123456789abcdef01234567",
    "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 6379)",
]


@pytest.mark.parametrize("secret", SECRETS, ids=[f"secret-{n}" for n in range(len(SECRETS))])
def test_what_looks_like_a_token_or_a_key_is_removed(secret: str) -> None:
    for text in (secret, f"got {secret} from the peer", f"'{secret}'", f"[{secret}]"):
        cleaned = sanitise_text(text)
        assert secret not in cleaned and MASK in cleaned, text


@pytest.mark.parametrize("text", KEPT, ids=[f"kept-{n}" for n in range(len(KEPT))])
def test_ids_paths_and_words_stay(text: str) -> None:
    assert sanitise_text(text) == text


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("Authorization: Bearer opaque-token-value", "opaque-token-value"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (f"key file:\n{PEM}\nend", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        ("redis://:hunter2hunter2@redis.local:6379/0", "hunter2hunter2"),
        ("postgresql://orchestra:s3cr3t@db/orchestra", "s3cr3t"),
        ("password=hunter2 user=alice", "hunter2"),
        ("{'password': 'correct horse', 'username': 'alice'}", "correct horse"),
        ('{"apiKey": "abc def", "model": "x"}', "abc def"),
        ("api_key: plainvalue", "plainvalue"),
        ("client_secret=short", "short"),
        ("refresh_token=abc.def", "abc.def"),
        ("Cookie=session=xyz", "session=xyz"),
    ],
)
def test_secrets_in_text_are_removed(text: str, gone: str) -> None:
    cleaned = sanitise_text(text)
    assert gone not in cleaned, cleaned
    assert "alice" in cleaned or "alice" not in text
    assert "model" in cleaned or "model" not in text


def test_secret_named_fields_are_masked_at_any_depth() -> None:
    for name in (
        "password", "newPassword", "apiKey", "api_key", "X-Api-Key", "token", "accessToken",
        "refresh_token", "secret", "agentSecret", "privateKey", "authorization", "Cookie",
        "key", "secretsKey", "creditCard", "ssn", "phone", "email", "signature",
    ):  # fmt: skip
        assert is_secret_name(name), name
    for name in ("taskId", "sessionId", "event", "keys", "monkeyBusiness", "status"):
        assert not is_secret_name(name), name
    given = {
        "user": {"name": "alice", "password": "p", "devices": [{"token": "t", "id": "d1"}]},
        "apiKey": ["a", "b"],
        "usage": {"inputTokens": 12, "outputTokens": 3},  # numbers are no secrets
        "note": f"carries {JWT}",
    }
    assert sanitise_value(given) == {
        "user": {"name": "alice", "password": MASK, "devices": [{"token": MASK, "id": "d1"}]},
        "apiKey": MASK,
        "usage": {"inputTokens": 12, "outputTokens": 3},
        "note": f"carries {MASK}",
    }


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.sanitiser")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_every_record_is_cleaned_in_json_message_args_extras_and_exception(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter({"nodeId": "gw1"}))
    key = base64.b64encode(os.urandom(32)).decode()
    trace_id = trace.new_trace_id()
    with trace.bound(traceId=trace_id, taskId="t1", userId="u1", event="worker:start"):
        logger.info("login %s with %s", {"username": "alice", "password": "pw1"}, f"Bearer {JWT}")
        try:
            raise ValueError(f"cannot open with key {key}")
        except ValueError:
            logger.exception("failed", extra={"apiKey": "xyz", "attempt": 2})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (
        first["message"]
        == f"login {{'username': 'alice', 'password': '{MASK}'}} with Bearer {MASK}"
    )
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == 24
    assert (first["level"], first["logger"], first["nodeId"]) == ("INFO", "tests.sanitiser", "gw1")
    assert (first["traceId"], first["taskId"], first["userId"]) == (trace_id, "t1", "u1")
    assert (first["event"], first["sessionId"], first["agentId"]) == ("worker:start", None, None)
    assert second["apiKey"] == MASK and second["attempt"] == 2
    assert "ValueError" in second["exc"] and key not in second["exc"]
    assert "pw1" not in stream.getvalue() and JWT not in stream.getvalue()


def test_text_lines_are_cleaned_too_and_name_their_trace(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    with trace.bound(traceId="abc-trace-1"):
        logger.warning("secret=%s and %s", "s1", JWT)
    line = stream.getvalue().strip()
    assert line.endswith(f"WARNING tests.sanitiser: secret={MASK} and {MASK} [traceId=abc-trace-1]")
    logger.warning("no context")
    assert stream.getvalue().splitlines()[-1].endswith("tests.sanitiser: no context")


def test_trace_ids_given_by_callers_and_made_here() -> None:
    made = {trace.new_trace_id() for _ in range(100)}
    assert len(made) == 100 and all(len(t) == 32 and int(t, 16) >= 0 for t in made)
    assert trace.adopt("caller-trace-42") == "caller-trace-42"
    for bad in ("short", "has space in it", "x" * 65, "line\nbreak-here", 12345678, None):
        assert not trace.valid_trace_id(bad)
        assert trace.adopt(bad) != bad
    w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.from_traceparent(f"00-{w3c}-00f067aa0ba902b7-01") == w3c
    span = "00f067aa0ba902b7"
    for bad in (
        f"ff-{w3c}-{span}-01",
        f"00-{'0' * 32}-{span}-01",
        f"00-{w3c}-{'0' * 16}-01",
        f"00-{w3c.upper()}-{span}-01",
        "00-x",
        None,
    ):
        assert trace.from_traceparent(bad) is None, bad


def test_actor_messages_carry_the_trace_id_they_were_sent_under() -> None:
    assert Message(to="task:s/t", type="x").trace_id == ""
    with trace.bound(traceId="req-trace-1"):
        sent = Message(to="task:s/t", type="x")
    assert sent.trace_id == "req-trace-1"
    assert Message.from_fields(sent.fields()).trace_id == "req-trace-1"
    assert "trace" not in Message(to="task:s/t", type="x").fields()  # none: as before


def test_sys_001_details_carry_the_trace_id_of_the_request_that_failed() -> None:
    with trace.bound(traceId="req-trace-2"):
        error = as_orchestra_error(RuntimeError("bug"))
    assert (error.code, error.details) == ("SYS_001", {"traceId": "req-trace-2"})
    failed = Message(to="task:s/t", type="x", trace_id="req-trace-3")
    assert _internal_error(failed)["error"]["details"] == {"traceId": "req-trace-3"}
    untraced = Message(to="task:s/t", type="x")  # from a Lua script: traced by its id
    assert _internal_error(untraced)["error"]["details"] == {"traceId": untraced.id}
