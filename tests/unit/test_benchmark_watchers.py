"""The throughput benchmark's watcher (benchmarks/_watchers.py): it reads lines alone or
in `session:events` frames, compressed or not, and fails a run that lost, doubled,
reordered or mislabelled a line."""

from __future__ import annotations

import base64
import json
from typing import Any

import zstandard

from benchmarks._watchers import Watcher

SID = "s-1"


def line(seq: int, number: int | None = None) -> dict[str, Any]:
    text = f"{seq if number is None else number} 1700000000.000000 " + "x" * 40
    return {"sessionId": SID, "taskId": "t", "seq": seq, "type": "stdout", "data": text}


def frame(*seqs: int, result: bool = False) -> dict[str, Any]:
    events = [{"event": "task:stream", "data": line(seq)} for seq in seqs]
    if result:
        events.append({"event": "task:result", "data": {"sessionId": SID, "success": True}})
    return {"sessionId": SID, "events": events}


async def test_lines_alone_and_in_frames_count_once_each_in_order() -> None:
    watcher = Watcher(SID, 6)
    await watcher._single(line(1))
    await watcher._single({**line(1), "sessionId": "another"})  # not this session's
    await watcher._frame(frame(2, 3))
    await watcher._frame(frame(4, 5, 6, result=True))
    assert watcher.finished.is_set()
    assert watcher.check() is None
    result = watcher.result(None)
    assert (result["count"], result["singleEvents"], result["frames"]) == (6, 1, 2)
    assert result["framedLines"] == 5 and len(result["latenciesMs"]) == 6
    assert result["bytesPerLine"] > 0


async def test_a_compressed_frame_is_read() -> None:
    raw = json.dumps(frame(1, 2, result=True)).encode()
    packed = {
        "compressed": True,
        "algorithm": "zstd",
        "originalSize": len(raw),
        "compressedData": base64.b64encode(zstandard.ZstdCompressor().compress(raw)).decode(),
    }
    watcher = Watcher(SID, 2)
    await watcher._frame(packed)
    assert watcher.finished.is_set() and watcher.check() is None


async def test_lost_doubled_reordered_and_mislabelled_lines_fail_the_run() -> None:
    for seqs in ([1, 3], [1, 2, 2, 3], [2, 1, 3]):
        watcher = Watcher(SID, 3)
        for seq in seqs:
            await watcher._single(line(seq))
        assert watcher.check() is not None, seqs
    watcher = Watcher(SID, 2)
    await watcher._single(line(1))
    await watcher._single(line(2, number=7))
    assert "carries line 7" in (watcher.check() or "")
