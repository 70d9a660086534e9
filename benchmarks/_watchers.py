"""Web watchers in a process of their own: the receiving end of `benchmarks.throughput`.

    python -m benchmarks._watchers SPEC.json

The driver writes SPEC, a JSON object:

    {"url": ..., "auth": {...} | null, "batch": "auto" | "on" | "off", "timeoutS": float,
     "out": path,
     "watchers": [{"sessionId": ..., "lines": N, "url": ... (optional)}, ...]}

Each watcher is one python-socketio AsyncClient on `/web` (websocket transport). All of
them connect and join their session (`session:join`, with `batch: true` unless `batch`
is `off`), then this process prints `ready` on its standard output. From then on each watcher
records every `task:stream` line of its session with its arrival time, whether it comes
as an event of its own or inside a `session:events` frame (PROTOCOL.md 1.1: a socket that
joined with `batch: true` gets its session's events that way), until the session's
`task:result`. Then each checks that it got seq 1..N once each and in order, each seq
carrying the line of that number, and the process writes what it saw to `out` (JSON)
and prints `done`.

Keeping the watchers out of the driver's process and out of the server's means that the
server under test shares its CPU with none of them (they still share the machine's cores).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
import zstandard

WEB = "/web"
SAMPLED_MESSAGES = 50
"""JSON bytes per line are counted over this many first messages (frames count whole)."""


def plain(data: Any) -> Any:
    """A payload as sent, or decoded where the server compressed it (PROTOCOL.md §1: only
    to a client that listed the algorithm in its handshake)."""
    if not (isinstance(data, dict) and data.get("compressed") is True):
        return data
    raw = base64.b64decode(data["compressedData"])
    if data.get("algorithm") == "zstd":
        size = int(data.get("originalSize") or 0) or 1 << 26
        raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=size)
    else:
        raw = gzip.decompress(raw)
    return json.loads(raw)


@dataclass
class Watcher:
    session_id: str
    lines: int
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    received: list[tuple[int, str, float]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    single_events: int = 0
    """`task:stream` events received one to a message."""
    frames: int = 0
    """`session:events` frames received."""
    framed_lines: int = 0
    """`task:stream` events received inside `session:events` frames."""
    _sampled_messages: int = 0
    _sampled_lines: int = 0
    _sampled_bytes: int = 0
    join_ack: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sio.on("task:stream", self._single, namespace=WEB)
        self.sio.on("task:result", self._result, namespace=WEB)
        self.sio.on("session:events", self._frame, namespace=WEB)

    def _lines(self, data: dict[str, Any], at: float) -> int:
        """Record the line(s) of one `task:stream` payload; how many it held."""
        if data.get("sessionId") != self.session_id:
            return 0
        items = data.get("items")
        if isinstance(items, list):  # not in PROTOCOL.md §4 for `/web`, but cheap to read
            first = int(data["seq"])
            for n, item in enumerate(items):
                self.received.append((first + n, item["data"], at))
            return len(items)
        self.received.append((int(data["seq"]), data["data"], at))
        return 1

    def _sample(self, sent: Any, lines: int) -> None:
        """Count the JSON bytes of the first messages carrying lines, as sent."""
        if lines and self._sampled_messages < SAMPLED_MESSAGES:
            self._sampled_messages += 1
            self._sampled_lines += lines
            self._sampled_bytes += len(json.dumps(sent, separators=(",", ":")))

    @property
    def bytes_per_line(self) -> float:
        return self._sampled_bytes / self._sampled_lines if self._sampled_lines else 0.0

    async def _single(self, sent: dict[str, Any]) -> None:
        at = time.time()
        count = self._lines(plain(sent), at)
        self.single_events += count
        self._sample(sent, count)

    async def _result(self, data: dict[str, Any]) -> None:
        if plain(data).get("sessionId") == self.session_id:
            self.finished.set()

    async def _frame(self, sent: dict[str, Any]) -> None:
        at = time.time()
        data = plain(sent)
        if data.get("sessionId") != self.session_id:
            return
        self.frames += 1
        count = 0
        for item in data.get("events") or []:
            name, payload = item.get("event"), item.get("data") or {}
            if name == "task:stream":
                count += self._lines(payload, at)
            elif name == "task:result" and payload.get("sessionId") == self.session_id:
                self.finished.set()
        self.framed_lines += count
        self._sample(sent, count)

    async def connect(self, url: str, auth: dict[str, Any] | None) -> None:
        await self.sio.connect(
            url, namespaces=[WEB], auth=auth, transports=["websocket"], wait_timeout=60
        )

    async def join(self, batch: str) -> None:
        """Join the session; `batch` `on` or `auto` asks for `session:events` frames
        (`auto` joins again without asking if a gateway refuses the field)."""
        request: dict[str, Any] = {"sessionId": self.session_id}
        if batch != "off":
            request["batch"] = True
        answer = await self.sio.call("session:join", request, namespace=WEB, timeout=60)
        if not answer.get("success") and batch == "auto":
            request.pop("batch")
            answer = await self.sio.call("session:join", request, namespace=WEB, timeout=60)
        if not answer.get("success"):
            raise RuntimeError(f"session:join failed: {answer}")
        self.join_ack = answer.get("data") or {}

    def check(self) -> str | None:
        """What is wrong with what arrived, or None: seq 1..N once each, in order."""
        seqs = [seq for seq, _, _ in self.received]
        if seqs != list(range(1, self.lines + 1)):
            missing = sorted(set(range(1, self.lines + 1)) - set(seqs))
            return (
                f"session {self.session_id}: {len(seqs)} lines received for {self.lines} "
                f"printed; missing {missing[:10]}, doubled {len(seqs) - len(set(seqs))}, "
                f"in order {seqs == sorted(seqs)}"
            )
        for seq, text, _ in self.received:
            number = text.split(" ", 1)[0]
            if number != str(seq):
                return f"session {self.session_id}: seq {seq} carries line {number}"
        return None

    def result(self, error: str | None) -> dict[str, Any]:
        latencies: list[float] = []
        if error is None:
            for _, text, at in self.received:
                stamp = text.split(" ", 2)[1]
                latencies.append(round((at - float(stamp)) * 1000, 3))
        return {
            "sessionId": self.session_id,
            "error": error,
            "count": len(self.received),
            "first": self.received[0][2] if self.received else None,
            "last": self.received[-1][2] if self.received else None,
            "latenciesMs": latencies,
            "singleEvents": self.single_events,
            "frames": self.frames,
            "framedLines": self.framed_lines,
            "bytesPerLine": self.bytes_per_line,
            "joinAckBatch": self.join_ack.get("batch"),
        }


async def watch(spec: dict[str, Any]) -> None:
    """Connect, join, say `ready`, wait for the run to end, write what every watcher saw
    and say `done`."""
    watchers = [Watcher(w["sessionId"], int(w["lines"])) for w in spec["watchers"]]
    urls = [w.get("url") or spec["url"] for w in spec["watchers"]]
    await asyncio.gather(
        *(w.connect(url, spec.get("auth")) for w, url in zip(watchers, urls, strict=True))
    )
    await asyncio.gather(*(w.join(spec.get("batch", "off")) for w in watchers))
    cpu_ready = time.process_time()
    print("ready", flush=True)
    deadline = time.monotonic() + float(spec["timeoutS"])
    errors: dict[int, str] = {}
    for n, watcher in enumerate(watchers):
        try:
            await asyncio.wait_for(watcher.finished.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            errors[n] = (
                f"session {watcher.session_id}: no task:result in {spec['timeoutS']:.0f} s; "
                f"{len(watcher.received)} of {watcher.lines} lines arrived"
            )
    cpu_s = time.process_time() - cpu_ready
    results = [w.result(errors.get(n) or w.check()) for n, w in enumerate(watchers)]
    text = json.dumps({"cpuS": cpu_s, "watchers": results})
    await asyncio.to_thread(Path(spec["out"]).write_text, text)
    print("done", flush=True)
    await asyncio.gather(*(w.sio.disconnect() for w in watchers), return_exceptions=True)


def main(spec_path: str) -> None:
    asyncio.run(watch(json.loads(Path(spec_path).read_text())))


if __name__ == "__main__":
    main(sys.argv[1])
