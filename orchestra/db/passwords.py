"""Password hashing: argon2id for new hashes, the old scrypt ones still verified.

New hashes are argon2id (argon2-cffi) with OWASP's recommended parameters for it
(Password Storage Cheat Sheet): m = 19 MiB (19456 KiB), t = 2 iterations, p = 1, a 16-byte
salt and a 32-byte tag, in the standard PHC form ``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``.

Hashes made before (``scrypt$n$r$p$salt_b64$hash_b64``, the standard library's scrypt) still
verify, so existing users can log in; `needs_rehash` tells the store to replace them, and
argon2 hashes of other parameters, with a fresh hash at the next successful login.

A stored hash names its own cost: absurd costs (a tampered row) are refused rather than let
verification eat gigabytes of memory. Hashing costs tens of milliseconds of CPU on purpose;
async callers should run it in a thread (the store does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "needs_rehash", "verify_password"]

# OWASP's argon2id parameters (see the module docstring).
_MEMORY_KIB = 19456
_TIME_COST = 2
_PARALLELISM = 1
_HASHER = PasswordHasher(
    time_cost=_TIME_COST,
    memory_cost=_MEMORY_KIB,
    parallelism=_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
# The most a stored argon2 hash may ask for before we refuse to verify it.
_MAX_ARGON2_MEMORY_KIB = 256 * 1024
_MAX_ARGON2_TIME = 32
_MAX_ARGON2_LANES = 16

_SCRYPT = "scrypt"
_MAX_N = 2**20
_MAX_MEM = 256 * 1024 * 1024


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id and a fresh random salt (PHC string form)."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (argon2 or the old scrypt form); False for a
    malformed or foreign hash, or one that asks for an absurd cost."""
    if stored.startswith("$argon2"):
        return _verify_argon2(password, stored)
    if stored.startswith(_SCRYPT + "$"):
        return _verify_scrypt(password, stored)
    return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` should be replaced by a fresh hash once the password is known:
    true for the old scrypt hashes and for argon2 hashes of other parameters or variants."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def _verify_argon2(password: str, stored: str) -> bool:
    try:
        params = extract_parameters(stored)
        if (
            params.memory_cost > _MAX_ARGON2_MEMORY_KIB
            or params.time_cost > _MAX_ARGON2_TIME
            or params.parallelism > _MAX_ARGON2_LANES
        ):
            return False
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError, ValueError):
        # A wrong password, a malformed hash, parameters argon2 itself rejects.
        return False


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n_s, r_s, p_s, salt_s, key_s = stored.split("$")
        if scheme != _SCRYPT:
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        if not (1 < n <= _MAX_N and 0 < r <= 64 and 0 < p <= 16):
            return False
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(key_s, validate=True)
        if not expected:
            return False
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            dklen=len(expected),
            maxmem=_MAX_MEM,
        )
    except ValueError:
        # Covers bad splits, bad integers, bad base64 and parameters scrypt itself rejects.
        return False
    return hmac.compare_digest(actual, expected)
