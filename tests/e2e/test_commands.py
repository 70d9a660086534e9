"""Commands reach the worker once: a push that was lost is made good while the agent stays
connected, and a request repeated with the same id (a client that lost its answer) is
taken once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from actors import Scripts
from orchestra import keys, redis_client
from tests.e2e.test_walking_skeleton import start_echo_worker, stream_lines
from tests.support.processes import http
from tests.support.running import Running
from tests.support.workers import printer

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(ORCHESTRA_COMMAND_RESEND_AFTER_S="1"),
]


async def test_a_command_whose_push_was_lost_reaches_the_connected_agent(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    redis = redis_client.connect(running.deployment.redis_url)
    try:
        started = await start_echo_worker(client, running, tmp_path)
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:stream", lambda d: d["data"].startswith("worker: wait"))
        # What a node that died between committing a turn and pushing its command leaves
        # behind: the command in the agent's outbox, and no push.
        partitions = running.deployment.partitions
        await Scripts(redis).outbox_append(
            keys=[
                keys.agent(running.agent_id, partitions),
                keys.agent_outbox(running.agent_id, partitions),
            ],
            args=["worker:input", json.dumps({"taskId": started["taskId"], "input": "lost"})],
        )
        await client.wait_for_event("task:stream", lambda d: d["data"] == "echo 1: lost")
        await client.ok("worker:input", {"taskId": started["taskId"], "input": "pushed"})
        await client.wait_for_event("task:result")
        lines = stream_lines(client.session_events(started["sessionId"]))
        assert [text for _, text in lines if text.startswith("echo")] == [
            "echo 1: lost",
            "echo 2: pushed",
        ]
        assert await redis.xlen(keys.agent_outbox(running.agent_id, partitions)) == 0
    finally:
        await client.close()
        await redis.aclose()


async def test_an_input_sent_again_with_the_same_id_reaches_the_worker_once(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started = await start_echo_worker(client, running, tmp_path)
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        task_id = started["taskId"]
        first = {"id": "typed-1", "taskId": task_id, "input": "once"}
        assert (await client.ok("worker:input", first))["accepted"]
        assert (await client.ok("worker:input", first))["accepted"]  # the answer was lost
        await client.ok("worker:input", {"id": "typed-2", "taskId": task_id, "input": "twice"})
        await client.wait_for_event("task:result")
        lines = stream_lines(client.session_events(started["sessionId"]))
        assert [text for _, text in lines if text.startswith("echo")] == [
            "echo 1: once",
            "echo 2: twice",
        ]
    finally:
        await client.close()


async def test_a_start_sent_again_with_the_same_task_id_starts_one_worker(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        start = {"taskId": "my-task-1", "agentId": running.agent_id, "tool": "custom",
                 "command": printer(3, 0.01), "workingDirectory": str(tmp_path)}  # fmt: skip
        first = await client.ok("worker:start", start)
        again = await client.ok("worker:start", start)  # the first answer was lost
        assert (again["taskId"], again["sessionId"]) == (first["taskId"], first["sessionId"])
        await client.ok("session:join", {"sessionId": first["sessionId"]})
        await client.wait_for_event("task:result")
        lines = stream_lines(client.session_events(first["sessionId"]))
        assert [text for _, text in lines] == ["line 1", "line 2", "line 3"]
        status, body = await asyncio.to_thread(
            http, "GET", f"{running.gateway.url}/api/sessions/{first['sessionId']}", None,
            running.token,
        )  # fmt: skip
        assert status == 200, body
        assert [t["id"] for t in body["session"]["tasks"]] == ["my-task-1"]
    finally:
        await client.close()
