"""The SQLite database and its folder are readable by their owner only."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from orchestra.db import Store


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_a_new_database_file_and_its_companions_are_the_owners_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "orchestra.db"
    old_umask = os.umask(0o022)  # the usual one: files 644, folders 755 unless told
    try:
        async with Store(f"sqlite+aiosqlite:///{path}") as store:
            await store.create_user("zed", "pw")
            companions = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
            assert all(c.exists() for c in companions)  # WAL mode, while open
            assert [mode(p) for p in (path, *companions)] == [0o600] * 3
    finally:
        os.umask(old_umask)
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


async def test_an_existing_database_file_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "orchestra.db"
    folder_mode = mode(tmp_path)
    async with Store(f"sqlite+aiosqlite:///{path}") as store:
        await store.create_user("zed", "pw")
    path.chmod(0o644)  # as an earlier version left it
    with caplog.at_level(logging.INFO, logger="orchestra.files"):
        async with Store(f"sqlite+aiosqlite:///{path}") as store:
            assert [u.username for u in await store.list_users()] == ["zed"]
            assert mode(path) == 0o600
            assert mode(path.with_name(path.name + "-wal")) == 0o600
    assert any("open to others" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert mode(tmp_path) == folder_mode  # a folder that exists is the user's: left as is
