"""`SessionFeed` framing (gateway/feed.py) against an in-memory history: how replay and
live bursts are cut into `session:events` frames, and which sockets share a frame. The
real gateway, Redis and sockets are in tests/e2e/test_batch_delivery.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from gateway.feed import FRAME_MAX_BYTES, FRAME_MAX_EVENTS, SessionFeed, frames
from gateway.history import Event, History
from orchestra.codec import parse_event_id
from tests.support.processes import wait_for

SID = "s-1"


def event(n: int, size: int = 100) -> Event:
    event_id = f"1000-{n}"
    return Event(event_id, "task:stream", {"sessionId": SID, "seq": n, "eventId": event_id}, size)


class MemoryHistory:
    """The parts of `History` the feed uses, over a list that tests append to."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.grown = asyncio.Event()

    def append(self, *events: Event) -> None:
        self.events += events
        self.grown.set()

    def _after(self, after: str | None, count: int) -> list[Event]:
        start = parse_event_id(after) if after else (0, 0)
        return [e for e in self.events if parse_event_id(e.event_id) > start][:count]

    async def live(
        self, session_id: str, after: str | None, count: int
    ) -> tuple[list[Event], str | None]:
        return self._after(after, count), None

    async def page(self, session_id: str, after: str | None, limit: int) -> list[Event]:
        return self._after(after, limit)

    async def follow(self, session_id: str, after: str, count: int, block_ms: int) -> list[Event]:
        while not (found := self._after(after, count)):
            self.grown.clear()
            try:
                await asyncio.wait_for(self.grown.wait(), block_ms / 1000)
            except TimeoutError:
                return []
        return found


class Recorder:
    def __init__(self) -> None:
        self.singles: dict[str, list[str]] = {}  # socket -> eventIds
        self.frames: list[tuple[tuple[str, ...], list[str]]] = []  # (sockets, eventIds)

    async def send(self, socket: str, name: str, data: dict[str, Any]) -> None:
        self.singles.setdefault(socket, []).append(data["eventId"])

    async def send_frame(self, sockets: Sequence[str], name: str, data: dict[str, Any]) -> None:
        assert name == "session:events" and data["sessionId"] == SID
        ids = [item["data"]["eventId"] for item in data["events"]]
        assert all(item["event"] == "task:stream" for item in data["events"])
        self.frames.append((tuple(sorted(sockets)), ids))

    def framed(self, socket: str) -> list[str]:
        return [i for sockets, ids in self.frames if socket in sockets for i in ids]


def ids(events: Sequence[Event]) -> list[str]:
    return [e.event_id for e in events]


def test_frames_are_cut_by_count_and_by_size() -> None:
    many = [event(n, size=10) for n in range(1, 2 * FRAME_MAX_EVENTS + 2)]
    assert [len(f) for f in frames(many)] == [FRAME_MAX_EVENTS, FRAME_MAX_EVENTS, 1]
    big = [event(n, size=FRAME_MAX_BYTES // 3 - 100) for n in range(1, 8)]
    assert [len(f) for f in frames(big)] == [3, 3, 1]
    huge = [event(1, 10), event(2, 2 * FRAME_MAX_BYTES), event(3, 10)]
    assert [ids(f) for f in frames(huge)] == [["1000-1"], ["1000-2"], ["1000-3"]]
    assert list(frames([])) == []
    assert [ids(f) for f in frames(many)] and sum(len(f) for f in frames(many)) == len(many)


async def test_replay_comes_in_frames_and_live_bursts_are_shared() -> None:
    history = MemoryHistory()
    out = Recorder()
    feed = SessionFeed(cast(History, history), out.send, out.send_frame)
    history.append(*[event(n) for n in range(1, 2501)])
    try:
        joined = await feed.join(SID, "a", "1000-1", batch=True)
        assert joined.resumed and joined.last_event_id == "1000-2500"
        # Replay: pages of the stream, each one frame (well under the byte bound).
        assert [len(i) for _, i in out.frames] == [1000, 1000, 499]
        assert out.framed("a") == [f"1000-{n}" for n in range(2, 2501)]
        await feed.join(SID, "b", "1000-2500", batch=True)
        await feed.join(SID, "c", "1000-2500")  # one event per send, as before
        out.frames.clear()

        history.append(*[event(n) for n in range(2501, 2511)])
        await wait_for(lambda: len(out.singles.get("c", [])) == 10, what="the burst")
        # One read, one frame for both batch sockets; the per-event socket as before.
        assert out.frames == [(("a", "b"), [f"1000-{n}" for n in range(2501, 2511)])]
        assert out.singles == {"c": [f"1000-{n}" for n in range(2501, 2511)]}

        # A socket that joins switches mode: "c" now takes frames, "a" single events.
        await feed.join(SID, "c", "1000-2510", batch=True)
        await feed.join(SID, "a", "1000-2510")
        out.frames.clear()
        out.singles.clear()
        history.append(event(2511), event(2512))
        await wait_for(lambda: len(out.singles.get("a", [])) == 2, what="the next burst")
        await wait_for(lambda: out.frames, what="its frame")
        assert out.frames == [(("b", "c"), ["1000-2511", "1000-2512"])]
        assert out.singles == {"a": ["1000-2511", "1000-2512"]}

        # Gone sockets get nothing; the others go on.
        await feed.leave(SID, "b")
        await feed.drop_socket("a")
        out.frames.clear()
        out.singles.clear()
        history.append(event(2513))
        await wait_for(lambda: out.frames, what="a frame for c alone")
        assert out.frames == [(("c",), ["1000-2513"])] and out.singles == {}
    finally:
        await feed.close()


async def test_sockets_behind_the_burst_get_their_own_part_of_it() -> None:
    """A socket that joined while the tailer waited has had part of the burst already
    (its replay went further): it gets what lies past its cursor, framed once for every
    socket with that cursor."""
    out = Recorder()
    feed = SessionFeed(cast(History, MemoryHistory()), out.send, out.send_frame)
    burst = [event(n) for n in range(6, 11)]
    watchers = {"a": (1000, 5), "b": (1000, 5), "c": (1000, 7), "d": (1000, 10), "e": (1000, 5)}
    await feed._frame_burst(SID, watchers, {"a", "b", "c", "d", "gone"}, burst)
    assert sorted(out.frames) == [
        (("a", "b"), [f"1000-{n}" for n in range(6, 11)]),
        (("c",), ["1000-8", "1000-9", "1000-10"]),
    ]
    # Batch sockets are past the burst now; "e" (one event per send) is left to the caller.
    assert watchers == {"a": (1000, 10), "b": (1000, 10), "c": (1000, 10), "d": (1000, 10),
                        "e": (1000, 5)}  # fmt: skip
    assert out.singles == {}


async def test_a_join_outlives_the_last_other_watcher_leaving_during_its_replay() -> None:
    history = MemoryHistory()
    out = Recorder()
    replaying = asyncio.Event()
    go_on = asyncio.Event()

    async def send_frame(sockets: Sequence[str], name: str, data: dict[str, Any]) -> None:
        if "b" in sockets and not go_on.is_set():
            replaying.set()
            await go_on.wait()
        await out.send_frame(sockets, name, data)

    feed = SessionFeed(cast(History, history), out.send, send_frame)
    history.append(event(1))
    try:
        await feed.join(SID, "a", None)
        joining = asyncio.create_task(feed.join(SID, "b", None, batch=True))
        await replaying.wait()
        await feed.leave(SID, "a")  # the feed of the session stops while "b" replays
        go_on.set()
        assert (await joining).resumed
        history.append(event(2))
        await wait_for(lambda: "1000-2" in out.framed("b"), what="live events after the join")
        assert out.framed("b") == ["1000-1", "1000-2"]
    finally:
        await feed.close()
