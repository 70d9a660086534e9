"""Capping session streams against a real Redis and a real SQL store (SQLite and PostgreSQL):
the trim job finds long streams, the session actor archives the oldest events then trims
them, and the history reads archive then stream with no gap and no repeat."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from redis.asyncio import Redis

from actors import KINDS, ActorEnv, ActorSystem, Scripts, session_address, streams
from actors.trim import PAGE, TRIMMED_TO
from gateway.history import History, resumable
from gateway.jobs import trim_session_streams
from orchestra import keys, redis_client
from orchestra.codec import parse_event_id
from orchestra.db import Store
from orchestra.redis_server import RedisServer
from orchestra.settings import Settings
from tests.actors.test_runtime import NoSockets
from tests.support.processes import wait_for

CAP = 100


@dataclass
class Node:
    system: ActorSystem
    redis: Redis
    store: Store
    history: History

    def events(self, sid: str) -> str:
        """The session's event stream key."""
        return keys.session_events(sid, self.system.partitions)

    def session(self, sid: str) -> str:
        """The session's state hash key."""
        return keys.session(sid, self.system.partitions)


@pytest_asyncio.fixture
async def node(redis: RedisServer, database_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    store = await Store.connect(database_url)
    client = redis_client.connect(redis.url)
    settings = Settings.load(
        {}, node_id="n1", redis_url=redis.url, data_dir=tmp_path, jwt_secret="x" * 32,
        partitions=4, lease_ttl_s=3, session_stream_max_events=CAP,
    )  # fmt: skip
    system = ActorSystem(
        ActorEnv(client, Scripts(client), store, settings, NoSockets()), dict(KINDS)
    )
    await system.start()
    try:
        yield Node(system, client, store, History(client, store, settings.partitions))
    finally:
        await system.stop()
        await client.aclose()
        await store.close()


async def new_session(node: Node) -> str:
    sid = secrets.token_hex(8)
    await node.system.ref(session_address(sid)).ask("create", {"ownerId": "u1", "title": "t"})
    return sid


async def write_output(node: Node, sid: str, lines: int) -> None:
    """Entries as the gateway's output script writes them."""
    async with node.redis.pipeline(transaction=False) as pipe:
        for n in range(1, lines + 1):
            data = {"sessionId": sid, "taskId": "t", "agentId": "a", "seq": n,
                    "type": "stdout", "data": f"line {n}"}  # fmt: skip
            pipe.xadd(node.events(sid), {"event": "task:stream", "data": json.dumps(data)})
        await pipe.execute()


async def test_a_long_stream_is_archived_then_trimmed_to_its_cap(node: Node) -> None:
    sid = await new_session(node)
    short = await new_session(node)
    await write_output(node, sid, 2 * PAGE + 500)  # a backlog of several turns' pages
    before = await streams.xrange(node.redis, node.events(sid))
    assert len(before) == 2 * PAGE + 501  # session:updated first

    # Only the session over its cap is told; its actor trims it page by page.
    assert await trim_session_streams(node.redis, node.system, CAP) == 1

    async def trimmed() -> bool:
        return int(await node.redis.xlen(node.events(sid))) == CAP

    await wait_for(trimmed, what="the stream trimmed to its cap")
    kept = await streams.xrange(node.redis, node.events(sid))
    assert kept == before[-CAP:]
    archived = await node.store.list_events(sid, limit=10 * PAGE)
    assert [r.event_id for r in archived] == [i for i, _ in before[:-CAP]]
    assert [(r.event, r.payload) for r in archived] == [
        (f["event"], json.loads(f["data"])) for _, f in before[:-CAP]
    ]
    # trimmedTo is the last entry removed: a client holding it may resume, one before not.
    state_raw = await node.redis.hget(node.session(sid), TRIMMED_TO)
    trimmed_to = json.loads(state_raw or "null")
    assert trimmed_to == archived[-1].event_id
    assert resumable(trimmed_to, trimmed_to)
    assert not resumable(archived[-2].event_id, trimmed_to)
    assert not resumable(None, trimmed_to)
    assert await node.redis.xlen(node.events(short)) == 1
    assert await node.store.list_events(short) == []

    # Nothing over the cap any more: the job tells nobody, a trim changes nothing.
    assert await trim_session_streams(node.redis, node.system, CAP) == 0
    assert await node.system.ref(session_address(sid)).ask("trim") == {"trimmed": 0}
    assert await node.redis.hget(node.session(short), TRIMMED_TO) is None


async def test_history_reads_archive_then_stream_in_any_page_size(node: Node) -> None:
    sid = await new_session(node)
    await write_output(node, sid, 3 * CAP)
    everything = [i for i, _ in await streams.xrange(node.redis, node.events(sid))]
    await node.system.ref(session_address(sid)).ask("trim")
    assert await node.redis.xlen(node.events(sid)) == CAP

    for limit in (1, 7, CAP, 1000):
        paged: list[str] = []
        after: str | None = None
        while True:
            page = await node.history.page(sid, after, limit)
            assert len(page) <= limit
            if not page:
                break
            paged += [e.event_id for e in page]
            after = page[-1].event_id
        assert paged == everything, f"limit {limit}"

    # The same event reads the same from the archive as from the stream.
    (archived,) = await node.history.page(sid, everything[0], 1)
    live, _ = await node.history.live(sid, everything[-2], 1)
    assert archived.name == live[0].name == "task:stream"
    assert set(archived.data) == set(live[0].data)
    assert archived.data["eventId"] == everything[1] and archived.data["seq"] == 1
    # `after` given as a bare millisecond id, as Redis takes it, works on the archive too.
    bare = everything[1].split("-")[0]
    expected = next(i for i in everything if parse_event_id(i) > (int(bare), 0))
    assert [e.event_id for e in await node.history.page(sid, bare, 1)] == [expected]


async def test_a_follower_overtaken_by_trimming_goes_on_from_the_archive(node: Node) -> None:
    sid = await new_session(node)
    await write_output(node, sid, 3 * CAP)
    everything = [i for i, _ in await streams.xrange(node.redis, node.events(sid))]
    await node.system.ref(session_address(sid)).ask("trim")
    # A tailer whose cursor was trimmed away gets what followed it, from the archive on.
    followed = await node.history.follow(sid, everything[5], 1000, block_ms=100)
    assert [e.event_id for e in followed] == everything[6:]
    # A tailer at the end waits, then gets nothing.
    assert await node.history.follow(sid, everything[-1], 10, block_ms=50) == []
