"""Output lines per second end to end, Orchestra with persistence beside a bare relay.

    python -m benchmarks.throughput [--lines 20000] [--line-bytes 80] [--runs 3]

1. Orchestra: one gateway node (a real `orchestra gateway` process), a real `orchestra
   agent` daemon, Redis with its append-only file (`everysec`, as in docker-compose.yml)
   and SQLite. A web watcher (python-socketio's AsyncClient on `/web`) joins a new
   session, then starts a `custom` worker in it that prints `--lines` lines of
   `--line-bytes` bytes as fast as it can. Each line is spooled by the agent, sent
   pipelined, stored once in the session's Redis stream and fed to the watcher.
2. Baseline: the same worker, the same lines and the same watcher through a bare
   python-socketio relay on Sanic (`benchmarks/_relay.py`: no Redis, no spool, no
   checks), with a producer process standing in for the agent that sends each line
   pipelined with an ack, as the agent does.

For each side: lines/s from the first line received to the last, lines/s from the
`worker:start` ack to the last line, and per-line latency (each line carries the worker's
`time.time()` when it was printed; the watcher subtracts it from its arrival time). The
burst's latency is mostly queueing behind the lines printed before; the paced run
(`--paced-lines` at `--paced-rate` lines/s, below both sides' capacity) shows the latency
of one line on its own. Every run must deliver every seq 1..N once and in order, or the
benchmark fails. Both sides stay up throughout and take turns, run after run, so that
both see the same machine; figures are medians of `--runs` runs, after a small warm-up
run each. The defaults take about a minute and a half on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

from orchestra.redis_server import RedisServer, free_port
from tests.support.processes import Deployment, Process, http, wait_for
from tests.support.web import login

PASSWORD = "throughput-bench-password"
WARM_UP_LINES = 500
Start = Callable[[str, list[str]], Awaitable[None]]  # (label, worker argv): starts one run


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


@dataclass
class Run:
    lines: int
    stream_s: float
    """First line received to last line received."""
    total_s: float
    """`worker:start` acknowledged to last line received."""
    latencies_ms: list[float]
    payload_bytes: int

    @property
    def rate(self) -> float:
        return self.lines / self.stream_s

    @property
    def total_rate(self) -> float:
        return self.lines / self.total_s


@dataclass
class Watcher:
    """A web client that records each output line's seq, text and arrival time."""

    namespace: str = "/web"
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    session_id: str = ""
    received: list[tuple[int, str, float]] = field(default_factory=list)
    sample: dict[str, Any] = field(default_factory=dict)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    acked_at: float = 0.0

    def __post_init__(self) -> None:
        self.sio.on("task:stream", self._line, namespace=self.namespace)
        self.sio.on("task:result", self._result, namespace=self.namespace)

    async def _line(self, data: dict[str, Any]) -> None:
        now = time.time()
        if data.get("sessionId") == self.session_id:
            self.received.append((data["seq"], data["data"], now))
            if not self.sample:
                self.sample = data

    async def _result(self, data: dict[str, Any]) -> None:
        if data.get("sessionId") == self.session_id:
            self.finished.set()

    async def connect(self, url: str, auth: dict[str, Any] | None = None) -> None:
        await self.sio.connect(url, namespaces=[self.namespace], auth=auth, wait_timeout=30)

    async def ok(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await self.sio.call(event, payload, namespace=self.namespace, timeout=30)
        if not answer.get("success"):
            raise RuntimeError(f"{event} failed: {answer}")
        data: dict[str, Any] = answer["data"]
        return data

    async def follow(self, session_id: str) -> None:
        """Join a session, with this run's records emptied."""
        self.session_id, self.received, self.sample = session_id, [], {}
        self.finished = asyncio.Event()
        await self.ok("session:join", {"sessionId": session_id})

    async def measure(self, start: Start, label: str, argv: list[str], lines: int) -> Run:
        """Start one run, wait for its result, check every line came once, in order."""
        await start(label, argv)
        try:
            await asyncio.wait_for(self.finished.wait(), timeout=60 + lines / 200)
        except TimeoutError:
            raise RuntimeError(
                f"{label}: no task:result; {len(self.received)} of {lines} lines arrived"
            ) from None
        await self.ok("session:leave", {"sessionId": self.session_id})
        seqs = [seq for seq, _, _ in self.received]
        if seqs != list(range(1, lines + 1)):
            missing = sorted(set(range(1, lines + 1)) - set(seqs))
            raise RuntimeError(
                f"{label}: {len(seqs)} lines received for {lines} printed; missing "
                f"{missing[:10]}, doubled {len(seqs) - len(set(seqs))}, in order "
                f"{seqs == sorted(seqs)}"
            )
        latencies = []
        for seq, text, at in self.received:
            number, stamp, _ = text.split(" ", 2)
            if int(number) != seq:
                raise RuntimeError(f"{label}: seq {seq} carries line {number}")
            latencies.append((at - float(stamp)) * 1000)
        first, last = self.received[0][2], self.received[-1][2]
        size = len(json.dumps(self.sample, separators=(",", ":")))
        return Run(lines, last - first, last - self.acked_at, latencies, size)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@dataclass
class Side:
    """One system under test, set up: its watcher, how to start a run, its results."""

    name: str
    watcher: Watcher
    start: Start
    drops: Callable[[], int] = lambda: 0
    """Times the producer's (the agent's) connection has dropped so far."""
    bursts: list[Run] = field(default_factory=list)
    paced: list[Run] = field(default_factory=list)

    async def run(self, what: str, argv: list[str], lines: int) -> Run:
        return await self.watcher.measure(self.start, f"{self.name} {what}", argv, lines)


async def measure(sides: list[Side], args: argparse.Namespace) -> None:
    """A warm-up run each, then runs taking turns, so both sides see the same machine."""
    burst = worker_command(args.lines, args.line_bytes, 0)
    paced = worker_command(args.paced_lines, args.line_bytes, args.paced_rate)
    warm = worker_command(WARM_UP_LINES, args.line_bytes, 0)
    for side in sides:
        await side.run("warm-up", warm, WARM_UP_LINES)
    for n in range(1, args.runs + 1):
        for side in sides:
            run = await side.run(f"burst {n}", burst, args.lines)
            side.bursts.append(run)
            print(
                f"  run {n}, {side.name}: {run.rate:,.0f} lines/s first to last line "
                f"({run.stream_s:.2f} s), {run.total_rate:,.0f} lines/s from the start ack",
                flush=True,
            )
        for side in sides if args.paced_lines else []:
            side.paced.append(await side.run(f"paced {n}", paced, args.paced_lines))


@asynccontextmanager
async def orchestra_side(root: Path) -> AsyncIterator[Side]:
    """Redis, SQLite, one gateway, one agent daemon and a watcher logged in as its owner."""
    async with RedisServer(data_dir=root / "redis") as redis:  # append-only file, everysec
        deployment = Deployment(root / "orchestra", redis.url, f"sqlite+aiosqlite:///{root}/o.db")
        deployment.root.mkdir(parents=True)
        watcher = Watcher()
        try:
            await deployment.create_user("bench", PASSWORD)
            agent_id, secret_file = await deployment.create_agent("bench-agent", owner="bench")
            gateway = await deployment.start_gateway("throughput")
            agent = deployment.start_agent(agent_id, secret_file, gateway.url)
            token = await login(gateway.url, "bench", PASSWORD)
            await watcher.connect(gateway.url, {"token": token})

            async def online() -> bool:
                agents = (await watcher.ok("agents:list", {}))["agents"]
                return any(a["id"] == agent_id and a["status"] == "online" for a in agents)

            await wait_for(online, what="the agent to be online")

            async def start(label: str, argv: list[str]) -> None:
                status, body = await asyncio.to_thread(
                    http, "POST", gateway.url + "/api/sessions", {"title": label}, token
                )
                if status != 201:
                    raise RuntimeError(f"creating a session failed: {status} {body}")
                await watcher.follow(body["session"]["id"])
                request = {"sessionId": watcher.session_id, "agentId": agent_id}
                await watcher.ok("worker:start", request | {"tool": "custom", "command": argv})
                watcher.acked_at = time.time()

            yield Side("Orchestra", watcher, start, lambda: agent.log().count("disconnected from"))
        except BaseException:
            print(deployment.logs(), file=sys.stderr)
            raise
        finally:
            await watcher.close()
            deployment.stop_all()


def spawn(root: Path, name: str, argv: list[str]) -> Process:
    """A `python -m benchmarks._relay` child process, its output in `<root>/<name>.log`."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._relay", *argv], stdout=log, stderr=subprocess.STDOUT
        )
    return Process(name=name, popen=popen, log_path=log_path)


@asynccontextmanager
async def spawned(root: Path, name: str, *argv: str) -> AsyncIterator[Process]:
    """`spawn`, stopped on the way out; its log's tail printed when something failed."""
    process = spawn(root, name, list(argv))
    try:
        yield process
    except BaseException:
        print(f"----- {name} -----\n{process.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        process.stop()


@asynccontextmanager
async def relay_side(root: Path) -> AsyncIterator[Side]:
    """The bare relay, its producer and a watcher (`benchmarks/_relay.py`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def producers() -> int:
        """How many producers the relay has; -1 while it does not answer."""
        try:
            status, body = http("GET", url + "/health")
        except OSError:
            return -1
        return int(body.get("producers", 0)) if status == 200 else -1

    async with spawned(root, "relay", "serve", "--port", str(port)):
        await wait_for(
            lambda: asyncio.to_thread(lambda: producers() >= 0), what="the relay to answer"
        )
        async with spawned(root, "producer", "produce", "--url", url):
            await wait_for(
                lambda: asyncio.to_thread(lambda: producers() > 0), what="the producer to connect"
            )
            watcher = Watcher()
            await watcher.connect(url)
            runs = 0

            async def start(label: str, argv: list[str]) -> None:
                nonlocal runs
                runs += 1
                await watcher.follow(f"run-{runs}")
                await watcher.ok("worker:start", {"sessionId": watcher.session_id, "command": argv})
                watcher.acked_at = time.time()

            try:
                yield Side("bare relay", watcher, start)
            finally:
                await watcher.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median_of(runs: list[Run], figure: Callable[[Run], float]) -> float:
    return statistics.median(figure(run) for run in runs)


def report(sides: list[Side], drops: dict[str, int], args: argparse.Namespace) -> None:
    rows: list[tuple[str, Callable[[Run], float], str, bool]] = [
        ("lines/s, first line to last line", lambda r: r.rate, ",.0f", False),
        ("lines/s, worker:start ack to last line", lambda r: r.total_rate, ",.0f", False),
        ("burst latency p50, ms", lambda r: percentile(r.latencies_ms, 0.5), ",.0f", False),
        ("burst latency p99, ms", lambda r: percentile(r.latencies_ms, 0.99), ",.0f", False),
        ("payload at the watcher, bytes", lambda r: r.payload_bytes, ",.0f", False),
    ]
    if args.paced_lines:
        pace = f"paced {args.paced_rate:g}/s"
        rows += [
            (f"{pace} latency p50, ms", lambda r: percentile(r.latencies_ms, 0.5), ".1f", True),
            (f"{pace} latency p99, ms", lambda r: percentile(r.latencies_ms, 0.99), ".1f", True),
        ]
    names = [side.name for side in sides]
    print(
        f"\n{args.lines:,} lines of {args.line_bytes} bytes, median of {args.runs} run(s)\n"
        f"{'':42}{names[0]:>12}{names[1]:>12}{'ratio':>8}"
    )
    for label, figure, style, paced in rows:
        values = [median_of(side.paced if paced else side.bursts, figure) for side in sides]
        cells = "".join(f"{format(v, style):>12}" for v in values)
        print(f"{label:42}{cells}{values[0] / values[1]:>8.2f}")
    for name, count in drops.items():
        if count:
            print(
                f"{name}: the agent's connection dropped {count} time(s) during the "
                "runs; what it had not seen acknowledged was sent again (see the logs)"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per burst run")
    parser.add_argument("--line-bytes", type=int, default=80, help="bytes per line, newline in")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paced-lines", type=int, default=500, help="0: no paced runs")
    parser.add_argument("--paced-rate", type=float, default=250.0, help="lines per second")
    args = parser.parse_args()
    if args.line_bytes < 32:
        parser.error("--line-bytes must leave room for the seq and the time stamp (32 or more)")
    root = Path(tempfile.mkdtemp(prefix="orchestra-throughput-"))
    print(f"load average before: {os.getloadavg()[0]:.2f}; logs in {root}", flush=True)
    async with orchestra_side(root) as orchestra, relay_side(root / "relay") as relay:
        await measure([orchestra, relay], args)
        drops = {side.name: side.drops() for side in (orchestra, relay)}
    report([orchestra, relay], drops, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
