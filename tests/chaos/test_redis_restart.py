"""Redis restarted mid-run (append-only file on): the gateway, the agent and the client
find it again by themselves, and no acknowledged output is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.redis_server import RedisServer
from tests.support.client_run import start_printing
from tests.support.running import Running

LINES = 60


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_a_run_completes_across_a_redis_restart(
    running: Running, redis: RedisServer, tmp_path: Path
) -> None:
    run = await start_printing(
        running.gateway.url, running.token, running.agent_id, LINES, tmp_path
    )
    try:
        await redis.stop()  # a clean shutdown writes the append-only file out
        await redis.restart()
        await run.finished(timeout_s=120)
        lines = run.lines()
        assert [d["data"] for d in lines] == [f"line {n}" for n in range(1, LINES + 1)]
        assert [d["seq"] for d in lines] == list(range(1, LINES + 1))
    finally:
        await run.close()
