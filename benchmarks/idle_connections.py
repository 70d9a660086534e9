"""Idle `/web` connections on one gateway node: how fast they connect, what each costs
in the gateway's memory, and that they stay connected. Beside it, the same connections
to a bare python-socketio server on Sanic (`benchmarks/_relay.py serve`), in the same run.

    python -m benchmarks.idle_connections [--connections 10000] [--hold-s 30]
                                          [--tracemalloc] [--sides orchestra,relay]

For each side, one server process (Orchestra: one `orchestra gateway` with Redis and
SQLite, and `--users` users, 25 connections each by default, under the gateway's cap of
32 sockets per user; with fewer users `ORCHESTRA_MAX_SOCKETS_PER_USER` is raised to fit)
and `--client-processes` client processes (`benchmarks/_idle_clients.py`, by default one
per 2,500 connections), each holding its share of the connections: a websocket each,
Engine.IO 4 and Socket.IO 5 written by hand (python-socketio's AsyncClient is too heavy
for thousands per process), the CONNECT to `/web` carrying an access token of one of the
users, in turn. The clients start together; the report gives the wall time from the
first connection begun to the last one connected, the rate, and each handshake's time.
The server's RSS (psutil) is read before (after a warm-up of a few connections opened
and closed), with every connection open, and after `--hold-s` seconds of holding them;
RSS per connection is (after the hold - before) / connections.
The hold must outlast Engine.IO's ping interval (25 s): every connection must still be
open at its end and have answered at least one ping, or the benchmark fails.

`--tracemalloc` adds a pass per side with the server run under tracemalloc
(`benchmarks/_traced.py`) and `--trace-connections` connections, and reports where the
Python memory of a connection goes: by the package that asked for it (the innermost
frame outside the standard library), and the allocation lines that cost most. Tracing
sees Python's allocators only: what C code allocates by itself (uvloop's buffers, say)
is the rest of the RSS.

The benchmark raises its open-file limit (RLIMIT_NOFILE) to the hard limit, and the
servers and clients it starts inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import linecache
import math
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psutil
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from benchmarks._idle_clients import open_many, websocket_url
from orchestra import keys
from orchestra.redis_server import RedisServer, free_port
from tests.support.processes import Deployment, Process, http, wait_for

PASSWORD = "idle-bench-password"
WARM_UP = 20
PER_CLIENT_PROCESS = 2_500
PER_USER = 25
"""Connections per user by default: under the gateway's default cap of sockets per user."""
DEFAULT_SOCKETS_PER_USER = 32
MIB = 1024 * 1024


@dataclass
class Server:
    """A server under test, started: where to connect, its process, how it counts."""

    name: str
    url: str
    tokens: list[str]
    """Access tokens the connections carry, in turn (none: no auth)."""
    users: int
    process: psutil.Process
    connected: Callable[[], Awaitable[int]]
    """How many `/web` sockets the server itself counts as open."""
    traced: Path | None = None
    """tracemalloc's folder (`benchmarks/_traced.py`), when the server runs traced."""

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    async def _ask(self, name: str) -> Path:
        assert self.traced is not None
        await asyncio.to_thread((self.traced / f"take-{name}").write_text, "")
        done = self.traced / f"{name}.done"
        await wait_for(done.exists, timeout_s=600, interval_s=0.2, what=f"tracemalloc {name}")
        return self.traced / f"{name}.snapshot"

    async def start_tracing(self) -> None:
        """Start tracemalloc in the server, if it runs under `benchmarks._traced`."""
        if self.traced is not None:
            await self._ask("start")

    async def snapshot(self, name: str) -> tracemalloc.Snapshot | None:
        """A tracemalloc snapshot of the server, if it runs traced."""
        if self.traced is None:
            return None
        path = await self._ask(name)
        return await asyncio.to_thread(tracemalloc.Snapshot.load, str(path))


@dataclass
class Outcome:
    name: str
    connections: int
    users: int
    wall_s: float
    took_ms: list[float]
    rss_before: int
    rss_connected: int
    rss_held: int
    rss_closed: int
    counted: int
    """Open `/web` sockets the server counted with every client connected."""
    still_open: int
    min_pings: int
    hold_cpu_pct: float
    open_files: int
    closed: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    layers: dict[str, int] = field(default_factory=dict)
    top_lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.connections / self.wall_s

    @property
    def per_connection(self) -> float:
        return (self.rss_held - self.rss_before) / self.connections


# -- servers -------------------------------------------------------------------------


def open_files_limit(needed: int) -> int:
    """This process's soft RLIMIT_NOFILE, raised to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(
            f"warning: the open-file limit is {soft} (hard), fewer than the {needed} a "
            "process needs here; raise it (ulimit -Hn, limits.conf) or use fewer connections",
            file=sys.stderr,
        )
    return soft


def raise_child_limit() -> None:
    """preexec_fn of the server processes: open files up to the hard limit (inherited
    already; this makes it explicit where a caller's soft limit was lower)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(
    root: Path, name: str, module: list[str], env: dict[str, str] | None, traced: Path | None
) -> Process:
    """`python -m <module...>` as a child, under tracemalloc when `traced` is a folder."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{name}.log"
    wrapper = ["benchmarks._traced", str(traced)] if traced else []
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", *wrapper, *module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_child_limit,
        )
    return Process(name=name, popen=popen, log_path=log_path)


async def answers(url: str, process: Process) -> bool:
    if not process.alive():
        raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
    try:
        status, _ = await asyncio.to_thread(http, "GET", url + "/health")
    except OSError:
        return False
    return status == 200


@asynccontextmanager
async def orchestra_server(
    root: Path, connections: int, users: int, traced: Path | None
) -> AsyncIterator[Server]:
    """Redis, SQLite and one gateway process; `users` users, signed in, whose sockets
    the gateway counts (each user's slot set in Redis)."""
    async with RedisServer(data_dir=root / "redis", appendonly=False) as redis:
        deployment = Deployment(root, redis.url, f"sqlite+aiosqlite:///{root}/o.db")
        # The access tokens must outlive the run.
        deployment.extra_env["ORCHESTRA_ACCESS_TOKEN_TTL_S"] = "7200"
        per_user = math.ceil(connections / users)
        if per_user > DEFAULT_SOCKETS_PER_USER:  # the cap must not bite
            deployment.extra_env["ORCHESTRA_MAX_SOCKETS_PER_USER"] = str(per_user + 100)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        client = Redis.from_url(redis.url, decode_responses=True)
        try:
            names = [f"idle-{n}" for n in range(users)]
            async with deployment.store() as store:
                gate = asyncio.Semaphore(4)

                async def create(name: str) -> None:
                    async with gate:
                        await store.create_user(name, PASSWORD)

                await asyncio.gather(*(create(name) for name in names))
            port = free_port()
            gateway = start_server(
                root,
                "gateway",
                ["orchestra", "gateway", "--host", "127.0.0.1", "--port", str(port),
                 "--node-id", "idle"],
                deployment.env,
                traced,
            )  # fmt: skip
            deployment.processes.append(gateway)
            url = f"http://127.0.0.1:{port}"
            await wait_for(lambda: answers(url, gateway), timeout_s=180, what="the gateway")
            signed_in = await sign_in(url, names)
            slot_sets = [keys.socket_slots("user", user_id) for user_id, _ in signed_in]

            async def counted() -> int:
                async with client.pipeline(transaction=False) as pipe:
                    for key in slot_sets:
                        pipe.zcard(key)
                    return sum(int(n) for n in await pipe.execute())

            yield Server(
                "Orchestra gateway",
                url,
                [token for _, token in signed_in],
                users,
                psutil.Process(gateway.popen.pid),
                counted,
                traced,
            )
        except BaseException:
            print(deployment.logs(), file=sys.stderr)
            raise
        finally:
            await client.aclose()
            deployment.stop_all()


async def sign_in(url: str, names: list[str]) -> list[tuple[str, str]]:
    """Each user's id and access token (`POST /api/auth/login`, a few at a time)."""
    gate = asyncio.Semaphore(4)

    async def login(name: str) -> tuple[str, str]:
        async with gate:
            status, body = await asyncio.to_thread(
                http, "POST", url + "/api/auth/login", {"username": name, "password": PASSWORD}
            )
        if status != 200:
            raise RuntimeError(f"login of {name} failed: {status} {body}")
        return str(body["user"]["id"]), str(body["accessToken"])

    return await asyncio.gather(*(login(name) for name in names))


@asynccontextmanager
async def bare_server(root: Path, traced: Path | None) -> AsyncIterator[Server]:
    """python-socketio's AsyncServer on Sanic, nothing else (`benchmarks/_relay.py`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    relay = start_server(
        root, "relay", ["benchmarks._relay", "serve", "--port", str(port)], None, traced
    )
    try:
        await wait_for(lambda: answers(url, relay), timeout_s=120, what="the relay")

        async def counted() -> int:
            _, body = await asyncio.to_thread(http, "GET", url + "/health")
            return int(body.get("web", -1))

        yield Server(
            "bare python-socketio", url, [], 0, psutil.Process(relay.popen.pid), counted, traced
        )
    except BaseException:
        print(f"----- relay -----\n{relay.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        relay.stop()


# -- clients ---------------------------------------------------------------------------


class Clients:
    """Client processes (`benchmarks._idle_clients`), driven a line at a time."""

    def __init__(self, root: Path, server: Server, connections: int, args: argparse.Namespace):
        self.root = root
        self.server = server
        processes = args.client_processes or math.ceil(connections / PER_CLIENT_PROCESS)
        self.processes = max(1, min(processes, connections))
        share, extra = divmod(connections, self.processes)
        self.counts = [share + (n < extra) for n in range(self.processes)]
        self.in_flight = max(1, args.in_flight // self.processes)
        self.children: list[asyncio.subprocess.Process] = []

    async def start(self) -> list[dict[str, Any]]:
        log_path = self.root / "clients.log"
        tokens = self.server.tokens
        first = 0
        for n, count in enumerate(self.counts):
            argv = ["--url", self.server.url, "--count", str(count)]
            argv += ["--in-flight", str(self.in_flight)]
            if tokens:  # the connections of all the processes take the tokens in turn
                mine = [tokens[(first + k) % len(tokens)] for k in range(count)]
                tokens_file = self.root / f"tokens-{n}.json"
                await asyncio.to_thread(tokens_file.write_text, json.dumps(mine))
                argv += ["--tokens-file", str(tokens_file)]
            first += count
            with open_log(log_path) as log:
                self.children.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "benchmarks._idle_clients",
                        *argv,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                        limit=1 << 24,
                    )
                )
        return await self.answers(timeout_s=120)

    async def tell(self, command: str, timeout_s: float) -> list[dict[str, Any]]:
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(f"{command}\n".encode())
            await child.stdin.drain()
        return await self.answers(timeout_s)

    async def answers(self, timeout_s: float) -> list[dict[str, Any]]:
        async def answer(child: asyncio.subprocess.Process) -> dict[str, Any]:
            assert child.stdout is not None
            line = await child.stdout.readline()
            if not line:
                log = (self.root / "clients.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"a client process ended (exit {child.returncode}):\n{log}")
            body: dict[str, Any] = json.loads(line)
            return body

        return await asyncio.wait_for(
            asyncio.gather(*(answer(c) for c in self.children)), timeout_s
        )

    async def stop(self) -> None:
        for child in self.children:
            if child.returncode is None:
                try:
                    await asyncio.wait_for(child.wait(), 30)
                except TimeoutError:
                    child.kill()
                    await child.wait()


def open_log(path: Path) -> BinaryIO:
    """A log opened for appending: a child process writes to its own copy."""
    return open(path, "ab")


# -- one pass --------------------------------------------------------------------------


async def ping_interval_s(url: str) -> float:
    """Engine.IO's ping interval, from the open packet of one connection."""
    async with connect(websocket_url(url), proxy=None) as ws:
        opened = await ws.recv()
    return float(json.loads(str(opened)[1:])["pingInterval"]) / 1000


async def hold(server: Server, hold_s: float) -> None:
    """Wait `hold_s`, saying every 10 s how the server's RSS goes."""
    ends = time.monotonic() + hold_s
    while (left := ends - time.monotonic()) > 0:
        await asyncio.sleep(min(10.0, left))
        rss = server.rss()
        print(
            f"    holding: {hold_s - max(0.0, ends - time.monotonic()):.0f} s, "
            f"RSS {rss / MIB:,.1f} MiB",
            flush=True,
        )


async def one_pass(
    root: Path, server: Server, connections: int, args: argparse.Namespace
) -> Outcome:
    """Connect `connections` idle clients to `server`, hold them, measure, close them."""
    problems: list[str] = []
    interval_s = await ping_interval_s(server.url)
    if args.hold_s <= interval_s:
        problems.append(
            f"--hold-s {args.hold_s:g} is not longer than the ping interval ({interval_s:g} s)"
        )
    await server.start_tracing()
    warm, _ = await open_many(server.url, server.tokens, WARM_UP, 4)
    await asyncio.gather(*(c.close() for c in warm))
    await asyncio.sleep(2)
    rss_before = server.rss()
    before = await server.snapshot("before")
    clients = Clients(root, server, connections, args)
    try:
        await clients.start()
        print(
            f"  {server.name}: {connections:,} connections from {clients.processes} client "
            f"process(es), {clients.in_flight} handshakes at a time each; RSS before "
            f"{rss_before / MIB:,.1f} MiB",
            flush=True,
        )
        reports = await clients.tell("connect", timeout_s=600 + connections / 10)
        opened = sum(r["connected"] for r in reports)
        wall_s = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
        took = [ms for r in reports for ms in r["tookMs"]]
        for r in reports:
            problems += [f"connect failed: {e}" for e in r["errors"]]
        if opened < connections:
            problems.append(f"{connections - opened} of {connections} connections failed")
        counted = await server.connected()
        rss_connected = server.rss()
        print(
            f"    {opened:,} connected in {wall_s:.1f} s ({opened / wall_s:,.0f}/s); the "
            f"server counts {counted:,}; RSS {rss_connected / MIB:,.1f} MiB; holding "
            f"{args.hold_s:g} s",
            flush=True,
        )
        cpu_before, held_from = server.cpu_s(), time.monotonic()
        await hold(server, args.hold_s)
        hold_cpu = 100 * (server.cpu_s() - cpu_before) / (time.monotonic() - held_from)
        rss_held = server.rss()
        status = await clients.tell("report", timeout_s=120)
        after = await server.snapshot("after")
        still_open = sum(s["open"] for s in status)
        min_pings = min(s["minPings"] for s in status)
        closed: dict[str, int] = {}
        for s in status:
            for code, n in s["closed"].items():
                closed[code] = closed.get(code, 0) + n
        if still_open < opened:
            problems.append(f"{opened - still_open} connections closed during the hold: {closed}")
        if min_pings < 1:
            problems.append("some connection answered no Engine.IO ping during the hold")
        await clients.tell("close", timeout_s=300)
    finally:
        await clients.stop()
    await asyncio.sleep(2)
    outcome = Outcome(
        name=server.name,
        connections=connections,
        users=server.users,
        wall_s=wall_s,
        took_ms=took,
        rss_before=rss_before,
        rss_connected=rss_connected,
        rss_held=rss_held,
        rss_closed=server.rss(),
        counted=counted,
        still_open=still_open,
        min_pings=min_pings,
        hold_cpu_pct=hold_cpu,
        open_files=int(server.process.rlimit(psutil.RLIMIT_NOFILE)[0]),
        closed=closed,
        problems=problems,
    )
    if before is not None and after is not None:
        outcome.layers, outcome.top_lines = attribute(before, after)
    return outcome


# -- where the memory goes -----------------------------------------------------------------

_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
_HERE = os.path.realpath(Path(__file__).parent.parent)


def layer_of(filename: str) -> tuple[str, bool]:
    """The package a source file belongs to, and whether it is the standard library."""
    path = os.path.realpath(filename)
    if "site-packages" in path.split(os.sep):
        rest = path.split(f"site-packages{os.sep}", 1)[1]
        return rest.split(os.sep, 1)[0].removesuffix(".py"), False
    if path.startswith(_HERE + os.sep):
        return path[len(_HERE) + 1 :].split(os.sep, 1)[0].removesuffix(".py"), False
    if path.startswith(_STDLIB + os.sep):
        top = path[len(_STDLIB) + 1 :].split(os.sep, 1)[0].removesuffix(".py")
        return f"stdlib {top}", True
    return filename, True


def owner(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    """Who asked for an allocation: the package and the line of the innermost frame
    that is neither the standard library nor code compiled at run time (Sanic compiles
    some of its handlers). An allocation whose only such frame is the event loop's
    `run_forever` was made by the loop's C code (uvloop: handles, timers, transports)."""
    for frame in reversed(list(traceback)):  # innermost first
        package, stdlib = layer_of(frame.filename)
        if stdlib or not os.path.exists(frame.filename):
            continue
        text = linecache.getline(frame.filename, frame.lineno).strip()
        if "run_forever()" in text:
            where = f"{package}/{Path(frame.filename).name}:{frame.lineno}"
            return "event loop (C)", f"{where} `{text[:40]}`: the event loop's C code"
        return package, f"{package}/{Path(frame.filename).name}:{frame.lineno} `{text[:70]}`"
    innermost = traceback[-1] if len(traceback) else None
    where = f"{innermost.filename}:{innermost.lineno}" if innermost else "?"
    return "other", where


def attribute(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot
) -> tuple[dict[str, int], list[tuple[int, str]]]:
    """Bytes grown between the snapshots, by the package that asked for them, and the
    lines (of those packages) that asked for most, all that lies beneath them included."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    layers: dict[str, int] = {}
    lines: dict[str, int] = {}
    for diff in after.compare_to(before, "traceback"):
        package, line = owner(diff.traceback)
        layers[package] = layers.get(package, 0) + diff.size_diff
        lines[line] = lines.get(line, 0) + diff.size_diff
    top = sorted(((size, line) for line, size in lines.items()), reverse=True)[:15]
    return layers, top


# -- report ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    names = [o.name for o in outcomes]
    ratio_head = " | gateway / bare" if len(outcomes) == 2 else ""
    print(f"\n| what | {' | '.join(names)}{ratio_head} |")
    print("|---|" + "---|" * (len(outcomes) + (len(outcomes) == 2)))
    rows: list[tuple[str, Callable[[Outcome], float], str]] = [
        ("connections held", lambda o: o.connections, ",.0f"),
        ("users they belong to (bare: no auth)", lambda o: o.users, ",.0f"),
        ("wall time, first begun to all connected, s", lambda o: o.wall_s, ",.1f"),
        ("connect rate, connections/s", lambda o: o.rate, ",.0f"),
        ("one handshake, p50, ms", lambda o: percentile(o.took_ms, 0.5), ",.1f"),
        ("one handshake, p99, ms", lambda o: percentile(o.took_ms, 0.99), ",.1f"),
        ("sockets the server counts open", lambda o: o.counted, ",.0f"),
        ("server RSS before, MiB", lambda o: o.rss_before / MIB, ",.1f"),
        ("server RSS, all connected, MiB", lambda o: o.rss_connected / MIB, ",.1f"),
        (f"server RSS after {args.hold_s:g} s held, MiB", lambda o: o.rss_held / MIB, ",.1f"),
        ("**RSS per connection, KiB**", lambda o: o.per_connection / 1024, ",.1f"),
        ("still connected after the hold", lambda o: o.still_open, ",.0f"),
        ("Engine.IO pings answered per connection, fewest", lambda o: o.min_pings, ",.0f"),
        ("server CPU while holding, % of a core", lambda o: o.hold_cpu_pct, ",.1f"),
        ("server RSS after all closed, MiB", lambda o: o.rss_closed / MIB, ",.1f"),
        ("server open-file limit", lambda o: o.open_files, ".0f"),
    ]
    for label, figure, style in rows:
        values = [figure(o) for o in outcomes]
        cells = " | ".join(format(v, style) for v in values)
        ratio = ""
        if len(values) == 2:
            ratio = f" | {values[0] / values[1]:.2f}" if values[1] else " | "
        print(f"| {label} | {cells}{ratio} |")
    for o in outcomes:
        verdict = "under" if o.per_connection < 50 * 1024 else "OVER"
        print(
            f"{o.name}: {o.per_connection / 1024:,.1f} KiB a connection, {verdict} the 50 KiB goal"
        )


def report_traced(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if not o.layers:
            continue
        total = sum(o.layers.values())
        print(
            f"\n{o.name} under tracemalloc, {o.connections:,} connections: "
            f"{total / o.connections / 1024:,.1f} KiB of Python allocations a connection "
            "(the RSS figures are the untraced pass's: tracing and its snapshots take "
            "memory of their own)\n"
        )
        print("| asked for by | KiB a connection | share |\n|---|---|---|")
        for name, size in sorted(o.layers.items(), key=lambda kv: -kv[1])[:14]:
            print(f"| {name} | {size / o.connections / 1024:,.2f} | {100 * size / total:.0f}% |")
        print("\n| asked for at (all beneath it included) | bytes a connection |\n|---|---|")
        for size, where in o.top_lines:
            print(f"| {where} | {size / o.connections:,.0f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--hold-s", type=float, default=30.0, help="seconds to hold them")
    parser.add_argument(
        "--client-processes", type=int, help=f"default: one per {PER_CLIENT_PROCESS:,}"
    )
    parser.add_argument("--in-flight", type=int, default=64, help="handshakes at a time, all")
    parser.add_argument(
        "--users",
        type=int,
        help=f"users the connections belong to, in turn (default: one per {PER_USER}, under "
        f"the gateway's cap of {DEFAULT_SOCKETS_PER_USER} sockets a user; fewer raise the cap)",
    )
    parser.add_argument("--sides", default="orchestra,relay", help="orchestra, relay or both")
    parser.add_argument("--tracemalloc", action="store_true", help="also a traced pass each")
    parser.add_argument("--trace-connections", type=int, default=2_000)
    args = parser.parse_args()
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not set(sides) <= {"orchestra", "relay"}:
        parser.error("--sides takes orchestra, relay or both")
    share = math.ceil(args.connections / (args.client_processes or 1))
    limit = open_files_limit(max(args.connections, share) + 1000)
    root = Path(tempfile.mkdtemp(prefix="orchestra-idle-"))
    print(
        f"load average before: {os.getloadavg()[0]:.2f}; open-file limit {limit}; logs in {root}",
        flush=True,
    )

    def server(side: str, folder: Path, traced: Path | None, count: int) -> Any:
        if side == "orchestra":
            users = args.users or math.ceil(count / PER_USER)
            return orchestra_server(folder, count, min(users, count), traced)
        return bare_server(folder, traced)

    outcomes: list[Outcome] = []
    for side in sides:
        async with server(side, root / side, None, args.connections) as running:
            outcomes.append(await one_pass(root / side, running, args.connections, args))
    traced: list[Outcome] = []
    if args.tracemalloc:
        for side in sides:
            folder = root / f"{side}-traced"
            async with server(
                side, folder, folder / "tracemalloc", args.trace_connections
            ) as running:
                traced.append(await one_pass(folder, running, args.trace_connections, args))
    print(
        f"\nIdle `/web` connections: one server process each; clients in processes of their "
        f"own ({PER_CLIENT_PROCESS:,} connections each at most by default), a websocket and a "
        "hand-written Engine.IO 4 / Socket.IO 5 client per connection."
    )
    report(outcomes, args)
    report_traced(traced)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    problems = [f"{o.name}: {p}" for o in outcomes + traced for p in o.problems]
    if problems:
        print("\nFAILED:\n" + "\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
