"""Reading a session's history backwards (`GET /api/sessions/{id}/events?before=`, our
extension, docs/protocol.md): the page just before an eventId, through the SQL archive and
the Redis stream as one, every event once and reading as it does forward, while trims
move events from one to the other. Real gateway, agent and worker processes, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestra import keys, redis_client
from orchestra.codec import parse_event_id
from tests.e2e.test_rest import api, log_in, ok
from tests.support.processes import Deployment, wait_for
from tests.support.running import Running

CAP = 40
LINES = 1200


@pytest.fixture
def deployment(deployment: Deployment) -> Deployment:
    """The e2e deployment with a small cap, trimmed often."""
    deployment.extra_env.update(
        ORCHESTRA_SESSION_STREAM_MAX_EVENTS=str(CAP), ORCHESTRA_STREAM_TRIM_INTERVAL_S="0.3"
    )
    return deployment


def _bursts(lines: int) -> list[str]:
    """Prints `line 1` .. `line N` in bursts of 20 a few ms apart: many events share a
    millisecond (ids `<ms>-0`, `<ms>-1`, ...), and the run lasts a few seconds."""
    program = (
        "import sys, time\n"
        f"for n in range(1, {lines} + 1):\n"
        "    sys.stdout.write(f'line {n}\\n')\n"
        "    if n % 20 == 0:\n"
        "        sys.stdout.flush()\n"
        "        time.sleep(0.05)\n"
    )
    return [sys.executable, "-c", program]


async def forward(url: str, token: str, sid: str) -> list[dict[str, Any]]:
    """The whole history, read forward with `after`."""
    events: list[dict[str, Any]] = []
    after = ""
    while True:
        page = await ok(
            "GET", f"{url}/api/sessions/{sid}/events?limit=1000&after={after}", None, token
        )
        events += page["events"]
        if len(page["events"]) < 1000:
            return events
        after = page["lastEventId"]


async def before(url: str, token: str, sid: str, cursor: str, limit: int) -> Any:
    return await ok(
        "GET", f"{url}/api/sessions/{sid}/events?before={cursor}&limit={limit}", None, token
    )


async def backward(url: str, token: str, sid: str, cursor: str, limit: int) -> list[Any]:
    """Every page before `cursor`, newest page first, each checked for its own shape."""
    pages = []
    while True:
        page = await before(url, token, sid, cursor, limit)
        assert set(page) == {"events", "firstEventId", "hasMore"}
        assert len(page["events"]) <= limit
        assert page["firstEventId"] == (page["events"][0]["eventId"] if page["events"] else cursor)
        pages.append(page)
        if not page["hasMore"]:
            return pages
        assert len(page["events"]) == limit, "a short page says there is nothing earlier"
        cursor = page["firstEventId"]


def after_id(event_id: str) -> str:
    """An eventId just past `event_id` (no event has it): `before` it includes that event."""
    ms, seq = event_id.split("-")
    return f"{ms}-{int(seq) + 1}"


async def test_paging_backwards_reads_the_forward_history_reversed(
    running: Running, tmp_path: Path
) -> None:
    url, token = running.gateway.url, running.token
    redis = redis_client.connect(running.deployment.redis_url)
    try:
        sid = (await ok("POST", url + "/api/sessions", {"title": "long"}, token))["session"]["id"]
        started = await ok(
            "POST",
            url + "/api/tasks",
            {
                "sessionId": sid,
                "agentId": running.agent_id,
                "tool": "custom",
                "command": _bursts(LINES),
                "workingDirectory": str(tmp_path),
            },
            token,
        )
        task_id = started["taskId"]

        # While the worker prints and trims move its events to the archive: each backward
        # read from a point already written gives what the final history has before it.
        snapshots: list[tuple[str, list[str]]] = []

        async def read_backwards_while_it_runs() -> bool:
            newest = await before(url, token, sid, f"{2**63 - 1}-0", 1)
            if newest["events"]:
                cursor = newest["events"][0]["eventId"]
                pages = await backward(url, token, sid, cursor, 97)
                ids = [e["eventId"] for page in reversed(pages) for e in page["events"]]
                snapshots.append((cursor, ids))
            task = await ok("GET", f"{url}/api/tasks/{task_id}", None, token)
            return task["task"]["status"] in ("completed", "error")

        await wait_for(read_backwards_while_it_runs, what="the worker done", timeout_s=180)
        stream = keys.session_events(sid, running.deployment.partitions)

        async def settled() -> bool:
            if int(await redis.xlen(stream)) > CAP:
                return False
            names = [(e["event"], e["data"].get("status")) for e in await forward(url, token, sid)]
            return ("task:result", None) in names and ("worker:status", "completed") in names

        await wait_for(settled, what="the task's end in the history, the stream trimmed")
        session_key = keys.session(sid, running.deployment.partitions)
        trimmed_to = json.loads(await redis.hget(session_key, "trimmedTo") or "null")
        kept = [entry_id for entry_id, _ in await redis.xrange(stream)]

        events = await forward(url, token, sid)
        ids = [e["eventId"] for e in events]
        lines = [e["data"]["data"] for e in events if e["event"] == "task:stream"]
        assert lines == [f"line {n}" for n in range(1, LINES + 1)]
        assert ids[-len(kept) :] == kept and trimmed_to == ids[-len(kept) - 1]
        assert len({i.split("-")[0] for i in ids}) < len(ids), "some ids share a millisecond"
        assert len(snapshots) >= 2
        for cursor, seen in snapshots:
            assert seen == ids[: ids.index(cursor)], f"backwards from {cursor}"

        # From past the newest, in pages of many sizes: the forward history, reversed page
        # by page, and each event exactly as the forward read gives it.
        for limit in (11, CAP, 333, 1000):
            pages = await backward(url, token, sid, after_id(ids[-1]), limit)
            assert [e for page in reversed(pages) for e in page["events"]] == events
            assert len(pages) == max(1, -(-len(events) // limit))
            assert all(len(page["events"]) == limit for page in pages[:-1])
        assert len(pages) == 2  # 1,2xx events in pages of 1,000

        # Around the seam between the archive and the stream, and at the ends.
        for cursor in (ids[-1], kept[0], kept[1], trimmed_to, ids[-len(kept) - 2], ids[1]):
            at = ids.index(cursor)
            for limit in (1, 25):
                page = await before(url, token, sid, cursor, limit)
                assert page["events"] == events[max(0, at - limit) : at], f"before {cursor}"
                assert page["hasMore"] == (at > limit)
        first = await before(url, token, sid, ids[0], 25)
        assert first == {"events": [], "firstEventId": ids[0], "hasMore": False}
        # An id no event has (between two events of the stream, or of the archive): the
        # events before it; a bare "<ms>" is "<ms>-0", as `after` takes it.
        for at in (len(ids) - 3, 10):
            page = await before(url, token, sid, after_id(ids[at]), 5)
            assert page["events"] == events[at - 4 : at + 1]
        ms = parse_event_id(ids[len(ids) // 2])[0]
        older = [e for e in events if parse_event_id(e["eventId"]) < (ms, 0)]
        assert (await before(url, token, sid, str(ms), 5))["events"] == older[-5:]
    finally:
        await redis.aclose()


async def test_bad_before_ids_and_others_sessions_are_refused(running: Running) -> None:
    url, token = running.gateway.url, running.token
    sid = (await ok("POST", url + "/api/sessions", {"title": "t"}, token))["session"]["id"]
    path = f"{url}/api/sessions/{sid}/events"
    history = await ok("GET", path, None, token)
    for query in (
        "before=abc",
        "before=1-2-3",
        "before=-1",
        "before=1-x",
        "before=%201-0",
        f"before={2**64}-0",
        "before=1-0&after=0-1",
        "before=1-0&limit=many",
    ):
        refused = (await api("GET", f"{path}?{query}", token=token)).refused(400, "PARAM_001")
        assert "before" in refused["message"] or "limit" in refused["message"], refused
    assert await ok("GET", path, None, token) == history  # nothing changed

    await running.deployment.create_user("bob", "bob's password")
    bob = (await log_in(url, "bob", "bob's password"))["accessToken"]
    (await api("GET", f"{path}?before=1-0", token=bob)).refused(403, "AUTH_002")
    (await api("GET", f"{path}?before=abc", token=bob)).refused(403, "AUTH_002")
    (await api("GET", f"{path}?before=1-0")).refused(401, "AUTH_001")
    # An empty `before` is no `before`: the forward read, its answer as in 1.0.
    assert await ok("GET", f"{path}?before=", None, token) == history
    assert set(history) == {"events", "lastEventId"}
