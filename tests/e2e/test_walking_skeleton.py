"""The walking skeleton, end to end: web client -> gateway -> agent -> worker -> web client.

Real Redis, real SQL (SQLite and PostgreSQL), the gateway and the agent daemon each in its
own process started through the `orchestra` command, python-socketio's AsyncClient.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchestra.codec import parse_event_id
from tests.support.running import Running
from tests.support.web import WebClient

WORKER = Path(__file__).with_name("echo_worker.py")

EXPECTED_LINES = [
    ("stdout", "worker: started"),
    ("stdout", "worker: waiting for 2 lines"),
    ("stdout", "echo 1: first input"),
    ("stdout", "echo 2: second input"),
    ("stderr", "worker: done"),
    ("stdout", "worker: bye"),
]


def stream_lines(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(d["type"], d["data"]) for name, d in events if name == "task:stream"]


async def start_echo_worker(client: WebClient, running: Running, tmp_path: Path) -> dict[str, Any]:
    return await client.ok(
        "worker:start",
        {
            "agentId": running.agent_id,
            "tool": "custom",
            "command": [sys.executable, str(WORKER)],
            "workingDirectory": str(tmp_path),
        },
    )


async def test_output_reaches_the_watcher_in_order_and_resumes_after_reconnect(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    started = await start_echo_worker(client, running, tmp_path)
    session_id, task_id = started["sessionId"], started["taskId"]
    assert started["agentId"] == running.agent_id

    joined = await client.ok("session:join", {"sessionId": session_id})
    assert joined["session"]["id"] == session_id
    epoch = joined["epoch"]

    await client.wait_for_event("task:stream", lambda d: d["data"] == "worker: waiting for 2 lines")
    assert (await client.ok("worker:input", {"taskId": task_id, "input": "first input"}))[
        "accepted"
    ]
    assert (await client.ok("worker:input", {"taskId": task_id, "input": "second input"}))[
        "accepted"
    ]
    result = await client.wait_for_event("task:result")

    events = client.session_events(session_id)
    # Every output line, in order, with gap-free seq from 1.
    lines = [d for name, d in events if name == "task:stream"]
    # stdout and stderr are two pipes: each keeps its order, their interleaving is free.
    for pipe in ("stdout", "stderr"):
        assert [d["data"] for d in lines if d["type"] == pipe] == [
            text for kind, text in EXPECTED_LINES if kind == pipe
        ]
    assert len(lines) == len(EXPECTED_LINES)
    assert [d["seq"] for d in lines] == list(range(1, len(EXPECTED_LINES) + 1))
    assert all(d["taskId"] == task_id and d["agentId"] == running.agent_id for d in lines)
    # Every session event carries an eventId, strictly increasing.
    ids = [parse_event_id(d["eventId"]) for _, d in events]
    assert ids == sorted(set(ids)), "eventIds must strictly increase, each once"
    # The worker completed, then the result came, with exit code 0.
    statuses = [d["status"] for name, d in events if name == "worker:status"]
    assert statuses[-1] == "completed"
    assert "running" in statuses
    names = [name for name, _ in events]
    assert names.index("task:result") > max(i for i, n in enumerate(names) if n == "task:stream")
    assert result["success"] is True
    assert result["result"]["exitCode"] == 0
    assert result["duration"] >= 0

    # Gone, back, and resumed from the middle: exactly the events after it, once each.
    await client.close()
    middle = len(events) // 2
    last_seen = events[middle][1]["eventId"]
    expected_after = [(name, d["eventId"]) for name, d in events[middle + 1 :]]

    again = await running.client()
    rejoined = await again.ok(
        "session:join", {"sessionId": session_id, "lastEventId": last_seen, "epoch": epoch}
    )
    assert rejoined["lastEventId"] == events[-1][1]["eventId"]
    await again.wait_for_event("task:result")
    await again.ok("agents:list", {})  # a round trip: anything doubled would be here by now
    replayed = [(name, d["eventId"]) for name, d in again.session_events(session_id)]
    assert replayed == expected_after
    assert stream_lines(again.session_events(session_id)) == stream_lines(events[middle + 1 :])

    # The history stays available over REST too.
    task = await again.ok("user:sync", {})
    assert any(s["id"] == session_id for s in task["sessions"])
    await again.close()


async def test_bad_requests_get_their_codes_and_the_connection_stays_usable(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        malformed = await client.call("worker:start", {"tool": 5, "agentId": ["x"]})
        assert malformed["success"] is False
        assert malformed["error"]["code"] == "PARAM_001"
        assert malformed["requestId"]

        not_an_object = await client.call("worker:start", "hello")
        assert not_an_object["error"]["code"] == "PARAM_001"

        unknown_event = await client.call("task:result", {"taskId": "x"})
        assert unknown_event["error"]["code"] == "PARAM_001"

        unknown_agent = await client.call(
            "worker:start", {"agentId": "no-such-agent", "tool": "custom", "command": "true"}
        )
        assert unknown_agent["error"]["code"] == "AGENT_001"

        # Not an admin: an unknown id answers like someone else's (PROTOCOL.md §7).
        unknown_session = await client.call("session:join", {"sessionId": "nope"})
        assert unknown_session["error"]["code"] == "AUTH_002"

        too_big = await client.call(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom", "command": "x" * (1024 * 1024 + 10)},
        )
        assert too_big["error"]["code"] == "RES_001"

        # Without an ack to answer, the error arrives as an `error` event.
        await client.sio.emit("worker:start", {"tool": 5}, namespace="/web")
        error = await client.wait_for_event("error")
        assert error["code"] == "PARAM_001"

        # Still connected and serving: a real request works.
        agents = await client.ok("agents:list", {})
        assert [a["id"] for a in agents["agents"]] == [running.agent_id]
        started = await start_echo_worker(client, running, tmp_path)
        assert started["taskId"]
    finally:
        await client.close()


async def test_a_user_cannot_see_or_drive_another_users_session(
    running: Running, tmp_path: Path
) -> None:
    await running.deployment.create_user("mallory", "mallory's password")
    from tests.support.web import login

    mallory_token = await login(running.gateway.url, "mallory", "mallory's password")
    alice = await running.client()
    mallory = WebClient()
    await mallory.connect(running.gateway.url, mallory_token)
    try:
        started = await start_echo_worker(alice, running, tmp_path)
        for event, payload in [
            ("session:join", {"sessionId": started["sessionId"]}),
            ("worker:input", {"taskId": started["taskId"], "input": "hi"}),
            ("worker:stop", {"taskId": started["taskId"]}),
            ("worker:start", {"agentId": running.agent_id, "tool": "custom", "command": "true"}),
        ]:
            answer = await mallory.call(event, payload)
            assert answer["error"]["code"] == "AUTH_002", (event, answer)
        assert (await mallory.ok("agents:list", {}))["agents"] == []
        await alice.ok("worker:stop", {"taskId": started["taskId"], "mode": "kill"})
        await alice.ok("session:join", {"sessionId": started["sessionId"]})
        status = await alice.wait_for_event("worker:status", lambda d: d["status"] == "cancelled")
        assert status["taskId"] == started["taskId"]
    finally:
        await alice.close()
        await mallory.close()


async def test_stop_ends_a_running_worker(running: Running, tmp_path: Path) -> None:
    client = await running.client()
    try:
        started = await client.ok(
            "worker:start",
            {
                "agentId": running.agent_id,
                "tool": "custom",
                "command": "echo sleeping; exec sleep 600",
                "workingDirectory": str(tmp_path),
            },
        )
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:stream", lambda d: d["data"] == "sleeping")
        await client.ok("worker:stop", {"taskId": started["taskId"], "mode": "interrupt"})
        result = await client.wait_for_event("task:result")
        assert result["success"] is False
        statuses = [
            d["status"]
            for n, d in client.session_events(started["sessionId"])
            if n == "worker:status"
        ]
        assert statuses[-1] == "cancelled"
    finally:
        await client.close()
