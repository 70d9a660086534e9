"""One run of `benchmarks.throughput`: its shape, the worker it starts, the watcher
processes that follow it, and what they measured.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks._processes import open_log
from benchmarks._redis import RedisUsage, RunningRedis


def worker_command(lines: int, line_bytes: int, rate: float) -> list[str]:
    """A worker printing `n stamp xxx…`, `line_bytes` bytes with the newline, flushed each.

    `rate` > 0 paces it (lines per second, on a fixed schedule); 0 prints flat out.
    """
    program = (
        "import sys, time\n"
        f"lines, width, rate = {lines}, {line_bytes - 1}, {rate}\n"
        "pad, out = 'x' * width, sys.stdout\n"
        "begin = time.time()\n"
        "for n in range(1, lines + 1):\n"
        "    if rate:\n"
        "        time.sleep(max(0.0, begin + n / rate - time.time()))\n"
        "    head = f'{n} {time.time():.6f} '\n"
        "    out.write(head + pad[len(head):] + '\\n')\n"
        "    out.flush()\n"
    )
    return [sys.executable, "-c", program]


@dataclass(frozen=True)
class Shape:
    key: str
    title: str
    sessions: int
    watchers: int
    """Watchers per session."""
    lines: int
    """Lines each worker prints."""


@dataclass
class Run:
    lines: int
    """Lines printed, all workers together."""
    deliveries: int
    """Lines received, all watchers together."""
    stream_s: float
    """First line received (at any watcher) to last line received (at any watcher); at
    least a millisecond (a short run may arrive in one frame)."""
    total_s: float
    """First `worker:start` acknowledged to last line received."""
    latencies_ms: list[float]
    bytes_per_line: float
    single_events: int
    framed_lines: int
    frames: int
    cpu_pct: dict[str, float]
    """CPU each process used while the run lasted, in % of one core."""
    redis: RedisUsage | None = None
    """What each Redis server did while the run lasted (`Side.redis`)."""

    @property
    def rate(self) -> float:
        return self.lines / self.stream_s

    @property
    def delivery_rate(self) -> float:
        return self.deliveries / self.stream_s

    @property
    def total_rate(self) -> float:
        return self.lines / self.total_s


@dataclass
class Side:
    """One system under test, set up: where its watchers connect, how to start a run."""

    name: str
    url: str
    auth: dict[str, Any] | None
    batch: str
    """How its watchers join: `auto`, `on` (frames required) or `off` (PROTOCOL 1.0)."""
    root: Path
    new_sessions: Callable[[str, int], Awaitable[list[str]]]
    start_worker: Callable[[str, list[str]], Awaitable[float]]
    """Starts one worker in a session; the time its `worker:start` was acknowledged."""
    processes: dict[str, psutil.Process | list[psutil.Process]]
    """Its processes by role (`server`, `sender`, `Redis`), for their CPU time (a role's
    processes added up)."""
    drops: Callable[[], int] = lambda: 0
    """Times the producer's (the agent's) connection has dropped so far."""
    runs: dict[str, list[Run]] = field(default_factory=dict)
    watch_urls: list[str] = field(default_factory=list)
    """Where the watchers connect, in turn (starting with the second: the first is where
    the agent is); empty: `url`."""
    redis: RunningRedis | None = None
    """Its Redis, whose servers' commands and CPU each run reads."""

    def cpu(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for role, processes in self.processes.items():
            used[role] = 0.0
            for process in processes if isinstance(processes, list) else [processes]:
                times = process.cpu_times()
                used[role] += times.user + times.system
        return used


class WatcherGroup:
    """Watcher processes (`benchmarks._watchers`) following one run's sessions."""

    def __init__(self, side: Side, watchers: list[dict[str, Any]], processes: int) -> None:
        self.side = side
        self.watchers = watchers
        self.count = max(1, min(processes, len(watchers)))
        self.children: list[asyncio.subprocess.Process] = []
        self.outs: list[Path] = []
        self.timeout_s = 60 + sum(w["lines"] for w in watchers) / 200
        self.log_path = side.root / "watchers.log"

    async def start(self) -> None:
        """Spawn the processes and wait until every watcher has joined its session."""
        folder = Path(tempfile.mkdtemp(prefix="watchers-", dir=self.side.root))
        self.log_path = folder / "watchers.log"
        for n in range(self.count):
            spec = {
                "url": self.side.url,
                "auth": self.side.auth,
                "batch": self.side.batch,
                "timeoutS": self.timeout_s,
                "out": str(folder / f"out-{n}.json"),
                "watchers": self.watchers[n :: self.count],
            }
            spec_path = folder / f"spec-{n}.json"
            spec_path.write_text(json.dumps(spec))
            self.outs.append(Path(spec["out"]))
            with open_log(self.log_path) as log:
                self.children.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "benchmarks._watchers",
                        str(spec_path),
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                    )
                )
        await self._all_say("ready", 120)

    async def _all_say(self, word: str, timeout_s: float) -> None:
        async def says(child: asyncio.subprocess.Process) -> None:
            assert child.stdout is not None
            line = await child.stdout.readline()
            if line.decode().strip() != word:
                await child.wait()
                raise RuntimeError(
                    f"a watcher process ended before saying {word!r} (exit {child.returncode}):"
                    f"\n{self.log_path.read_text(errors='replace')[-3000:]}"
                )

        try:
            await asyncio.wait_for(asyncio.gather(*(says(c) for c in self.children)), timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"watcher processes did not say {word!r} in {timeout_s:.0f} s"
            ) from None

    async def results(self) -> tuple[list[dict[str, Any]], float]:
        """Every watcher's record and the CPU seconds the processes used for the run."""
        await self._all_say("done", self.timeout_s + 60)
        records: list[dict[str, Any]] = []
        cpu_s = 0.0
        for out in self.outs:
            body = json.loads(out.read_text())
            records += body["watchers"]
            cpu_s += body["cpuS"]
        return records, cpu_s

    async def close(self) -> None:
        for child in self.children:
            try:
                await asyncio.wait_for(child.wait(), 15)
            except TimeoutError:
                child.kill()
                await child.wait()


async def run_once(side: Side, label: str, shape: Shape, argv: list[str], procs: int) -> Run:
    """Start one run of `shape` on `side`; wait for it; check what every watcher got."""
    sessions = await side.new_sessions(label, shape.sessions)
    urls = side.watch_urls or [side.url]
    watchers = [
        {"sessionId": s, "lines": shape.lines, "url": urls[(n + 1) % len(urls)]}
        for n, s in enumerate(sessions * shape.watchers)
    ]
    group = WatcherGroup(side, watchers, procs)
    usage = None
    try:
        await group.start()
        before = await side.redis.snapshot() if side.redis else None
        cpu_before, began = side.cpu(), time.time()
        acks = await asyncio.gather(*(side.start_worker(s, argv) for s in sessions))
        records, watcher_cpu_s = await group.results()
        cpu_after, ended = side.cpu(), time.time()
        if side.redis and before:
            usage = await side.redis.since(before)
    finally:
        await group.close()
    errors = [r["error"] for r in records if r["error"]]
    if errors:
        raise RuntimeError(f"{side.name} {label}: " + "; ".join(errors[:5]))
    latencies = [latency for r in records for latency in r["latenciesMs"]]
    first = min(r["first"] for r in records)
    last = max(r["last"] for r in records)
    cpu_pct = {
        role: 100 * (cpu_after[role] - cpu_before[role]) / (ended - began) for role in cpu_before
    }
    cpu_pct["watchers"] = 100 * watcher_cpu_s / (ended - began)
    return Run(
        lines=shape.lines * shape.sessions,
        deliveries=sum(r["count"] for r in records),
        stream_s=max(last - first, 0.001),  # a short run may come in one frame
        total_s=last - min(acks),
        latencies_ms=latencies,
        bytes_per_line=statistics.median(r["bytesPerLine"] for r in records),
        single_events=sum(r["singleEvents"] for r in records),
        framed_lines=sum(r["framedLines"] for r in records),
        frames=sum(r["frames"] for r in records),
        cpu_pct=cpu_pct,
        redis=usage,
    )
