"""Password hashing with the standard library's scrypt.

Stored form: ``scrypt$n$r$p$salt_b64$hash_b64``. The cost parameters travel with each hash so
that raising them later leaves old hashes verifiable. Hashing costs tens of milliseconds of
CPU on purpose; async callers should run it in a thread (the store does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password"]

_SCHEME = "scrypt"
_N = 2**14
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# A stored hash names its own cost; refuse absurd ones rather than let a tampered row make
# verification eat gigabytes of memory.
_MAX_N = 2**20
_MAX_MEM = 256 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAX_MEM
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh random salt, in the ``scrypt$n$r$p$salt$hash`` form."""
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password, salt, _N, _R, _P, _KEY_BYTES)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed or foreign hash."""
    try:
        scheme, n_s, r_s, p_s, salt_s, key_s = stored.split("$")
        if scheme != _SCHEME:
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        if not (1 < n <= _MAX_N and 0 < r <= 64 and 0 < p <= 16):
            return False
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(key_s, validate=True)
        if not expected:
            return False
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except ValueError:
        # Covers bad splits, bad integers, bad base64 and parameters scrypt itself rejects.
        return False
    return hmac.compare_digest(actual, expected)
