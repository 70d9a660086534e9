"""Output lines per second end to end, Orchestra with persistence beside a bare relay.

    python -m benchmarks.throughput [--shape 1|10w|20s|all] [--lines 20000] [--runs 3]

1. Orchestra: one gateway node (a real `orchestra gateway` process), a real `orchestra
   agent` daemon, Redis with its append-only file (`everysec`, as in docker-compose.yml)
   and SQLite. Web watchers (python-socketio's AsyncClient on `/web`) join new sessions,
   then `custom` workers started in them print `--lines` lines of `--line-bytes` bytes as
   fast as they can. Each line is spooled by the agent, sent to the gateway, stored once
   in the session's Redis stream and fed to every watcher of the session.
2. Baseline: the same workers, lines and watchers through a bare python-socketio relay
   on Sanic (`benchmarks/_relay.py`: no Redis, no spool, no checks), with a producer
   process standing in for the agent that sends each line pipelined with an ack, and the
   relay emitting each line to the session's room.

Shapes (`--shape`, default `all`):

- `1`: one worker, one watcher.
- `10w`: one worker, `--watchers` (10) watchers of its one session (one room).
- `20s`: `--sessions` (20) sessions at once, each with its own worker and watcher; the
  one agent daemon runs them all (its `ORCHESTRA_AGENT_MAX_CONCURRENCY` is set to the
  number of sessions), as the one producer does for the relay. Each worker prints
  `--session-lines` lines (by default `--lines` divided among the sessions).
- paced (with shape `1`): one worker, one watcher, the worker printing at half the
  lines/s Orchestra reached in this run's shape-1 bursts (`--paced-rate` to choose), for
  `--paced-s` seconds: the latency of a line with no queue before it.

Watchers run in processes of their own (`benchmarks/_watchers.py`; `--watcher-processes`
of them at most), apart from the gateway's or the relay's process and from this driver,
so the server under test shares its CPU with none of them in-process. An Orchestra
watcher joins with `batch: true` (PROTOCOL.md 1.1) and reads the `session:events` frames
of a gateway that sends them, or one event per line from one that does not; the report
says which it got (`--batch` requires frames, `--no-batch` joins without asking). Like a
browser, it lists no compression in its handshake unless `--compression` says so. The
relay's watchers get one emit per line.

For each run: lines/s from the first line received (at any watcher) to the last (at the
last watcher), lines/s from the `worker:start` ack (the first one) to the last line,
per-line latency (each line carries the worker's `time.time()` when it was printed; the
watcher subtracts it from its arrival time) and the CPU each process used. Every run
must deliver seq 1..N once each and in order at every watcher, each seq carrying its own
line, or the benchmark fails. Both sides stay up throughout and take turns, run after
run (the order swapping every run), so both see the same machine; figures are medians
of `--runs` runs, after a small warm-up run each.
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
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psutil
import socketio

from orchestra.redis_server import RedisServer, free_port
from tests.support.processes import Deployment, Process, http, wait_for
from tests.support.web import login

PASSWORD = "throughput-bench-password"
WARM_UP_LINES = 500
WEB = "/web"


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
    processes: dict[str, psutil.Process]
    """Its processes by role (`server`, `sender`, `Redis`), for their CPU time."""
    drops: Callable[[], int] = lambda: 0
    """Times the producer's (the agent's) connection has dropped so far."""
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        used = {}
        for role, process in self.processes.items():
            times = process.cpu_times()
            used[role] = times.user + times.system
        return used


def append(path: Path) -> BinaryIO:
    """A log file opened for appending (a child process's output goes there)."""
    return open(path, "ab")


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
            with append(self.log_path) as log:
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
    watchers = [{"sessionId": s, "lines": shape.lines} for s in sessions] * shape.watchers
    group = WatcherGroup(side, watchers, procs)
    try:
        await group.start()
        cpu_before, began = side.cpu(), time.time()
        acks = await asyncio.gather(*(side.start_worker(s, argv) for s in sessions))
        records, watcher_cpu_s = await group.results()
        cpu_after, ended = side.cpu(), time.time()
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
    )


async def measure(
    sides: list[Side], key: str, shape: Shape, argv: list[str], args: argparse.Namespace
) -> None:
    """A warm-up run each, then `--runs` runs taking turns (the order swapping each run)."""
    warm = Shape(
        shape.key,
        shape.title,
        shape.sessions,
        shape.watchers,
        max(50, WARM_UP_LINES // shape.sessions),
    )
    for side in sides:
        await run_once(
            side,
            f"{key} warm-up",
            warm,
            worker_command(warm.lines, args.line_bytes, 0),
            args.watcher_processes,
        )
    for n in range(1, args.runs + 1):
        for side in sides if n % 2 else sides[::-1]:
            run = await run_once(side, f"{key} {n}", shape, argv, args.watcher_processes)
            side.runs.setdefault(key, []).append(run)
            cpu = ", ".join(f"{role} {pct:.0f}%" for role, pct in run.cpu_pct.items())
            print(
                f"  {key} run {n}, {side.name}: {run.rate:,.0f} lines/s first to last line "
                f"({run.stream_s:.2f} s), {run.total_rate:,.0f} lines/s from the start ack; "
                f"latency p50 {percentile(run.latencies_ms, 0.5):,.1f} ms; CPU {cpu}",
                flush=True,
            )


@asynccontextmanager
async def orchestra_side(root: Path, args: argparse.Namespace) -> AsyncIterator[Side]:
    """Redis, SQLite, one gateway, one agent daemon and a control client of its owner."""
    async with RedisServer(data_dir=root / "redis") as redis:  # append-only file, everysec
        deployment = Deployment(root / "orchestra", redis.url, f"sqlite+aiosqlite:///{root}/o.db")
        # The agent's event rate limit (2,000/s sustained by default) is a policy, not a
        # capacity: out of the way here, as the per-user request limit is.
        deployment.extra_env |= {
            "ORCHESTRA_AGENT_RATE_LIMIT_PER_S": "1000000",
            "ORCHESTRA_AGENT_RATE_LIMIT_BURST": "1000000",
        }
        deployment.root.mkdir(parents=True)
        control = socketio.AsyncClient(reconnection=False)
        try:
            await deployment.create_user("bench", PASSWORD)
            agent_id, secret_file = await deployment.create_agent("bench-agent", owner="bench")
            gateway = await deployment.start_gateway("throughput")
            concurrency = str(max(4, args.sessions))
            agent = deployment.start_agent(
                agent_id,
                secret_file,
                gateway.url,
                env={"ORCHESTRA_AGENT_MAX_CONCURRENCY": concurrency},
            )
            token = await login(gateway.url, "bench", PASSWORD)
            await control.connect(
                gateway.url, namespaces=[WEB], auth={"token": token}, wait_timeout=30
            )

            async def ok(event: str, payload: dict[str, Any]) -> dict[str, Any]:
                answer = await control.call(event, payload, namespace=WEB, timeout=60)
                if not answer.get("success"):
                    raise RuntimeError(f"{event} failed: {answer}")
                data: dict[str, Any] = answer["data"]
                return data

            async def online() -> bool:
                agents = (await ok("agents:list", {}))["agents"]
                return any(a["id"] == agent_id and a["status"] == "online" for a in agents)

            await wait_for(online, what="the agent to be online")

            async def new_sessions(label: str, count: int) -> list[str]:
                made = []
                for n in range(count):
                    status, body = await asyncio.to_thread(
                        http,
                        "POST",
                        gateway.url + "/api/sessions",
                        {"title": f"{label} {n}"},
                        token,
                    )
                    if status != 201:
                        raise RuntimeError(f"creating a session failed: {status} {body}")
                    made.append(body["session"]["id"])
                return made

            async def start_worker(session_id: str, argv: list[str]) -> float:
                request = {"sessionId": session_id, "agentId": agent_id, "tool": "custom"}
                await ok("worker:start", request | {"command": argv})
                return time.time()

            batch = {None: "auto", True: "on", False: "off"}[args.batch]
            auth: dict[str, Any] = {"token": token}
            if args.compression != "none":
                auth["compression"] = [args.compression]
            yield Side(
                "Orchestra",
                gateway.url,
                auth,
                batch,
                root,
                new_sessions,
                start_worker,
                {
                    "server": psutil.Process(gateway.popen.pid),
                    "sender": psutil.Process(agent.popen.pid),
                    "Redis": psutil.Process(redis.pid),
                },
                lambda: agent.log().count("disconnected from"),
            )
        except BaseException:
            print(deployment.logs(), file=sys.stderr)
            raise
        finally:
            if control.connected:
                await control.disconnect()
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
    """The bare relay, its producer and a control client (`benchmarks/_relay.py`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def producers() -> int:
        """How many producers the relay has; -1 while it does not answer."""
        try:
            status, body = http("GET", url + "/health")
        except OSError:
            return -1
        return int(body.get("producers", 0)) if status == 200 else -1

    async with spawned(root, "relay", "serve", "--port", str(port)) as relay:
        await wait_for(
            lambda: asyncio.to_thread(lambda: producers() >= 0), what="the relay to answer"
        )
        async with spawned(root, "producer", "produce", "--url", url) as producer:
            await wait_for(
                lambda: asyncio.to_thread(lambda: producers() > 0), what="the producer to connect"
            )
            control = socketio.AsyncClient(reconnection=False)
            await control.connect(url, namespaces=[WEB], wait_timeout=30)
            made = 0

            async def new_sessions(label: str, count: int) -> list[str]:
                nonlocal made
                made += 1
                return [f"run-{made}-{n}" for n in range(count)]

            async def start_worker(session_id: str, argv: list[str]) -> float:
                request = {"sessionId": session_id, "command": argv}
                answer = await control.call("worker:start", request, namespace=WEB, timeout=60)
                if not answer.get("success"):
                    raise RuntimeError(f"worker:start failed: {answer}")
                return time.time()

            try:
                yield Side(
                    "bare relay",
                    url,
                    None,
                    "off",
                    root,
                    new_sessions,
                    start_worker,
                    {
                        "server": psutil.Process(relay.popen.pid),
                        "sender": psutil.Process(producer.popen.pid),
                    },
                )
            finally:
                await control.disconnect()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median_of(runs: list[Run], figure: Callable[[Run], float | None]) -> float | None:
    values = [v for v in (figure(run) for run in runs) if v is not None]
    return statistics.median(values) if values else None


Row = tuple[str, Callable[[Run], float | None], str]


def latency_rows(percentiles: list[float]) -> list[Row]:
    def at(fraction: float) -> Callable[[Run], float]:
        return lambda run: percentile(run.latencies_ms, fraction)

    return [(f"latency p{100 * f:g}, ms", at(f), ",.1f") for f in percentiles]


def cpu_rows() -> list[Row]:
    def used(role: str) -> Callable[[Run], float | None]:
        return lambda run: run.cpu_pct.get(role)

    roles = {
        "server": "gateway / relay process",
        "sender": "agent / producer process",
        "Redis": "Redis",
        "watchers": "watcher processes",
    }
    return [(f"CPU, {what}, % of a core", used(role), ".0f") for role, what in roles.items()]


def table(sides: list[Side], key: str, heading: str, rows: list[Row]) -> None:
    """A markdown table: one row a figure, the two sides and their ratio."""
    runs = [side.runs.get(key, []) for side in sides]
    print(f"\n{heading}\n")
    print(f"| what | {' | '.join(side.name for side in sides)} | Orchestra / relay |")
    print("|---|" + "---|" * (len(sides) + 1))
    for label, figure, style in rows:
        values = [median_of(r, figure) for r in runs]
        cells = ["" if v is None else format(v, style) for v in values]
        ratio = ""
        if len(values) == 2 and values[0] is not None and values[1]:
            ratio = f"{values[0] / values[1]:.2f}"
        print(f"| {label} | {' | '.join(cells)} | {ratio} |")


def protocol_seen(side: Side) -> str:
    runs = [run for runs in side.runs.values() for run in runs]
    framed = sum(run.framed_lines for run in runs)
    frames = sum(run.frames for run in runs)
    single = sum(run.single_events for run in runs)
    how = {"auto": "with `batch: true`", "on": "with `batch: true`", "off": "without `batch`"}
    if framed and single:
        got = f"{framed:,} lines in {frames:,} `session:events` frames and {single:,} alone"
    elif framed:
        got = f"`session:events` frames, {framed / max(1, frames):,.1f} lines a frame on average"
    else:
        got = "one event per line"
    return f"{side.name}: watchers joined {how[side.batch]}; got {got}"


def report(sides: list[Side], shapes: dict[str, Shape], args: argparse.Namespace) -> None:
    place = (
        f"in {args.watcher_processes} process(es) at most, apart from the gateway's or "
        "the relay's process and from this driver"
    )
    print(
        f"\n{args.runs} run(s) of each side per shape, medians; lines of {args.line_bytes} "
        f"bytes. Watchers: python-socketio AsyncClients {place}."
    )
    for side in sides:
        print(protocol_seen(side))
    for key, shape in shapes.items():
        every = " at every watcher" if shape.watchers > 1 else ""
        rows: list[Row] = [
            (f"lines/s, first line to last line{every}", lambda r: r.rate, ",.0f"),
        ]
        if shape.watchers > 1:
            rows.append(("lines delivered/s, all watchers", lambda r: r.delivery_rate, ",.0f"))
        rows += [
            ("lines/s, `worker:start` ack to last line", lambda r: r.total_rate, ",.0f"),
            *[(f"burst {label}", f, s) for label, f, s in latency_rows([0.5, 0.99])],
            ("JSON bytes per line at a watcher, as sent", lambda r: r.bytes_per_line, ",.0f"),
            *cpu_rows(),
        ]
        heading = f"### {shape.title}: {shape.lines:,} lines per worker"
        table(sides, key, heading, rows)
        if key == "1" and "paced" in sides[0].runs:
            paced = sides[0].runs["paced"][0]
            heading = (
                f"### paced, 1 worker, 1 watcher: {args.paced_rate_used:,.0f} lines/s "
                f"({args.paced_why}), {paced.lines:,} lines"
            )
            rows = [
                *latency_rows([0.5, 0.95, 0.99]),
                ("lines/s, first line to last line", lambda r: r.rate, ",.0f"),
                *cpu_rows(),
            ]
            table(sides, "paced", heading, rows)
            for side in sides[1:]:
                own = median_of(side.runs["1"], lambda r: r.rate) or 0.0
                if own and args.paced_rate_used > own:
                    print(
                        f"\nThe pace is above the {side.name}'s own burst rate ({own:,.0f} "
                        f"lines/s): its latency at this pace is a queue growing all run."
                    )
    for side in sides:
        if count := side.drops():
            print(
                f"{side.name}: the agent's connection dropped {count} time(s) during the "
                "runs; what it had not seen acknowledged was sent again (see the logs)"
            )


def check_batch(side: Side) -> None:
    """`--batch`: the gateway must have sent `session:events` frames."""
    if side.batch == "on" and not any(r.frames for runs in side.runs.values() for r in runs):
        raise RuntimeError("--batch: the gateway sent no session:events frame (it does not batch)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["1", "10w", "20s", "all"], default="all")
    parser.add_argument("--lines", type=int, default=20_000, help="lines per worker, 1 and 10w")
    parser.add_argument("--line-bytes", type=int, default=80, help="bytes per line, newline in")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=10, help="watchers of the session, 10w")
    parser.add_argument("--sessions", type=int, default=20, help="sessions at once, 20s")
    parser.add_argument(
        "--session-lines", type=int, help="lines per worker in 20s (default: --lines / --sessions)"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="lines/s of the paced runs (default: half Orchestra's shape-1 rate); 0: none",
    )
    parser.add_argument("--paced-s", type=float, default=5.0, help="seconds of a paced run")
    parser.add_argument("--watcher-processes", type=int, default=2)
    parser.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        help="Orchestra's watchers join with batch: true and must get session:events frames "
        "(--no-batch: they join without it; default: they ask, and take what comes)",
    )
    parser.add_argument(
        "--compression",
        choices=["none", "zstd", "gzip"],
        default="none",
        help="what Orchestra's watchers list in their handshake (default: nothing, as a "
        "browser; frames larger than the gateway's threshold then come compressed)",
    )
    args = parser.parse_args()
    if args.line_bytes < 32:
        parser.error("--line-bytes must leave room for the seq and the time stamp (32 or more)")
    keys = ["1", "10w", "20s"] if args.shape == "all" else [args.shape]
    session_lines = args.session_lines or max(100, args.lines // args.sessions)
    every = {
        "1": Shape("1", "1 worker, 1 watcher", 1, 1, args.lines),
        "10w": Shape("10w", f"1 worker, {args.watchers} watchers of its session", 1, args.watchers,
                     args.lines),
        "20s": Shape("20s", f"{args.sessions} sessions at once, a worker and a watcher each",
                     args.sessions, 1, session_lines),
    }  # fmt: skip
    shapes = {key: every[key] for key in keys}
    root = Path(tempfile.mkdtemp(prefix="orchestra-throughput-"))
    print(f"load average before: {os.getloadavg()[0]:.2f}; logs in {root}", flush=True)
    async with AsyncExitStack() as stack:
        orchestra = await stack.enter_async_context(orchestra_side(root, args))
        relay = await stack.enter_async_context(relay_side(root / "relay"))
        sides = [orchestra, relay]
        for key, shape in shapes.items():
            print(f"{shape.title}:", flush=True)
            argv = worker_command(shape.lines, args.line_bytes, 0)
            await measure(sides, key, shape, argv, args)
            if key == "1" and args.paced_rate != 0:
                await paced(sides, args)
        for side in sides:
            check_batch(side)
    report(sides, shapes, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


async def paced(sides: list[Side], args: argparse.Namespace) -> None:
    """Shape 1 at a rate below saturation: latency without a queue."""
    if args.paced_rate:
        args.paced_rate_used, args.paced_why = args.paced_rate, "--paced-rate"
    else:
        saturated = median_of(sides[0].runs["1"], lambda r: r.rate) or 0.0
        args.paced_rate_used = saturated / 2
        args.paced_why = f"half of Orchestra's {saturated:,.0f} lines/s above"
    lines = max(100, round(args.paced_rate_used * args.paced_s))
    shape = Shape("paced", "paced", 1, 1, lines)
    argv = worker_command(lines, args.line_bytes, args.paced_rate_used)
    print(f"paced at {args.paced_rate_used:,.0f} lines/s, {lines:,} lines:", flush=True)
    for n in range(1, args.runs + 1):
        for side in sides if n % 2 else sides[::-1]:
            run = await run_once(side, f"paced {n}", shape, argv, 1)
            side.runs.setdefault("paced", []).append(run)
            print(
                f"  paced run {n}, {side.name}: latency p50 "
                f"{percentile(run.latencies_ms, 0.5):.1f} ms, p99 "
                f"{percentile(run.latencies_ms, 0.99):.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
