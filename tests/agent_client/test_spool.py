"""The on-disk spool: append, ack trims, pending items come back after a reopen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_client.spool import COMPACT_AFTER, Spool, file_name

_create, _load = Spool.create, Spool.load
_OPEN: list[Spool] = []


@pytest.fixture(autouse=True)
def _close_spools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every spool a test opens is closed afterwards (the daemon closes its own)."""

    def create(directory: Path, task_id: str, **meta: object) -> Spool:
        _OPEN.append(_create(directory, task_id, **meta))
        return _OPEN[-1]

    def load(path: Path) -> Spool:
        _OPEN.append(_load(path))
        return _OPEN[-1]

    monkeypatch.setattr(Spool, "create", staticmethod(create))
    monkeypatch.setattr(Spool, "load", staticmethod(load))
    yield
    while _OPEN:
        _OPEN.pop().close()


def _stream(n: int) -> dict[str, object]:
    return {"taskId": "t1", "agentId": "a", "type": "stdout", "data": f"line {n}"}


def test_append_numbers_items_from_one(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    items = [spool.append("task:stream", _stream(n)) for n in range(1, 4)]
    assert [i.seq for i in items] == [1, 2, 3]
    assert [i.payload["seq"] for i in items] == [1, 2, 3]
    assert spool.last_seq == 3 and spool.persisted_seq == 0
    assert [i.seq for i in spool.pending()] == [1, 2, 3]
    assert spool.get(2).payload["data"] == "line 2"


def test_items_are_on_disk_once_flushed(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    spool.append("task:stream", _stream(1))
    spool.flush()  # the outbox does, before it sends a frame
    lines = [json.loads(line) for line in (tmp_path / "t1.jsonl").read_text().splitlines()]
    assert lines[-1]["k"] == "item" and lines[-1]["seq"] == 1


def test_ack_trims_and_ignores_stale_acks(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    for n in range(1, 6):
        spool.append("task:stream", _stream(n))
    assert spool.ack(3)
    assert [i.seq for i in spool.pending()] == [4, 5]
    assert not spool.ack(2)  # an older ack changes nothing
    assert spool.persisted_seq == 3
    assert spool.ack(99)  # never beyond what exists
    assert spool.persisted_seq == 5 and spool.pending() == []


def test_reopen_gives_back_unacked_items_in_order(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "task/with odd id")
    for n in range(1, 8):
        spool.append("task:stream", _stream(n))
    spool.ack(4)
    spool.close()  # the daemon stops (or dies) here

    (reopened,) = Spool.load_all(tmp_path)
    assert reopened.task_id == "task/with odd id"
    assert reopened.persisted_seq == 4 and reopened.last_seq == 7
    assert [i.seq for i in reopened.pending()] == [5, 6, 7]
    assert [i.payload["data"] for i in reopened.pending()] == ["line 5", "line 6", "line 7"]
    # New output continues the numbering without a gap.
    assert reopened.append("task:stream", _stream(8)).seq == 8


def test_everything_acked_reopens_empty_but_keeps_the_mark(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    for n in range(1, 4):
        spool.append("task:stream", _stream(n))
    spool.ack(3)
    spool.close()
    reopened = Spool.load(tmp_path / "t1.jsonl")
    assert reopened.pending() == []
    assert reopened.persisted_seq == 3 and reopened.last_seq == 3


def test_final_events_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    spool.append("task:stream", _stream(1))
    spool.set_final([("worker:status", {"status": "completed"}), ("task:result", {"ok": 1})])
    spool.close()
    reopened = Spool.load(tmp_path / "t1.jsonl")
    assert reopened.final == [
        ("worker:status", {"status": "completed"}),
        ("task:result", {"ok": 1}),
    ]
    assert [i.seq for i in reopened.pending()] == [1]


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    spool.append("task:stream", _stream(1))
    spool.append("task:stream", _stream(2))
    spool.close()
    path = tmp_path / "t1.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 10])  # a crash in the middle of the last write

    reopened = Spool.load(path)
    assert [i.seq for i in reopened.pending()] == [1]
    reopened.append("task:stream", _stream(2))
    reopened.close()
    assert [i.seq for i in Spool.load(path).pending()] == [1, 2]


def test_compaction_keeps_what_is_unacked(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    last = 2 * COMPACT_AFTER
    for n in range(1, last + 1):
        spool.append("task:stream", _stream(n))
        if n % 2 == 0:
            spool.ack(n - 1)
    spool.flush()
    path = tmp_path / "t1.jsonl"
    assert len(path.read_text().splitlines()) < last  # rewritten along the way
    spool.close()
    reopened = Spool.load(path)
    assert reopened.persisted_seq == last - 1
    assert [i.seq for i in reopened.pending()] == [last]


def test_remove_deletes_the_file(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, "t1")
    spool.remove()
    assert not (tmp_path / file_name("t1")).exists()
    assert Spool.load_all(tmp_path) == []
