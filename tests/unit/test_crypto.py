"""orchestra.crypto: secrets at rest and sealed for agents (PROTOCOL.md §8)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from orchestra.crypto import (
    CryptoError,
    decrypt_field,
    encrypt_field,
    generate_master_key,
    seal_for_agent,
    unseal_for_agent,
)

MASTER = generate_master_key()
OTHER_MASTER = generate_master_key()
API_KEY = "sk-ant-api03-THIS-IS-THE-PLAINTEXT-" + "x" * 20
AGENT_SECRET = "agent-secret-" + "s" * 40


def _body(token: str) -> bytes:
    version, _, body = token.partition(".")
    assert version == "v1"
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_a_field_round_trips() -> None:
    token = encrypt_field(MASTER, "rec-1", API_KEY)
    assert token.startswith("v1.")
    assert decrypt_field(MASTER, "rec-1", token) == API_KEY
    # The raw 32 bytes work as well as their base64.
    assert decrypt_field(base64.b64decode(MASTER), "rec-1", token) == API_KEY


def test_unicode_and_empty_values_round_trip() -> None:
    for value in ("", "clé-✓-鍵", "a" * 10_000):
        assert decrypt_field(MASTER, "r", encrypt_field(MASTER, "r", value)) == value


def test_each_encryption_has_its_own_nonce() -> None:
    tokens = {encrypt_field(MASTER, "rec-1", API_KEY) for _ in range(50)}
    assert len(tokens) == 50
    nonces = {_body(t)[:12] for t in tokens}
    assert len(nonces) == 50


def test_the_token_never_holds_the_plaintext() -> None:
    token = encrypt_field(MASTER, "rec-1", API_KEY)
    assert API_KEY not in token
    assert API_KEY.encode() not in _body(token)
    for part in ("THIS-IS-THE-PLAINTEXT", "sk-ant"):
        assert part not in token


def test_another_record_id_does_not_decrypt() -> None:
    token = encrypt_field(MASTER, "rec-1", API_KEY)
    with pytest.raises(CryptoError) as caught:
        decrypt_field(MASTER, "rec-2", token)
    assert API_KEY not in str(caught.value)
    assert token not in str(caught.value)
    assert "wrong key, wrong id" in str(caught.value)


def test_another_master_key_does_not_decrypt() -> None:
    token = encrypt_field(MASTER, "rec-1", API_KEY)
    with pytest.raises(CryptoError) as caught:
        decrypt_field(OTHER_MASTER, "rec-1", token)
    assert API_KEY not in str(caught.value)
    assert MASTER not in str(caught.value) and OTHER_MASTER not in str(caught.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tag changed
        lambda t: "v2" + t[2:],  # unknown version
        lambda t: t.replace("v1.", ""),  # no version
        lambda t: "v1.!!!not-base64!!!",
        lambda t: "v1.AAAA",  # too short
        lambda t: "",
    ],
)
def test_a_damaged_token_is_refused(damage: object) -> None:
    token = encrypt_field(MASTER, "rec-1", API_KEY)
    with pytest.raises(CryptoError):
        decrypt_field(MASTER, "rec-1", damage(token))  # type: ignore[operator]


def test_a_malformed_master_key_is_refused_without_echoing_it() -> None:
    for key in ("short", base64.b64encode(b"x" * 16).decode(), b"x" * 31):
        with pytest.raises(CryptoError) as caught:
            encrypt_field(key, "rec-1", API_KEY)
        assert str(key) not in str(caught.value)


def test_a_sealed_box_round_trips() -> None:
    values = {"ANTHROPIC_API_KEY": API_KEY, "OTHER": "ü"}
    sealed = seal_for_agent(AGENT_SECRET, "task-1", values)
    assert sealed.startswith("v1.")
    assert API_KEY not in sealed
    assert API_KEY.encode() not in _body(sealed)
    assert unseal_for_agent(AGENT_SECRET, "task-1", sealed) == values
    assert unseal_for_agent(AGENT_SECRET, "t", seal_for_agent(AGENT_SECRET, "t", {})) == {}


def test_sealing_twice_gives_different_boxes() -> None:
    values = {"K": API_KEY}
    assert seal_for_agent(AGENT_SECRET, "t", values) != seal_for_agent(AGENT_SECRET, "t", values)


def test_a_box_opens_only_for_its_task_and_agent() -> None:
    sealed = seal_for_agent(AGENT_SECRET, "task-1", {"K": API_KEY})
    for secret, task in ((AGENT_SECRET, "task-2"), ("another-agent-secret", "task-1")):
        with pytest.raises(CryptoError) as caught:
            unseal_for_agent(secret, task, sealed)
        assert API_KEY not in str(caught.value)
        assert AGENT_SECRET not in str(caught.value)


def test_a_field_token_is_no_sealed_box() -> None:
    # Another key and another purpose: neither opens as the other.
    token = encrypt_field(MASTER, "task-1", API_KEY)
    with pytest.raises(CryptoError):
        unseal_for_agent(AGENT_SECRET, "task-1", token)


def test_the_seal_follows_the_protocol() -> None:
    """PROTOCOL.md §8, done by hand: AES-256-GCM under HKDF-SHA256 of the agent's secret
    (info "orchestra agent secrets v1"), the task id as associated data. An agent written
    from the protocol alone opens what the gateway seals."""
    sealed = seal_for_agent(AGENT_SECRET, "task-9", {"K": "v"})
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"orchestra agent secrets v1"
    ).derive(AGENT_SECRET.encode())
    raw = _body(sealed)
    assert AESGCM(key).decrypt(raw[:12], raw[12:], b"task-9") == b'{"K":"v"}'


def test_sealed_values_must_be_strings() -> None:
    with pytest.raises(TypeError):
        seal_for_agent(AGENT_SECRET, "t", {"K": 1})  # type: ignore[dict-item]


def test_no_agent_secret_is_refused() -> None:
    with pytest.raises(CryptoError):
        seal_for_agent("", "t", {"K": "v"})
