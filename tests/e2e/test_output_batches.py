"""Output in batches (PROTOCOL.md §5, 1.1): an agent sends many `task:stream` /
`worker:output` items in one frame (`items`), stored whole or from the first unstored seq
on, never with a hole, and fed to watchers as the single events they always were.

First from a hand-written agent socket against a real gateway, then with the real daemon
and a worker that prints fast.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import socketio

from orchestra.codec import parse_event_id
from tests.e2e.test_handshake import Gate, agent_auth, attempt, call, offline, rest
from tests.e2e.test_handshake import gate as gate  # the fixture: a gateway, alice, her agent
from tests.support.processes import wait_for
from tests.support.running import Running
from tests.support.web import WebClient

# The SQL backend plays no part here.
pytestmark = pytest.mark.sqlite_only

STAMP = "2026-01-01T00:00:00.000Z"


async def _agent(gate: Gate, received: list[dict[str, Any]] | None = None) -> socketio.AsyncClient:
    """A hand-written agent, registered; each `task:assign` acknowledged and recorded."""
    connected = await attempt(gate.url, "/agent", agent_auth(gate.agent_id, gate.secret))
    assert connected.connected, connected.error
    assigned = received if received is not None else []

    async def on_assign(data: dict[str, Any]) -> dict[str, Any]:
        assigned.append(data)
        return {"commandId": data["commandId"]}

    connected.sio.on("task:assign", on_assign, namespace="/agent")
    registration = {"agentId": gate.agent_id, "name": "bench", "capabilities": ["custom"],
                    "agentVersion": "0"}  # fmt: skip
    answer = await call(connected.sio, "/agent", "agent:register", registration)
    assert answer["success"], answer
    return connected.sio


@dataclass
class Assigned:
    """A web watcher of a new session, and a hand-written agent holding its task."""

    gate: Gate
    web: WebClient
    agent: socketio.AsyncClient
    assigned: list[dict[str, Any]]
    session_id: str
    task_id: str

    @property
    def ids(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "agentId": self.gate.agent_id, "attempt": 1}

    async def send(self, event: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await call(self.agent, "/agent", event, self.ids | body)
        return answer

    async def stored(self) -> list[dict[str, Any]]:
        """The session's history over REST: what the gateway stored, in order."""
        status, body = await rest(
            "GET", f"{self.gate.url}/api/sessions/{self.session_id}/events", token=self.gate.token
        )
        assert status == 200, body
        events: list[dict[str, Any]] = body["events"]
        return events

    async def task(self) -> dict[str, Any]:
        status, body = await rest("GET", f"{self.gate.url}/api/tasks/{self.task_id}",
                                  token=self.gate.token)  # fmt: skip
        assert status == 200, body
        task: dict[str, Any] = body["task"]
        return task

    def lines(self) -> list[tuple[int, str]]:
        """(seq, data) of every `task:stream` the watcher got."""
        return [(d["seq"], d["data"]) for n, d in self.web.events if n == "task:stream"]


@pytest_asyncio.fixture
async def assigned(gate: Gate) -> AsyncIterator[Assigned]:
    web = WebClient()
    await web.connect(gate.url, gate.token)
    received: list[dict[str, Any]] = []
    agent = await _agent(gate, received)
    try:
        started = await web.ok(
            "worker:start", {"agentId": gate.agent_id, "tool": "custom", "command": "true"}
        )
        await web.ok("session:join", {"sessionId": started["sessionId"]})
        await wait_for(lambda: received, what="the assignment")
        assert received[0]["attempt"] == 1
        yield Assigned(gate, web, agent, received, started["sessionId"], started["taskId"])
    finally:
        await web.close()
        if agent.connected:
            await agent.disconnect()


def lines(first: int, last: int, text: str = "line") -> list[dict[str, Any]]:
    return [{"type": "stdout", "data": f"{text} {n}", "timestamp": STAMP}
            for n in range(first, last + 1)]  # fmt: skip


def stream_events(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["data"]["seq"], e["data"]["data"]) for e in events if e["event"] == "task:stream"]


# -- a hand-written agent -----------------------------------------------------------------


async def test_a_batch_is_stored_whole_and_watchers_get_single_events_in_order(
    assigned: Assigned,
) -> None:
    items = lines(1, 10)
    items[3]["type"] = "stderr"
    answer = await assigned.send("task:stream", {"seq": 1, "items": items})
    assert answer["data"] == {"persistedSeq": 10}, answer
    output = [
        {"type": "assistant", "content": "hello", "details": {"messageId": "m1"}},
        {"type": "tool", "content": "", "details": {"toolUseId": "t1", "name": "Bash"},
         "timestamp": STAMP},
    ]  # fmt: skip
    answer = await assigned.send("worker:output", {"seq": 11, "items": output})
    assert answer["data"] == {"persistedSeq": 12}, answer

    await assigned.web.wait_for_event("worker:output", lambda d: d["seq"] == 12)
    events = assigned.web.session_events(assigned.session_id)
    outputs = [(n, d) for n, d in events if n in ("task:stream", "worker:output")]
    assert [d["seq"] for _, d in outputs] == list(range(1, 13))
    assert [(d["type"], d["data"]) for n, d in outputs if n == "task:stream"] == [
        ("stderr" if n == 4 else "stdout", f"line {n}") for n in range(1, 11)
    ]
    first = outputs[0][1]
    assert first["timestamp"] == STAMP and first["taskId"] == assigned.task_id
    assert first["agentId"] == assigned.gate.agent_id
    assert first["sessionId"] == assigned.session_id
    assistant, tool = outputs[10][1], outputs[11][1]
    assert (assistant["type"], assistant["content"]) == ("assistant", "hello")
    assert assistant["details"] == {"messageId": "m1"} and assistant["timestamp"]
    assert tool["details"]["name"] == "Bash" and tool["timestamp"] == STAMP
    # Each item is its own stream entry: its own eventId, strictly increasing.
    ids = [parse_event_id(d["eventId"]) for _, d in outputs]
    assert ids == sorted(set(ids))
    assert stream_events(await assigned.stored()) == [(n, f"line {n}") for n in range(1, 11)]
    assert (await assigned.task())["lastSeq"] == 12


async def test_a_batch_overlapping_what_is_stored_stores_the_rest_once(
    assigned: Assigned,
) -> None:
    assert (await assigned.send("task:stream", {"seq": 1, "items": lines(1, 10)}))["data"] == {
        "persistedSeq": 10
    }
    again = lines(5, 15, "again")
    answer = await assigned.send("task:stream", {"seq": 5, "items": again})
    assert answer["data"] == {"persistedSeq": 15}, answer
    # Everything already stored: nothing new, the same answer.
    answer = await assigned.send("task:stream", {"seq": 1, "items": lines(1, 15, "third")})
    assert answer["data"] == {"persistedSeq": 15}, answer
    expected = [(n, f"line {n}") for n in range(1, 11)] + [(n, f"again {n}") for n in range(11, 16)]
    assert stream_events(await assigned.stored()) == expected
    await assigned.web.wait_for_event("task:stream", lambda d: d["seq"] == 15)
    await asyncio.sleep(0.3)  # nothing more comes
    assert assigned.lines() == expected


async def test_a_batch_past_a_gap_stores_nothing_and_acks_the_old_persisted_seq(
    assigned: Assigned,
) -> None:
    assert (await assigned.send("task:stream", {"seq": 1, "items": lines(1, 3)}))["data"] == {
        "persistedSeq": 3
    }
    answer = await assigned.send("task:stream", {"seq": 5, "items": lines(5, 9)})
    assert answer["data"] == {"persistedSeq": 3}, answer
    one = await assigned.send("task:stream", {"seq": 4, "type": "stdout", "data": "line 4",
                                              "timestamp": STAMP})  # fmt: skip
    assert one["data"] == {"persistedSeq": 4}, one
    assert stream_events(await assigned.stored()) == [(n, f"line {n}") for n in range(1, 5)]
    # Sent again from persistedSeq + 1, as the agent does, the rest is taken.
    answer = await assigned.send("task:stream", {"seq": 5, "items": lines(5, 9)})
    assert answer["data"] == {"persistedSeq": 9}, answer
    assert stream_events(await assigned.stored()) == [(n, f"line {n}") for n in range(1, 10)]


async def test_a_bad_item_refuses_the_whole_frame_and_names_the_item(assigned: Assigned) -> None:
    cases: list[tuple[str, int, Any]] = [
        ("task:stream", 2, {"type": "stdin", "data": "x", "timestamp": STAMP}),
        ("task:stream", 0, {"type": "stdout", "data": 5, "timestamp": STAMP}),
        ("task:stream", 3, {"type": "stdout"}),
        ("task:stream", 1, "not an object"),
        ("worker:output", 1, {"type": "assistant"}),
        ("worker:output", 2, {"type": "tool", "content": "", "details": "not an object"}),
    ]
    for event, index, bad in cases:
        good = (
            lines(1, 4) if event == "task:stream" else [{"type": "assistant", "content": "a"}] * 4
        )
        items: list[Any] = list(good)
        items[index] = bad
        answer = await assigned.send(event, {"seq": 1, "items": items})
        assert answer["success"] is False, (event, bad, answer)
        error = answer["error"]
        assert error["code"] == "PARAM_001", (event, bad, answer)
        assert f"item {index}" in error["message"] and error["details"]["item"] == index, answer
    for event, body in [
        ("task:stream", {"seq": 1, "items": []}),
        ("task:stream", {"seq": 0, "items": lines(1, 2)}),
        ("worker:output", {"seq": 1, "items": "many"}),
    ]:
        answer = await assigned.send(event, body)
        assert answer["error"]["code"] == "PARAM_001", (body, answer)
    assert stream_events(await assigned.stored()) == []
    assert (await assigned.task())["lastSeq"] == 0
    # The connection still serves, and the first good frame is seq 1.
    answer = await assigned.send("task:stream", {"seq": 1, "items": lines(1, 2)})
    assert answer["data"] == {"persistedSeq": 2}, answer


async def test_batches_over_512_items_or_512_kib_are_refused(assigned: Assigned) -> None:
    """513 items: PARAM_001 (a shape rule, like any list's limit); over 512 KiB of JSON
    (under the 1 MiB event limit): RES_001, payload too large. Nothing is stored."""
    answer = await assigned.send("task:stream", {"seq": 1, "items": lines(1, 513)})
    assert answer["error"]["code"] == "PARAM_001", answer
    assert "512" in answer["error"]["message"]
    big = [{"type": "stdout", "data": "x" * 6000, "timestamp": STAMP} for _ in range(100)]
    answer = await assigned.send("task:stream", {"seq": 1, "items": big})
    assert answer["error"]["code"] == "RES_001", answer
    assert stream_events(await assigned.stored()) == []
    # Just within both limits: taken.
    answer = await assigned.send("task:stream", {"seq": 1, "items": lines(1, 512)})
    assert answer["data"] == {"persistedSeq": 512}, answer
    fits = [{"type": "stdout", "data": "x" * 6000, "timestamp": STAMP} for _ in range(80)]
    answer = await assigned.send("task:stream", {"seq": 513, "items": fits})
    assert answer["data"] == {"persistedSeq": 592}, answer


async def test_another_agents_task_is_auth_002(assigned: Assigned) -> None:
    gate = assigned.gate
    status, other = await rest("POST", gate.url + "/api/agents", {"name": "other"}, gate.token)
    assert status == 201, other
    connected = await attempt(
        gate.url, "/agent", agent_auth(other["agentId"], other["agentSecret"])
    )
    assert connected.connected, connected.error
    try:
        body = {"taskId": assigned.task_id, "agentId": other["agentId"], "seq": 1,
                "items": lines(1, 3)}  # fmt: skip
        answer = await call(connected.sio, "/agent", "task:stream", body)
        assert answer["error"]["code"] == "AUTH_002", answer
        # Speaking for the task's agent instead: refused as well.
        answer = await call(connected.sio, "/agent", "task:stream",
                            body | {"agentId": gate.agent_id})  # fmt: skip
        assert answer["error"]["code"] == "AUTH_002", answer
    finally:
        await connected.sio.disconnect()
    assert stream_events(await assigned.stored()) == []


async def test_usage_is_summed_once_per_stored_result_and_the_last_session_id_kept(
    assigned: Assigned,
) -> None:
    def result(tokens: int) -> dict[str, Any]:
        return {"type": "result", "content": "done", "stats": {"durationMs": 5},
                "usage": {"inputTokens": tokens, "outputTokens": 1, "costUsd": 0.25}}  # fmt: skip

    def system(session: str) -> dict[str, Any]:
        return {"type": "system", "content": "", "details": {"workerSessionId": session}}

    first = [system("s-1"), result(10), {"type": "assistant", "content": "hi"}, result(20)]
    answer = await assigned.send("worker:output", {"seq": 1, "items": first})
    assert answer["data"] == {"persistedSeq": 4}, answer
    # Overlapping: items 3 and 4 were stored (their usage counted once), 5 and 6 are new.
    second = [{"type": "assistant", "content": "hi"}, result(20), system("s-2"), result(100)]
    answer = await assigned.send("worker:output", {"seq": 3, "items": second})
    assert answer["data"] == {"persistedSeq": 6}, answer
    task = await assigned.task()
    assert task["usage"] == {"inputTokens": 130, "outputTokens": 3, "costUsd": 0.75}, task
    assert task["workerSessionId"] == "s-2"


@pytest.mark.orchestra_env(ORCHESTRA_AGENT_GRACE_PERIOD_S="1")
async def test_a_batch_of_an_earlier_attempt_is_stale_and_stores_nothing(
    assigned: Assigned,
) -> None:
    gate = assigned.gate
    answer = await assigned.send("task:stream", {"seq": 1, "items": lines(1, 2)})
    assert answer["data"] == {"persistedSeq": 2}
    # The agent goes away past its grace period: the task comes back to it as attempt 2.
    await assigned.agent.disconnect()
    await offline(gate)
    await assigned.web.wait_for_event(
        "worker:status", lambda d: d["status"] == "queued" and "again" in d.get("message", "")
    )
    again: list[dict[str, Any]] = []
    second = await _agent(gate, again)
    assigned.agent = second

    async def beating_and_assigned() -> bool:
        await call(second, "/agent", "agent:heartbeat", {"agentId": gate.agent_id})
        return bool(again)

    await wait_for(beating_and_assigned, what="the second assignment", interval_s=0.5)
    assert again[-1]["attempt"] == 2
    stale = await assigned.send("task:stream", {"seq": 3, "items": lines(3, 6, "late")})
    assert stale["data"] == {"stale": True, "persistedSeq": 2}, stale
    stale = await assigned.send("worker:output", {"seq": 1, "items": [
        {"type": "result", "content": "x", "usage": {"inputTokens": 5}}] * 3})  # fmt: skip
    assert stale["data"] == {"stale": True, "persistedSeq": 2}, stale
    fresh = await call(second, "/agent", "task:stream", assigned.ids | {
        "attempt": 2, "seq": 1, "items": lines(1, 2, "second")})  # fmt: skip
    assert fresh["data"] == {"persistedSeq": 2}, fresh
    assert stream_events(await assigned.stored()) == [
        (1, "line 1"),
        (2, "line 2"),
        (3, "second 1"),
        (4, "second 2"),
    ]
    assert not (await assigned.task()).get("usage")


# -- the real daemon ----------------------------------------------------------------------

FAST_LINES = 5000
FAST_WORKER = (
    "import sys\n"
    f"for n in range(1, {FAST_LINES + 1}):\n"
    "    sys.stdout.write(f'fast line {n} ' + 'x' * 60 + '\\n')\n"
    "    sys.stdout.flush()\n"
)
FRAME_LOG = re.compile(r"task:stream frame of (\d+) item\(s\), seq \d+, task (\S+):")


@pytest.mark.orchestra_env(ORCHESTRA_LOG_LEVEL="DEBUG")
async def test_a_fast_worker_is_delivered_once_each_in_order_in_far_fewer_frames(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started = await client.ok(
            "worker:start",
            {
                "agentId": running.agent_id,
                "tool": "custom",
                "command": [sys.executable, "-c", FAST_WORKER],
                "workingDirectory": str(tmp_path),
            },
        )
        task_id = started["taskId"]
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:result", lambda d: d["taskId"] == task_id, 120)
        lines = [d for n, d in client.events if n == "task:stream" and d["taskId"] == task_id]
        assert [d["seq"] for d in lines] == list(range(1, FAST_LINES + 1))
        assert [d["data"].split()[2] for d in lines] == [str(n) for n in range(1, FAST_LINES + 1)]
    finally:
        await client.close()
    # The gateway logs each output frame it stored at DEBUG, with its item count.
    frames = [int(m[1]) for m in FRAME_LOG.finditer(running.gateway.log()) if m[2] == task_id]
    assert sum(frames) >= FAST_LINES, "every line arrived in some frame"
    assert len(frames) <= FAST_LINES // 10, f"{len(frames)} frames for {FAST_LINES} lines"
    assert max(frames) > 1
