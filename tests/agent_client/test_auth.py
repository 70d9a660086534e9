"""The handshake signature (PROTOCOL.md §3) and the reconnect backoff."""

from __future__ import annotations

import hashlib
import hmac
import time

from agent_client.connection import Backoff, handshake_auth, refusal_reason, sign


def test_signature_matches_an_independent_hmac() -> None:
    expected = hmac.new(b"top-secret", b"agent-7:1700000000123:abc123", hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sign("top-secret", "agent-7", 1700000000123, "abc123"), expected)
    assert not hmac.compare_digest(sign("other", "agent-7", 1700000000123, "abc123"), expected)


def test_handshake_auth_is_signed_afresh_each_time() -> None:
    before = int(time.time() * 1000)
    first, second = handshake_auth("agent-7", "top-secret"), handshake_auth("agent-7", "top-secret")
    for auth in (first, second):
        assert set(auth) == {"agentId", "timestamp", "nonce", "signature", "compression"}
        assert auth["agentId"] == "agent-7"
        assert isinstance(auth["timestamp"], int) and auth["timestamp"] >= before
        assert auth["compression"] == ["zstd", "gzip"]
        message = f"agent-7:{auth['timestamp']}:{auth['nonce']}".encode()
        expected = hmac.new(b"top-secret", message, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(auth["signature"], expected)
        assert "top-secret" not in repr(auth)
    assert first["nonce"] != second["nonce"]


def test_backoff_grows_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 1.0
    low = Backoff(1.0, 8.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.5, 1.0, 2.0]


def test_refusal_reason_reads_both_shapes() -> None:
    assert refusal_reason({"code": "AUTH_001", "message": "bad"}) == ("AUTH_001", "bad")
    nested = {"message": "bad", "data": {"code": "AUTH_001"}}
    assert refusal_reason(nested) == ("AUTH_001", "bad")
    assert refusal_reason("Connection refused") == (None, "Connection refused")
