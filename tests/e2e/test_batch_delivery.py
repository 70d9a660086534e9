"""Session events in batches (PROTOCOL.md 1.1, issue 10): a socket that joins with
`batch: true` gets its replay and its live events as `session:events` frames, the same
events in the same order as a socket that takes them one per emit. Real gateway, agent
and worker processes; events written into the stream as the gateway writes them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from actors import streams
from gateway.feed import FRAME_MAX_BYTES, FRAME_MAX_EVENTS
from orchestra import keys, redis_client
from orchestra.client import SESSION_EVENTS, Client
from orchestra.codec import json_size, parse_event_id
from tests.e2e.test_rest import ok
from tests.support.processes import wait_for
from tests.support.running import Running
from tests.support.web import WebClient
from tests.support.workers import printer

# The SQL backend plays no part here: SQLite only (test_stream_trim covers the archive).
pytestmark = pytest.mark.sqlite_only

ENVELOPE = {"id", "timestamp", "source", "version"}
WHEN = "2025-01-01T00:00:00.000Z"
FILLER = "x" * 600  # about 700 bytes an event: the byte bound cuts the replay's frames


async def new_session(running: Running) -> str:
    url, token = running.gateway.url, running.token
    body = await ok("POST", url + "/api/sessions", {"title": "batches"}, token)
    return str(body["session"]["id"])


async def history_ids(running: Running, sid: str) -> list[str]:
    url = f"{running.gateway.url}/api/sessions/{sid}/events?limit=1000"
    return [e["eventId"] for e in (await ok("GET", url, None, running.token))["events"]]


def ids_of(client: WebClient, sid: str) -> list[str]:
    return [d["eventId"] for _, d in client.session_events(sid)]


async def write_events(
    redis: Redis, partitions: int, sid: str, first: int, count: int
) -> list[str]:
    """`count` task:stream events appended to the session's stream (of a deployment of
    `partitions` partitions); their eventIds."""
    pipe = redis.pipeline(transaction=False)
    for n in range(first, first + count):
        data = {"sessionId": sid, "taskId": "t", "agentId": "a", "attempt": 1, "seq": n,
                "type": "stdout", "data": f"line {n} {FILLER}", "timestamp": WHEN}  # fmt: skip
        stored = json.dumps(data, separators=(",", ":"))  # as the gateway writes it
        pipe.xadd(keys.session_events(sid, partitions), {"event": "task:stream", "data": stored})
    return [str(i) for i in await pipe.execute()]


def frame_ids(client: WebClient, start: int = 0) -> list[str]:
    return [i for frame in client.frames[start:] for i in frame.event_ids]


async def test_a_batch_watcher_sees_what_a_per_event_watcher_sees(
    running: Running, tmp_path: Path
) -> None:
    single = await running.client()
    batched = await running.client(batch=True)
    try:
        sid = await new_session(running)
        for client in (single, batched):
            await client.ok("session:join", {"sessionId": sid})
        await single.ok(
            "worker:start",
            {
                "sessionId": sid,
                "agentId": running.agent_id,
                "tool": "custom",
                "command": printer(400, interval_s=0),  # as fast as it prints: bursts
                "workingDirectory": str(tmp_path),
            },
        )

        async def settled() -> bool:
            names = [(n, d.get("status")) for n, d in single.session_events(sid)]
            if ("task:result", None) not in names or ("worker:status", "completed") not in names:
                return False
            everything = await history_ids(running, sid)
            return ids_of(single, sid) == everything == ids_of(batched, sid)

        await wait_for(settled, what="both watchers to have every event")
        ids = await history_ids(running, sid)
        assert [parse_event_id(i) for i in ids] == sorted({parse_event_id(i) for i in ids})

        # Every session event of the batch watcher came in a frame, none alone; the other
        # watcher got no frame.
        assert frame_ids(batched) == ids and single.frames == []
        assert all(f.frame["sessionId"] == sid for f in batched.frames)
        assert max(len(f.event_ids) for f in batched.frames) > 1, "bursts come as one frame"
        assert len(batched.frames) < len(ids)
        # A frame's event carries exactly the data of the event sent alone (its eventId
        # included); only the envelope is the frame's.
        for frame in batched.frames:
            assert ENVELOPE <= set(frame.frame) and frame.frame["source"] == "server"
        alone = {d["eventId"]: (n, d) for n, d in single.session_events(sid)}
        for frame in batched.frames:
            for item in frame.frame["events"]:
                name, data = alone[item["data"]["eventId"]]
                assert item["event"] == name
                assert item["data"] == {k: v for k, v in data.items() if k not in ENVELOPE} | {
                    k: data[k] for k in ENVELOPE & set(item["data"])
                }
        lines = [d["data"] for n, d in batched.session_events(sid) if n == "task:stream"]
        assert lines == [f"line {n}" for n in range(1, 401)]
    finally:
        await single.close()
        await batched.close()


async def test_replay_comes_in_frames_before_the_ack_compressed_where_asked(
    running: Running,
) -> None:
    redis = redis_client.connect(running.deployment.redis_url)
    zstd = await running.client(batch=True, compression=["zstd"])
    plain = await running.client(batch=True)
    single = await running.client(compression=["zstd", "gzip"])
    clients = (zstd, plain, single)
    try:
        sid = await new_session(running)
        partitions = running.deployment.partitions
        ids = await write_events(redis, partitions, sid, 1, 3000)
        stored = await streams.xrange(redis, keys.session_events(sid, partitions))
        assert [entry_id for entry_id, _ in stored][-len(ids) :] == ids  # after session:updated
        largest = max(json_size(fields) for _, fields in stored)
        joined_frames: dict[int, int] = {}
        for client in clients:
            joined = await client.ok("session:join", {"sessionId": sid, "lastEventId": ids[0]})
            assert joined["lastEventId"] == ids[-1]
            # Everything after lastEventId came before the ack, in order.
            assert ids_of(client, sid) == ids[1:]
            joined_frames[id(client)] = len(client.frames)
        for client in (zstd, plain):
            assert frame_ids(client) == ids[1:]
            assert len(client.frames) >= 4, "a replay of thousands of events is several frames"
            for frame in client.frames:
                assert 0 < len(frame.event_ids) <= FRAME_MAX_EVENTS
                assert json_size(frame.frame) <= FRAME_MAX_BYTES + largest + 1024
        assert single.frames == []
        # Compressed for the socket that listed zstd, plain for the one that listed nothing.
        assert all(f.raw.get("compressed") is True for f in zstd.frames)
        assert {f.raw["algorithm"] for f in zstd.frames} == {"zstd"}
        assert all("compressed" not in f.raw and f.raw is not None for f in plain.frames)
        assert [f.frame["events"] for f in zstd.frames] == [f.frame["events"] for f in plain.frames]

        # Live: each of these bursts arrives once, after the ack, nothing of the replay again.
        more = await write_events(redis, partitions, sid, 3001, 50)
        more += await write_events(redis, partitions, sid, 3051, 200)
        await wait_for(
            lambda: all(len(ids_of(c, sid)) >= len(ids) - 1 + 250 for c in clients),
            what="the live events",
        )
        for client in clients:
            assert ids_of(client, sid) == ids[1:] + more
        for client in (zstd, plain):
            live = client.frames[joined_frames[id(client)] :]
            assert frame_ids(client, joined_frames[id(client)]) == more
            assert max(len(f.event_ids) for f in live) > 1
        # The two batch sockets had the same cursor: each live frame was built once for
        # both (one envelope), and compressed for the one that asked.
        live_zstd = zstd.frames[joined_frames[id(zstd)] :]
        live_plain = plain.frames[joined_frames[id(plain)] :]
        assert [f.frame["id"] for f in live_zstd] == [f.frame["id"] for f in live_plain]
        # (a frame of one event, read alone, may be under the threshold: plain then)
        assert any(f.raw.get("compressed") is True for f in live_zstd)
        for frame in live_zstd:
            assert (frame.raw.get("compressed") is True) == (json_size(frame.frame) > 1024)
        assert all("compressed" not in f.raw for f in live_plain)
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()


async def test_a_batch_watcher_rejoins_where_it_left_and_resyncs_as_before(
    running: Running, tmp_path: Path
) -> None:
    first = await running.client(batch=True, compression=["zstd", "gzip"])
    clients = [first]
    try:
        sid = await new_session(running)
        joined = await first.ok("session:join", {"sessionId": sid})
        epoch = joined["epoch"]
        await first.ok(
            "worker:start",
            {
                "sessionId": sid,
                "agentId": running.agent_id,
                "tool": "custom",
                "command": printer(300, interval_s=0.005),
                "workingDirectory": str(tmp_path),
            },
        )
        await wait_for(
            lambda: len([n for n, _ in first.session_events(sid) if n == "task:stream"]) >= 40,
            what="some output",
        )
        await first.close()  # dropped mid-run
        seen = ids_of(first, sid)
        second = await running.client(batch=True)
        clients.append(second)
        answer = await second.ok(
            "session:join", {"sessionId": sid, "lastEventId": seen[-1], "epoch": epoch}
        )
        # The replay came before the ack (live frames may have followed it already).
        assert answer["lastEventId"] == seen[-1] or answer["lastEventId"] in ids_of(second, sid)

        async def settled() -> bool:
            names = [n for n, _ in second.session_events(sid)]
            if "task:result" not in names:
                return False
            return seen + ids_of(second, sid) == await history_ids(running, sid)

        await wait_for(settled, what="the rest of the run")
        both = seen + ids_of(second, sid)
        assert len(both) == len(set(both)), "nothing doubled"
        lines = [d["data"] for c in (first, second) for n, d in c.session_events(sid)
                 if n == "task:stream"]  # fmt: skip
        assert lines == [f"line {n}" for n in range(1, 301)]

        # A stream begun anew (another epoch), or a lastEventId that is none: a resync
        # event as before, nothing replayed, no frame.
        for payload in ({"epoch": "other"}, {"lastEventId": "not-an-id"}):
            late = await running.client(batch=True)
            clients.append(late)
            answer = await late.ok("session:join", {"sessionId": sid, **payload})
            assert answer["lastEventId"] is None
            resync = await late.wait_for_event("session:resync")
            assert resync["sessionId"] == sid and resync["reason"]
            assert late.frames == [] and late.session_events(sid) == []
    finally:
        for client in clients:
            await client.close()


class CountingClient(Client):
    """orchestra.client, counting the `session:events` frames it decodes."""

    frames = 0
    compressed = 0

    async def _receive_frame(self, data: Any) -> None:
        self.frames += 1
        self.compressed += isinstance(data, dict) and data.get("compressed") is True
        await super()._receive_frame(data)


async def test_orchestra_client_users_see_the_same_events_either_way(
    running: Running, tmp_path: Path
) -> None:
    url, token = running.gateway.url, running.token
    framed, single = CountingClient(url, token), CountingClient(url, token, batch=False)
    received: dict[int, list[tuple[str, dict[str, Any]]]] = {id(framed): [], id(single): []}

    async def read(client: Client) -> None:
        async for name, data in client.events():
            received[id(client)].append((name, data))
            if name == "task:result":
                return

    try:
        for client in (framed, single):
            await client.connect()
        long_lines = (
            "import sys\n"
            "for n in range(1, 301):\n"
            "    print(f'line {n} ' + 'y' * 300, flush=n % 50 == 0)\n"  # bursts: compressed
        )
        started = await framed.start(
            tool="custom", agent_id=running.agent_id, working_directory=str(tmp_path),
            command=[sys.executable, "-c", long_lines],
        )  # fmt: skip
        sid = started["sessionId"]
        readers = [asyncio.create_task(read(c)) for c in (framed, single)]
        for client in (framed, single):
            await client.join(sid)
        await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
        assert framed.frames > 0 and single.frames == 0
        assert framed.compressed > 0, "it listed zstd and gzip: large frames come compressed"

        def own(name: str, data: dict[str, Any]) -> dict[str, Any]:
            """Bar the envelope's `id`, and its `timestamp` (when it was sent) where the
            event has no timestamp of its own."""
            mine = {"timestamp"} if name in ("task:stream", "worker:output") else set()
            return {k: v for k, v in data.items() if k not in ENVELOPE - mine}

        # Session events; others (agents:updated) come as they happen, between them.
        got, expected = [
            [(n, d) for n, d in received[id(c)] if n in SESSION_EVENTS] for c in (framed, single)
        ]
        assert [n for n, _ in got] == [n for n, _ in expected]
        for (name, data), (_, alone) in zip(got, expected, strict=True):
            assert set(data) == set(alone)  # the envelope's fields too
            assert own(name, data) == own(name, alone)
            assert (data["source"], data["version"]) == (alone["source"], alone["version"])
        lines = [d["data"] for n, d in got if n == "task:stream"]
        assert lines == [f"line {n} " + "y" * 300 for n in range(1, 301)]
        ids = [d["id"] for _, d in got]
        assert len(ids) == len(set(ids)), "each event has an id of its own"
    finally:
        for client in (framed, single):
            await client.close()
