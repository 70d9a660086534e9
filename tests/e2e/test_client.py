"""orchestra.client across a gateway restart: every line once, in order, nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.client_run import start_printing
from tests.support.processes import wait_for
from tests.support.running import Running

LINES = 50


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_the_client_resumes_by_itself_after_the_gateway_restarts(
    running: Running, tmp_path: Path
) -> None:
    run = await start_printing(
        running.gateway.url, running.token, running.agent_id, LINES, tmp_path
    )
    try:
        running.gateway.kill()
        await wait_for(lambda: run.client.state != "online", what="the client to notice")
        await running.deployment.start_gateway("gw1", port=running.gateway.port)
        await run.finished(timeout_s=90)
        assert run.client.state == "online"
        assert [d["data"] for d in run.lines()] == [f"line {n}" for n in range(1, LINES + 1)]
        session_id = run.started["sessionId"]
        ids = [d["eventId"] for _, d in run.received if d.get("sessionId") == session_id]
        assert len(ids) == len(set(ids))
    finally:
        await run.close()
