"""Encryption of secrets: at rest in SQL, and sealed for one agent (PROTOCOL.md §8).

Two uses, both AES-256-GCM (a random 96-bit nonce per encryption, an authentication tag
that refuses any change) from the audited `cryptography` package:

- `encrypt_field` / `decrypt_field`: a secret kept in a SQL record (an agent's secret, an
  AI config's API key, a webhook's secret) under the gateway's master key
  (`Settings.secrets_key`), with the record's id as associated data, so a ciphertext
  copied into another record does not open.
- `seal_for_agent` / `unseal_for_agent`: secrets sent to one agent for one task, under a
  key derived (HKDF-SHA256) from that agent's secret, with the task id as associated data;
  Redis and the logs on the way only ever see the sealed text. The agent daemon unseals.

Tokens are text: a version prefix and the URL-safe base64 of nonce + ciphertext + tag.
`CryptoError` never carries the plaintext, the key or the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CryptoError",
    "decrypt_field",
    "encrypt_field",
    "generate_master_key",
    "seal_for_agent",
    "unseal_for_agent",
]

VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
AGENT_KEY_INFO = b"orchestra agent secrets v1"

MasterKey = bytes | str  # raw 32 bytes, or their base64 (as `Settings.secrets_key` holds)


class CryptoError(ValueError):
    """Raised when a token does not decrypt: wrong key, wrong record or task, or damaged."""


def generate_master_key() -> str:
    """A fresh master key, as `ORCHESTRA_SECRETS_KEY` takes it (base64 of 32 bytes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def encrypt_field(master_key: MasterKey, record_id: str, plaintext: str) -> str:
    """Encrypt a secret kept in the SQL record `record_id`: a text token ("v1.…")."""
    return _encrypt(_master(master_key), record_id.encode(), plaintext.encode())


def decrypt_field(master_key: MasterKey, record_id: str, token: str) -> str:
    """The secret `encrypt_field` encrypted for `record_id`; `CryptoError` if it is not."""
    plain = _decrypt(_master(master_key), record_id.encode(), token, "record")
    return _text(plain)


def agent_key(agent_secret: str) -> bytes:
    """The AES key an agent's secrets are sealed under: HKDF-SHA256 of its secret."""
    if not agent_secret:
        raise CryptoError("an agent secret is needed to seal or unseal")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=AGENT_KEY_INFO)
    return hkdf.derive(agent_secret.encode())


def seal_for_agent(agent_secret: str, task_id: str, values: dict[str, str]) -> str:
    """Seal `values` (environment variables, say) so that only this agent opens them, and
    only for this task."""
    for name, value in values.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("sealed values must map str to str")
    plain = json.dumps(values, separators=(",", ":"), sort_keys=True).encode()
    return _encrypt(agent_key(agent_secret), task_id.encode(), plain)


def unseal_for_agent(agent_secret: str, task_id: str, sealed: str) -> dict[str, str]:
    """The values `seal_for_agent` sealed for this agent and task; `CryptoError` if not."""
    plain = _decrypt(agent_key(agent_secret), task_id.encode(), sealed, "sealed box")
    try:
        values = json.loads(plain)
    except ValueError:
        raise CryptoError("the sealed box does not hold a JSON object") from None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise CryptoError("the sealed box does not hold a map of strings")
    return values


# ---- internals -------------------------------------------------------------------------------


def _master(key: MasterKey) -> bytes:
    if isinstance(key, str):
        try:
            key = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("the master key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise CryptoError(f"the master key must be {KEY_BYTES} bytes")
    return key


def _encrypt(key: bytes, aad: bytes, plain: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plain, aad)
    return f"{VERSION}." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def _decrypt(key: bytes, aad: bytes, token: str, what: str) -> bytes:
    version, dot, body = token.partition(".") if isinstance(token, str) else ("", "", "")
    if not dot or version != VERSION:
        raise CryptoError(f"the {what} token is not of a known version")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CryptoError(f"the {what} token is not valid base64") from None
    if len(raw) < NONCE_BYTES + 16:
        raise CryptoError(f"the {what} token is too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise CryptoError(
            f"the {what} token does not decrypt: wrong key, wrong id, or damaged"
        ) from None


def _text(plain: bytes) -> str:
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise CryptoError("the decrypted value is not text") from None
