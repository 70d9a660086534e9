"""Agents' HMAC secrets at rest: AES-256-GCM under the gateway's master key
(`Settings.secrets_key`), with the agent's id as associated data, so that a ciphertext
copied into another agent's row does not open (`orchestra.crypto.encrypt_field`).

The gateway needs the plain secret (to check a handshake's HMAC, and to seal AI keys for an
agent), so the store decrypts on the way out. Rows written before secrets were encrypted
hold the secret itself: they are told apart by the token's version prefix ("v1."), which a
secret (URL-safe base64) never has, and encrypted when a store with the key opens.

No message here ever holds a secret, a ciphertext or the key.
"""

from __future__ import annotations

import logging

from orchestra.crypto import VERSION, CryptoError, decrypt_field, encrypt_field
from orchestra.db.base import StoreError

__all__ = ["ENCRYPTED_PREFIX", "SecretsKeyMissing", "is_encrypted", "seal", "unseal"]

log = logging.getLogger(__name__)

ENCRYPTED_PREFIX = VERSION + "."


class SecretsKeyMissing(StoreError):
    """Raised when agent secrets are to be read or made by a store opened without a key."""

    def __init__(self) -> None:
        super().__init__(
            "agent secrets are kept encrypted, and this store was opened without the "
            "secrets key (ORCHESTRA_SECRETS_KEY, or the development one in the data folder)"
        )


def is_encrypted(stored: str) -> bool:
    """Whether a stored agent secret is a ciphertext (not a row from before encryption)."""
    return stored.startswith(ENCRYPTED_PREFIX)


def seal(key: str | None, agent_id: str, secret: str) -> str:
    """The text to keep in the agent's row for ``secret``."""
    if key is None:
        raise SecretsKeyMissing()
    try:
        return encrypt_field(key, agent_id, secret)
    except CryptoError as exc:  # a malformed key: the message names no key
        raise StoreError(f"the secrets key is unusable: {exc}") from None


def unseal(key: str | None, agent_id: str, stored: str) -> str:
    """The secret kept in the agent's row as ``stored``.

    A plain row (left by an earlier version, and not yet migrated) is given as it is.
    """
    if not is_encrypted(stored):
        return stored
    if key is None:
        raise SecretsKeyMissing()
    try:
        return decrypt_field(key, agent_id, stored)
    except CryptoError:
        log.error(
            "the secret of agent %s does not decrypt under this secrets key: "
            "was ORCHESTRA_SECRETS_KEY changed, or the row copied from another agent?",
            agent_id,
        )
        raise StoreError(
            f"the secret of agent {agent_id} does not decrypt under this gateway's secrets key"
        ) from None
