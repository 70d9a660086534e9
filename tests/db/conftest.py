"""Fixtures of the SQL store tests: a `store` opened on SQLite and on PostgreSQL in turn.

The PostgreSQL database comes from the session-scoped `postgres_url` of the top conftest
(built on `tests.support.postgres`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestra.db import Store

# The master key the `store` fixture keeps agent secrets under (base64 of 32 bytes).
SECRETS_KEY = base64.b64encode(b"m" * 32).decode()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file (in a folder not made yet), or the session's PostgreSQL database.

    A plain (not async) fixture on purpose: it looks the PostgreSQL fixture up by name only
    when needed, which pytest-asyncio can do only while no event loop is running.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'orchestra.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store on each database in turn (see `store_url`).

    The PostgreSQL database is shared by the tests of a session, so tests make their own
    names (ids are random) and never assume a table starts empty.
    """
    store = await Store.connect(store_url, secrets_key=SECRETS_KEY)
    try:
        yield store
    finally:
        await store.close()
