"""The SQL store as its callers use it, each test on SQLite and on PostgreSQL.

The PostgreSQL database is shared by the whole test session, so every test makes its own
unique names and checks only the rows it made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from orchestra.db import Store, hash_password, verify_password
from orchestra.db.store import DuplicateError, StoreError
from orchestra.errors import DatabaseError
from tests.support.postgres import PostgresServer, postgres_database


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---- users ---------------------------------------------------------------------------------


async def test_user_authenticates_with_the_right_password_only(store: Store) -> None:
    name = unique("alice")
    user = await store.create_user(name, "correct horse", is_admin=True)
    assert user.id and user.username == name and user.is_admin and not user.disabled
    assert user.created_at.tzinfo is not None
    assert "correct horse" not in user.password_hash
    assert user.password_hash not in repr(user)

    found = await store.authenticate(name, "correct horse")
    assert found is not None and found.id == user.id
    assert await store.authenticate(name, "wrong") is None
    assert await store.authenticate(unique("nobody"), "correct horse") is None


async def test_duplicate_username_is_refused(store: Store) -> None:
    name = unique("bob")
    await store.create_user(name, "pw1")
    with pytest.raises(DuplicateError):
        await store.create_user(name, "pw2")
    assert await store.authenticate(name, "pw1") is not None


async def test_disabled_user_cannot_authenticate(store: Store) -> None:
    name = unique("carol")
    user = await store.create_user(name, "pw")
    updated = await store.update_user(user.id, disabled=True)
    assert updated is not None and updated.disabled
    assert await store.authenticate(name, "pw") is None
    await store.update_user(user.id, disabled=False, password="new")
    assert await store.authenticate(name, "pw") is None
    assert await store.authenticate(name, "new") is not None


async def test_user_lookup_list_and_delete(store: Store) -> None:
    user = await store.create_user(unique("dave"), "pw")
    assert (await store.get_user(user.id)) == user
    by_name = await store.get_user_by_name(user.username)
    assert by_name is not None and by_name.id == user.id
    assert user.id in {u.id for u in await store.list_users()}
    assert await store.delete_user(user.id)
    assert await store.get_user(user.id) is None
    assert not await store.delete_user(user.id)
    assert await store.update_user(user.id, is_admin=True) is None


def test_password_hash_format_and_check() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # tests/db/test_passwords.py
    assert stored != hash_password("s3cret")  # a fresh salt each time
    assert verify_password("s3cret", stored)
    assert not verify_password("S3cret", stored)
    assert not verify_password("s3cret", "not a hash")
    assert not verify_password("s3cret", "scrypt$99999999999$8$1$AAAA$AAAA")


# ---- refresh tokens ------------------------------------------------------------------------


async def test_refresh_token_works_exactly_once_even_when_raced(store: Store) -> None:
    user = await store.create_user(unique("erin"), "pw")
    soon = datetime.now(UTC) + timedelta(hours=1)

    await store.add_refresh_token(jti := uuid.uuid4().hex, user.id, soon)
    assert await store.use_refresh_token(jti) == user.id
    assert await store.use_refresh_token(jti) is None

    await store.add_refresh_token(raced := uuid.uuid4().hex, user.id, soon)
    results = await asyncio.gather(*(store.use_refresh_token(raced) for _ in range(2)))
    assert sorted(results, key=str) == sorted([user.id, None], key=str)

    assert await store.use_refresh_token(uuid.uuid4().hex) is None  # never issued


async def test_expired_and_revoked_refresh_tokens_are_refused(store: Store) -> None:
    user = await store.create_user(unique("frank"), "pw")
    await store.add_refresh_token(
        old := uuid.uuid4().hex, user.id, datetime.now(UTC) - timedelta(seconds=1)
    )
    assert await store.use_refresh_token(old) is None

    later = datetime.now(UTC) + timedelta(hours=1)
    await store.add_refresh_token(live := uuid.uuid4().hex, user.id, later)
    assert await store.revoke_user_tokens(user.id) >= 1
    assert await store.use_refresh_token(live) is None


# ---- agents --------------------------------------------------------------------------------


async def test_agent_secret_lifecycle(store: Store) -> None:
    owner = await store.create_user(unique("gina"), "pw")
    agent, secret = await store.create_agent("build box", owner.id, ["claude", "custom"])
    assert agent.capabilities == ["claude", "custom"] and not agent.revoked
    assert len(secret) >= 40
    assert secret not in repr(agent) and secret not in str(agent)
    assert await store.agent_secret(agent.id) == secret

    rotated = await store.rotate_agent_secret(agent.id)
    assert rotated is not None and rotated != secret
    assert await store.agent_secret(agent.id) == rotated

    assert await store.revoke_agent(agent.id)
    assert await store.agent_secret(agent.id) is None
    assert await store.rotate_agent_secret(agent.id) is None
    assert await store.agent_secret(unique("unknown")) is None
    assert not await store.revoke_agent(unique("unknown"))


async def test_agents_listed_by_owner_and_touched(store: Store) -> None:
    owner, other = unique("owner"), unique("other")
    mine, _ = await store.create_agent("a", owner)
    theirs, _ = await store.create_agent("b", other)
    assert [a.id for a in await store.list_agents(owner)] == [mine.id]
    all_ids = {a.id for a in await store.list_agents(None)}
    assert {mine.id, theirs.id} <= all_ids

    assert await store.touch_agent(mine.id, version="1.2.3", capabilities=["qwcoder"])
    seen = await store.get_agent(mine.id)
    assert seen is not None and seen.version == "1.2.3" and seen.capabilities == ["qwcoder"]
    assert seen.last_seen_at is not None
    assert abs(seen.last_seen_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert not await store.touch_agent(unique("unknown"))


# ---- AI configs ----------------------------------------------------------------------------


async def test_ai_config_crud(store: Store) -> None:
    owner = unique("owner")
    config = await store.create_ai_config(
        owner, "fast", "claude", model="sonnet", settings={"temperature": 0.2}
    )
    assert [c.id for c in await store.list_ai_configs(owner)] == [config.id]
    updated = await store.update_ai_config(config.id, model="opus", settings={"x": [1, 2]})
    assert updated is not None and updated.model == "opus" and updated.settings == {"x": [1, 2]}
    assert updated.updated_at >= config.updated_at
    fetched = await store.get_ai_config(config.id)
    assert fetched is not None and fetched.settings == {"x": [1, 2]}
    with pytest.raises(TypeError):
        await store.update_ai_config(config.id, owner_id="someone else")
    assert await store.delete_ai_config(config.id)
    assert await store.get_ai_config(config.id) is None


# ---- sessions ------------------------------------------------------------------------------


async def test_sessions_visible_to_owner_and_participants_only(store: Store) -> None:
    owner, guest, stranger = unique("owner"), unique("guest"), unique("stranger")
    shared = await store.create_session(owner, title="shared")
    private = await store.create_session(owner, title="private", session_id=unique("sid"))
    assert shared.participants == [owner] and shared.status == "active"

    with_guest = await store.add_participant(shared.id, guest)
    assert with_guest is not None and with_guest.participants == [owner, guest]

    def ids(rows: list) -> set[str]:
        return {r.id for r in rows}

    assert ids(await store.list_sessions(owner)) == {shared.id, private.id}
    assert ids(await store.list_sessions(guest)) == {shared.id}
    assert ids(await store.list_sessions(stranger)) == set()
    assert {shared.id, private.id} <= ids(await store.list_sessions(stranger, admin=True))


async def test_participant_match_is_exact(store: Store) -> None:
    # A user whose id is part of another's must not see that other's sessions.
    owner = unique("owner")
    session = await store.create_session(owner)
    await store.add_participant(session.id, "user_1x")
    assert await store.list_sessions("user_1") == []
    assert await store.list_sessions("user_%") == []
    assert [s.id for s in await store.list_sessions("user_1x")] == [session.id]


async def test_session_update(store: Store) -> None:
    session = await store.create_session(unique("owner"), agent_id="agent-1")
    ended_at = datetime.now(UTC)
    updated = await store.update_session(session.id, status="ended", ended_at=ended_at)
    assert updated is not None and updated.status == "ended"
    fetched = await store.get_session(session.id)
    assert fetched is not None and fetched.ended_at == ended_at and fetched.agent_id == "agent-1"
    assert await store.update_session(unique("nope"), status="ended") is None
    with pytest.raises(TypeError):
        await store.update_session(session.id, colour="red")
    with pytest.raises(DuplicateError):
        await store.create_session(unique("owner"), session_id=session.id)


# ---- tasks ---------------------------------------------------------------------------------


async def test_task_create_update_and_filters(store: Store) -> None:
    owner, session_id = unique("owner"), unique("session")
    first = await store.create_task(
        session_id=session_id,
        owner_id=owner,
        tool="claude",
        type="chat",
        parameters={"prompt": "hi"},
    )
    second = await store.create_task(
        id=unique("task"),
        session_id=session_id,
        owner_id=owner,
        tool="custom",
        agent_id="agent-7",
        priority="high",
    )
    other = await store.create_task(session_id=unique("session"), owner_id=owner, tool="claude")
    assert first.status == "queued" and first.attempts == 0 and first.result is None

    started = datetime.now(UTC)
    done = await store.update_task(
        first.id,
        status="completed",
        started_at=started,
        finished_at=started + timedelta(seconds=3),
        exit_code=0,
        attempts=1,
        result={"text": "hello", "tokens": [1, 2]},
    )
    assert done is not None and done.status == "completed"
    fetched = await store.get_task(first.id)
    assert fetched is not None
    assert fetched.result == {"text": "hello", "tokens": [1, 2]}
    assert fetched.started_at == started and fetched.exit_code == 0
    assert fetched.parameters == {"prompt": "hi"}

    in_session = await store.list_tasks(session_id=session_id)
    assert [t.id for t in in_session] == [first.id, second.id]
    assert [t.id for t in await store.list_tasks(owner_id=owner)] == [first.id, second.id, other.id]
    assert [t.id for t in await store.list_tasks(session_id=session_id, status="queued")] == [
        second.id
    ]
    assert [t.id for t in await store.list_tasks(owner_id=owner, agent_id="agent-7")] == [second.id]
    assert await store.update_task(unique("nope"), status="error") is None
    with pytest.raises(TypeError):
        await store.update_task(first.id, id="other")


# ---- session event archive -----------------------------------------------------------------


async def test_archive_is_idempotent_and_lists_in_stream_order(store: Store) -> None:
    session_id = unique("session")
    entries: list[tuple[str, str, dict[str, Any]]] = [
        ("10-0", "worker:output", {"seq": 3}),
        ("5-1", "worker:output", {"seq": 2}),
        ("5-0", "worker:status", {"status": "running"}),
    ]
    assert await store.archive_events(session_id, entries) == 3
    assert await store.archive_events(session_id, entries[:2]) == 0
    assert await store.archive_events(session_id, [("11-0", "task:result", {})]) == 1
    assert await store.archive_events(unique("other"), entries) == 3

    everything = await store.list_events(session_id, after=None, limit=100)
    assert [e.event_id for e in everything] == ["5-0", "5-1", "10-0", "11-0"]
    assert everything[0].event == "worker:status"
    assert everything[0].payload == {"status": "running"}
    assert (everything[2].ms, everything[2].seq) == (10, 0)

    after = await store.list_events(session_id, after="5-0", limit=100)
    assert [e.event_id for e in after] == ["5-1", "10-0", "11-0"]
    assert [e.event_id for e in await store.list_events(session_id, after="5-1", limit=2)] == [
        "10-0",
        "11-0",
    ]
    assert [e.event_id for e in await store.list_events(session_id, after="9-5", limit=1)] == [
        "10-0"
    ]
    assert await store.list_events(session_id, after="11-0", limit=10) == []
    with pytest.raises(ValueError):
        await store.archive_events(session_id, [("not-an-id", "x", {})])


async def test_archive_keeps_real_stream_ids(store: Store) -> None:
    # Real IDs carry milliseconds since the epoch: beyond a 32-bit integer.
    session_id = unique("session")
    ids = [f"1700000000000-{n}" for n in range(3)] + ["1700000000001-0"]
    await store.archive_events(session_id, [(i, "e", {"n": n}) for n, i in enumerate(ids)])
    listed = await store.list_events(session_id, after="1700000000000-1", limit=10)
    assert [e.event_id for e in listed] == ids[2:]


# ---- failures and lifecycle ----------------------------------------------------------------


async def test_sqlite_file_and_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "orchestra.db"
    async with Store(f"sqlite+aiosqlite:///{path}") as store:
        await store.create_user(unique("zed"), "pw")
    assert path.exists()
    # A second store on the same file (another process would do the same) sees the data.
    again = await Store.connect(f"sqlite+aiosqlite:///{path}")
    try:
        assert len(await again.list_users()) == 1
    finally:
        await again.close()


async def test_database_failures_become_database_errors(tmp_path: Path) -> None:
    closed = Store(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(StoreError):
        await closed.get_user("anyone")
    unreachable = Store("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError):
        await unreachable.open()


async def test_stores_opening_a_new_database_at_once_all_succeed(store_url: str) -> None:
    # A gateway and the CLI (or several gateways) may start together on an empty database:
    # exactly one creates the tables, and nobody fails on the others' half-made schema.
    async with _fresh_database(store_url) as url:
        stores = await asyncio.gather(*(Store.connect(url) for _ in range(6)))
        try:
            users = await asyncio.gather(
                *(s.create_user(unique(f"u{n}"), "pw") for n, s in enumerate(stores))
            )
            assert len({u.id for u in await stores[0].list_users()}) == len(users)
        finally:
            await asyncio.gather(*(s.close() for s in stores))


@asynccontextmanager
async def _fresh_database(store_url: str) -> AsyncIterator[str]:
    """A database with no tables yet, beside the one of ``store_url`` (same server or folder)."""
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        yield f"sqlite+aiosqlite:///{Path(url.database).parent / 'fresh' / 'new.db'}"
        return
    server = PostgresServer(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
    )
    async with postgres_database(server) as fresh:
        yield fresh
