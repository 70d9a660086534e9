"""Password hashes: argon2id for new ones, old scrypt ones still verified and replaced at the
next successful login; the store's part of that on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

from argon2 import PasswordHasher, Type

from orchestra.db import Store, User
from orchestra.db.passwords import hash_password, needs_rehash, verify_password


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def scrypt_hash(password: str, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """A hash in the form the store made before argon2id: `scrypt$n$r$p$salt$hash`."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(key).decode()}"


async def user_with_hash(store: Store, password_hash: str) -> User:
    """A user whose stored hash is exactly `password_hash` (as an older version left it)."""
    return await store._add(User(username=unique("old"), password_hash=password_hash))


# ---- the hashes ----------------------------------------------------------------------------


def test_new_hashes_are_argon2id_with_owasps_parameters() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert stored != hash_password("correct horse")  # a fresh salt each time
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not needs_rehash(stored)


def test_old_scrypt_hashes_still_verify_and_need_a_rehash() -> None:
    stored = scrypt_hash("s3cret")
    assert verify_password("s3cret", stored)
    assert not verify_password("S3cret", stored)
    assert needs_rehash(stored)


def test_argon2_hashes_of_other_parameters_need_a_rehash() -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    argon2i = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.I).hash("pw")
    for stored in (weaker, argon2i):
        assert verify_password("pw", stored)
        assert needs_rehash(stored)


def test_malformed_foreign_and_absurd_hashes_never_verify() -> None:
    good = hash_password("pw")
    salt, tag = good.split("$")[-2:]
    for stored in (
        "",
        "not a hash",
        "$argon2id$garbage",
        good[:-4],
        f"$argon2id$v=19$m=4194304,t=2,p=1${salt}${tag}",  # 4 GiB: a tampered row
        "scrypt$99999999999$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$!!!$AAAA",
        "bcrypt$whatever",
    ):
        assert not verify_password("pw", stored), stored
        assert needs_rehash(stored)


# ---- the store -----------------------------------------------------------------------------


async def test_an_old_hash_is_replaced_at_the_first_successful_login(store: Store) -> None:
    user = await user_with_hash(store, scrypt_hash("old password"))
    assert await store.authenticate(user.username, "wrong") is None
    unchanged = await store.get_user(user.id)
    assert unchanged is not None and unchanged.password_hash == user.password_hash

    found = await store.authenticate(user.username, "old password")
    assert found is not None and found.id == user.id
    stored = await store.get_user(user.id)
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert found.password_hash == stored.password_hash
    assert not needs_rehash(stored.password_hash)
    # The same password still works, now against the new hash, which stays as it is.
    again = await store.authenticate(user.username, "old password")
    assert again is not None and again.password_hash == stored.password_hash
    assert await store.authenticate(user.username, "wrong") is None


async def test_an_argon2_hash_of_other_parameters_is_replaced(store: Store) -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-123456")
    user = await user_with_hash(store, weaker)
    assert await store.authenticate(user.username, "pw-123456") is not None
    stored = await store.get_user(user.id)
    assert stored is not None and stored.password_hash != weaker
    assert stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_a_disabled_users_old_hash_is_left_alone(store: Store) -> None:
    old = scrypt_hash("pw")
    user = await user_with_hash(store, old)
    await store.update_user(user.id, disabled=True)
    assert await store.authenticate(user.username, "pw") is None
    stored = await store.get_user(user.id)
    assert stored is not None and stored.password_hash == old


async def test_a_rehash_never_undoes_a_password_changed_meanwhile(store: Store) -> None:
    user = await user_with_hash(store, scrypt_hash("old"))
    await store.update_user(user.id, password="changed meanwhile")
    await store._rehash(user, "old")  # the login that checked the old hash, arriving late
    assert await store.authenticate(user.username, "changed meanwhile") is not None
    assert await store.authenticate(user.username, "old") is None


async def test_an_unknown_user_costs_an_argon2id_check(store: Store) -> None:
    assert await store.authenticate(unique("nobody"), "whatever") is None
    dummy = store._dummy_hash
    assert dummy is not None and dummy.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_users_made_and_reset_get_argon2id_hashes(store: Store) -> None:
    user = await store.create_user(unique("new"), "first password")
    assert user.password_hash.startswith("$argon2id$")
    changed = await store.update_user(user.id, password="second password")
    assert changed is not None and changed.password_hash.startswith("$argon2id$")
    assert await store.authenticate(user.username, "second password") is not None
