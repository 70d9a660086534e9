"""An agent cut off from its gateway for longer than a heartbeat, while its worker keeps
printing: after it reconnects the watcher has every line once, and the spool is empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import wait_for
from tests.support.running import Running
from tests.support.workers import printer

LINES = 60


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_output_printed_while_the_agent_is_cut_off_arrives_once(
    running: Running, tmp_path: Path
) -> None:
    watcher = await running.client()
    started = await watcher.ok(
        "worker:start",
        {"agentId": running.agent_id, "tool": "custom", "command": printer(LINES),
         "workingDirectory": str(tmp_path)},
    )  # fmt: skip
    await watcher.ok("session:join", {"sessionId": started["sessionId"]})
    await watcher.wait_for_event("task:stream", lambda d: d["data"] == "line 3")
    await watcher.close()
    seen = watcher.session_events(started["sessionId"])
    last_seen = seen[-1][1]["eventId"]

    # The gateway goes away for longer than a heartbeat (2 s here); the worker prints on.
    running.gateway.kill()
    spool = running.deployment.root / "agents" / running.agent_id / "spool"
    await wait_for(
        lambda: any(p.stat().st_size > 0 for p in spool.glob("*.jsonl")),
        what="output to pile up in the agent's spool",
    )
    await running.deployment.start_gateway("gw1", port=running.gateway.port)

    again = await running.client()
    try:
        await again.ok(
            "session:join", {"sessionId": started["sessionId"], "lastEventId": last_seen}
        )
        await again.wait_for_event("task:result", timeout_s=90)
        lines = [d for n, d in seen if n == "task:stream"]
        lines += [d for n, d in again.session_events(started["sessionId"]) if n == "task:stream"]
        assert [d["data"] for d in lines] == [f"line {n}" for n in range(1, LINES + 1)]
        assert [d["seq"] for d in lines] == list(range(1, LINES + 1))
        await wait_for(
            lambda: all(p.stat().st_size == 0 for p in spool.glob("*.jsonl")),
            what="the agent's spool to be empty",
        )
        assert running.agent.alive()
    finally:
        await again.close()
