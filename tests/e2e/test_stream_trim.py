"""A session's event stream is capped, and nothing is lost (issue 4): the oldest events are
archived to SQL before they leave Redis, the REST history reads archive then stream as
one, and a client that rejoins from a trimmed event resyncs instead of getting a partial
replay. Real gateway, agent and worker processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from orchestra import keys, redis_client
from orchestra.codec import parse_event_id
from tests.e2e.test_rest import ok
from tests.support.processes import Deployment, wait_for
from tests.support.running import Running
from tests.support.web import WebClient
from tests.support.workers import printer

CAP = 50
LINES = 300
ENVELOPE = {"id", "timestamp", "source", "version"}


@pytest.fixture
def deployment(deployment: Deployment) -> Deployment:
    """The e2e deployment with a small cap, trimmed often."""
    deployment.extra_env.update(
        ORCHESTRA_SESSION_STREAM_MAX_EVENTS=str(CAP), ORCHESTRA_STREAM_TRIM_INTERVAL_S="0.5"
    )
    return deployment


async def history(url: str, token: str, sid: str, *, after: str = "", limit: int = 1000) -> Any:
    return await ok(
        "GET", f"{url}/api/sessions/{sid}/events?limit={limit}&after={after}", None, token
    )


async def test_a_capped_stream_keeps_the_whole_history(running: Running, tmp_path: Path) -> None:
    url, token = running.gateway.url, running.token
    redis = redis_client.connect(running.deployment.redis_url)
    watcher = await running.client()  # watches live from the start, while trims happen
    framed = await running.client(batch=True)  # the same, in `session:events` frames
    clients: list[WebClient] = [watcher, framed]
    try:
        sid = (await ok("POST", url + "/api/sessions", {"title": "long"}, token))["session"]["id"]
        stream = keys.session_events(sid, running.deployment.partitions)
        await watcher.ok("session:join", {"sessionId": sid})
        await framed.ok("session:join", {"sessionId": sid})
        await watcher.ok(
            "worker:start",
            {
                "sessionId": sid,
                "agentId": running.agent_id,
                "tool": "custom",
                "command": printer(LINES, interval_s=0.005),
                "workingDirectory": str(tmp_path),
            },
        )

        async def settled() -> bool:
            names = [(n, d.get("status")) for n, d in watcher.session_events(sid)]
            if ("task:result", None) not in names or ("worker:status", "completed") not in names:
                return False
            if int(await redis.xlen(stream)) > CAP:
                return False
            everything = (await history(url, token, sid))["events"]
            return (
                len(everything)
                == len(watcher.session_events(sid))
                == len(framed.session_events(sid))
            )

        await wait_for(settled, what="the task done, its stream trimmed, its history complete")

        # The watcher got every event once, in order, although the stream was trimmed
        # under it; the history holds the same events, mostly from the archive.
        seen = watcher.session_events(sid)
        events = (await history(url, token, sid))["events"]
        ids = [e["eventId"] for e in events]
        assert [d["eventId"] for _, d in seen] == ids
        assert [d["eventId"] for _, d in framed.session_events(sid)] == ids
        assert framed.frames and not watcher.frames
        assert [parse_event_id(i) for i in ids] == sorted({parse_event_id(i) for i in ids})
        assert len(ids) > LINES > CAP  # session:updated and statuses besides the lines
        lines = [e["data"] for e in events if e["event"] == "task:stream"]
        assert [(d["seq"], d["data"]) for d in lines] == [(n, f"line {n}") for n in range(1, 301)]
        for (name, live), archived in zip(seen, events, strict=True):
            # Archive or stream, an event reads as it did live, bar the socket's envelope.
            assert archived["event"] == name
            assert {k: live[k] for k in archived["data"]} == archived["data"]
            assert set(live) - set(archived["data"]) <= ENVELOPE
        kept = [entry_id for entry_id, _ in await redis.xrange(stream)]
        assert len(kept) == CAP and kept == ids[-CAP:]
        session_key = keys.session(sid, running.deployment.partitions)
        trimmed_to = json.loads(await redis.hget(session_key, "trimmedTo") or "null")
        assert trimmed_to == ids[-CAP - 1], "trimmedTo is the last event removed"

        # Paging with `after` crosses from the archive into the stream without a seam.
        paged: list[str] = []
        after = ""
        while True:
            page = await history(url, token, sid, after=after, limit=7)
            if not page["events"]:
                break
            paged += [e["eventId"] for e in page["events"]]
            after = page["lastEventId"]
        assert paged == ids
        for at in (ids[0], ids[-CAP - 2], trimmed_to, ids[-CAP]):
            rest = (await history(url, token, sid, after=at))["events"]
            assert [e["eventId"] for e in rest] == ids[ids.index(at) + 1 :]

        # Rejoining from a trimmed event, or from the start: a resync and nothing replayed.
        for last_event_id, batch in product((ids[0], ids[-CAP - 2], None), (False, True)):
            late = await running.client(batch=batch)
            clients.append(late)
            payload = {"sessionId": sid} | ({"lastEventId": last_event_id} if last_event_id else {})
            joined = await late.ok("session:join", payload)
            assert joined["lastEventId"] is None
            resync = await late.wait_for_event("session:resync")
            assert resync["sessionId"] == sid and resync["reason"]
            assert late.session_events(sid) == []  # a replay would have come before the ack
            assert late.frames == []

        # Rejoining from the last event removed, or from one still kept: exactly what followed.
        for last_event_id, batch in product((trimmed_to, ids[-10]), (False, True)):
            late = await running.client(batch=batch)
            clients.append(late)
            joined = await late.ok("session:join", {"sessionId": sid, "lastEventId": last_event_id})
            replayed = [d["eventId"] for _, d in late.session_events(sid)]
            assert replayed == ids[ids.index(last_event_id) + 1 :]
            assert joined["lastEventId"] == ids[-1]
            assert not [e for e, _ in late.events if e == "session:resync"]
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()
