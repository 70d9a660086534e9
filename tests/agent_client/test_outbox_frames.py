"""The outbox sends output in frames (PROTOCOL.md §5, 1.1), against a fake gateway that
stores like the real one (each seq once, never past a gap) and answers each frame when the
test says so: a lone line goes at once as a 1.0 frame, lines printed while a frame is in
flight go together as a batch within the limits, and a gateway that cannot read batches
gets every line anyway, one per frame."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent_client.frames import MAX_IN_FLIGHT_FRAMES
from agent_client.outbox import TaskOutbox
from agent_client.spool import Spool
from orchestra.codec import envelope, json_size
from orchestra.errors import OrchestraError
from orchestra.protocol import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    TaskStream,
    TaskStreamBatch,
    WorkerOutput,
    WorkerOutputBatch,
)
from tests.agent_client.conftest import eventually

Single = type[TaskStream] | type[WorkerOutput]
Batch = type[TaskStreamBatch] | type[WorkerOutputBatch]
OUTPUT: dict[str, tuple[Single, Batch]] = {
    "task:stream": (TaskStream, TaskStreamBatch),
    "worker:output": (WorkerOutput, WorkerOutputBatch),
}


@dataclass
class Gateway:
    """Stores output as the gateway does; `batches=False` is a gateway from before batches
    (its models read a frame without `type` as invalid: PARAM_001)."""

    batches: bool = True
    auto_ack: bool = True
    stored: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    controls: list[tuple[str, int]] = field(default_factory=list)
    """Each control event, with how many items were stored when it came."""
    held: list[Callable[[], None]] = field(default_factory=list)

    def answer(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        single, batch = OUTPUT[event]
        try:
            if self.batches and "items" in payload:
                frame = batch.parse(payload)
                items = [i.model_dump(by_alias=True, exclude_none=True) for i in frame.items]
                seq = frame.seq
            else:
                one = single.parse(payload)
                seq, items = one.seq, [one.model_dump(by_alias=True, exclude_none=True)]
        except OrchestraError as exc:
            return {"success": False, "error": {"code": exc.code, "message": exc.message}}
        if seq <= len(self.stored) + 1:
            for offset, item in enumerate(items):
                if seq + offset == len(self.stored) + 1:
                    self.stored.append((event, item))
        return {"success": True, "data": {"persistedSeq": len(self.stored)}}

    def release(self) -> None:
        """Answer the frames held so far."""
        held, self.held = self.held, []
        for ack in held:
            ack()


class Session:
    def __init__(self, gateway: Gateway, epoch: int) -> None:
        self.gateway = gateway
        self.epoch = epoch
        self.closed = asyncio.Event()

    async def emit(
        self, event: str, payload: dict[str, Any], on_ack: Callable[[Any], None] | None = None
    ) -> None:
        gateway = self.gateway
        gateway.frames.append((event, payload))
        assert json_size(envelope(payload, "agent")) <= 1024 * 1024
        if on_ack is None:
            return
        response = gateway.answer(event, payload)

        def ack() -> None:
            if not self.closed.is_set():
                on_ack(response)

        if gateway.auto_ack:
            asyncio.get_running_loop().call_soon(ack)
        else:
            gateway.held.append(ack)

    async def request(self, event: str, payload: dict[str, Any], timeout_s: float) -> Any:
        self.gateway.controls.append((event, len(self.gateway.stored)))
        return {"success": True, "data": {}}


class Link:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.session = Session(gateway, 1)

    async def wait_ready(self) -> Session:
        return self.session

    def reconnect(self) -> None:
        self.session.closed.set()
        self.session = Session(self.gateway, self.session.epoch + 1)


@pytest_asyncio.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    spool = Spool.create(tmp_path / "spool", "t1", attempt=1)
    yield spool
    spool.close()


def outbox_of(spool: Spool, link: Link) -> TaskOutbox:
    return TaskOutbox(spool, link, agent_id="a1", ack_timeout_s=5.0, retry_delay_s=0.05)


def line(n: int, width: int = 20) -> dict[str, Any]:
    return {
        "type": "stdout",
        "data": f"{n} ".ljust(width, "x"),
        "timestamp": "2026-01-01T00:00:00Z",
    }


async def finish(outbox: TaskOutbox, gateway: Gateway) -> None:
    outbox.finish([("task:result", outbox.ids | {"success": True, "duration": 1})])
    await eventually(outbox.done.is_set, what="the outbox to deliver everything")
    assert gateway.controls[-1] == ("task:result", len(gateway.stored))


def frame_items(payload: dict[str, Any]) -> int:
    return len(payload["items"]) if "items" in payload else 1


async def test_a_lone_line_goes_at_once_and_lines_meanwhile_go_as_one_batch(spool: Spool) -> None:
    gateway = Gateway(auto_ack=False)
    link = Link(gateway)
    outbox = outbox_of(spool, link)
    outbox.start()
    try:
        outbox.output("task:stream", line(1))
        await eventually(lambda: gateway.frames, what="the first frame")
        event, first = gateway.frames[0]
        assert (event, first["seq"], first["type"]) == ("task:stream", 1, "stdout")
        assert "items" not in first  # a 1.0 frame: any gateway takes it
        on_disk = [json.loads(text) for text in spool.path.read_text().splitlines()]
        assert on_disk[-1]["seq"] == 1, "flushed to the spool file before it was sent"
        for n in range(2, 12):
            outbox.output("task:stream", line(n))
        await asyncio.sleep(0.05)
        assert len(gateway.frames) == 1, "nothing more while a frame is in flight"
        gateway.release()
        await eventually(lambda: len(gateway.frames) == 2, what="the batch")
        await asyncio.sleep(0.05)
        assert len(gateway.frames) == 2, "one frame for the ten lines printed meanwhile"
        batch = gateway.frames[1][1]
        assert (batch["seq"], batch["taskId"], batch["agentId"], batch["attempt"]) == (
            2, "t1", "a1", 1)  # fmt: skip
        assert [i["data"] for i in batch["items"]] == [line(n)["data"] for n in range(2, 12)]
        assert all(set(i) == {"type", "data", "timestamp"} for i in batch["items"])
        gateway.release()
        await eventually(lambda: spool.persisted_seq == 11, what="one ack per frame")
        gateway.auto_ack = True
        await finish(outbox, gateway)
    finally:
        await outbox.close()
    assert [item["data"] for _, item in gateway.stored] == [line(n)["data"] for n in range(1, 12)]


async def test_frames_keep_to_the_limits_and_to_one_event_each(spool: Spool) -> None:
    gateway = Gateway()
    # Written before the outbox starts: everything is there to be sent at once.
    for n in range(1, 1301):
        outbox_line = line(n)
        outbox_line["data"] = outbox_line["data"] * (1 if n <= 1200 else 300)  # ~6 KB at the end
        spool.append("task:stream", {"taskId": "t1", "agentId": "a1", "attempt": 1} | outbox_line)
    for n in range(1301, 1311):
        event = "worker:output" if n % 3 else "task:stream"
        fields = {"type": "assistant", "content": f"said {n}"} if n % 3 else line(n)
        spool.append(event, {"taskId": "t1", "agentId": "a1", "attempt": 1} | fields)
    link = Link(gateway)
    outbox = outbox_of(spool, link)
    outbox.start()
    try:
        await finish(outbox, gateway)
    finally:
        await outbox.close()
    assert len(gateway.stored) == 1310
    assert [item.get("data", item.get("content")) for _, item in gateway.stored][-1] == "said 1310"
    for _, payload in gateway.frames:
        assert frame_items(payload) <= MAX_BATCH_ITEMS
        if "items" in payload:
            assert json_size(envelope(payload, "agent")) <= MAX_BATCH_BYTES
    sizes = [frame_items(p) for _, p in gateway.frames]
    assert sizes[:2] == [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS], sizes
    assert any(json_size(p) > MAX_BATCH_BYTES * 0.9 for _, p in gateway.frames), "a full one"
    # Each frame carries one event: the mixed tail goes in runs of one kind.
    seq = 1
    for event, payload in gateway.frames:
        assert payload["seq"] == seq
        kinds = {gateway.stored[s - 1][0] for s in range(seq, seq + frame_items(payload))}
        assert kinds == {event}
        seq += frame_items(payload)
    assert seq == 1311


async def test_a_gateway_that_refuses_batches_gets_single_items(spool: Spool) -> None:
    gateway = Gateway(batches=False, auto_ack=False)
    link = Link(gateway)
    outbox = outbox_of(spool, link)
    outbox.start()
    try:
        outbox.output("task:stream", line(1))
        await eventually(lambda: gateway.frames, what="the first frame")
        for n in range(2, 301):
            outbox.output("task:stream", line(n))
        await eventually(lambda: len(gateway.frames) == 2, what="a batch")
        assert "items" in gateway.frames[1][1]
        gateway.auto_ack = True
        gateway.release()  # the batch is refused: PARAM_001
        await finish(outbox, gateway)
    finally:
        await outbox.close()
    assert [item["data"] for _, item in gateway.stored] == [line(n)["data"] for n in range(1, 301)]
    assert all("items" not in p for _, p in gateway.frames[2:])


async def test_frames_in_flight_are_capped_and_sent_again_after_a_reconnect(
    spool: Spool,
) -> None:
    gateway = Gateway(auto_ack=False)
    link = Link(gateway)
    outbox = outbox_of(spool, link)
    outbox.start()
    try:
        for n in range(1, 40):
            outbox.output("task:stream", line(n))
            await asyncio.sleep(0.01)  # output that keeps coming while a frame is in flight
        await eventually(lambda: len(gateway.frames) == MAX_IN_FLIGHT_FRAMES, what="frames")
        await asyncio.sleep(0.05)
        assert len(gateway.frames) == MAX_IN_FLIGHT_FRAMES, "no more until an ack"
        gateway.held[0]()  # the first frame's ack makes room for one more
        await eventually(lambda: len(gateway.frames) == MAX_IN_FLIGHT_FRAMES + 1, what="one more")
        acked = spool.persisted_seq
        assert acked == frame_items(gateway.frames[0][1])
        # The connection goes: what was in flight is sent again, from persistedSeq + 1.
        gateway.held.clear()
        sent = len(gateway.frames)
        link.reconnect()
        gateway.auto_ack = True
        await finish(outbox, gateway)
        assert gateway.frames[sent][1]["seq"] == acked + 1
    finally:
        await outbox.close()
    assert [item["data"] for _, item in gateway.stored] == [line(n)["data"] for n in range(1, 40)]


@pytest.mark.parametrize("batches", [True, False])
async def test_control_events_wait_for_the_output_before_them(spool: Spool, batches: bool) -> None:
    gateway = Gateway(batches=batches)
    outbox = outbox_of(spool, Link(gateway))
    try:
        outbox.control("task:accepted", {})
        outbox.start()
        for n in range(1, 501):
            outbox.output("task:stream", line(n))
        outbox.control("worker:status", {"status": "completed"})
        await finish(outbox, gateway)
    finally:
        await outbox.close()
    assert gateway.controls == [("task:accepted", 0), ("worker:status", 500), ("task:result", 500)]
