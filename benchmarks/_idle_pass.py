"""One pass of `benchmarks.idle_connections` against one server: its client processes
(`benchmarks/_idle_clients.py`) connect, hold and close their connections while the
pass measures the server; under tracemalloc, where the memory of a connection goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import linecache
import math
import os
import sys
import sysconfig
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

from benchmarks._idle_clients import open_many, websocket_url
from benchmarks._idle_servers import Server
from benchmarks._processes import open_log

WARM_UP = 20
PER_CLIENT_PROCESS = 2_500
MIB = 1024 * 1024


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


# -- clients ---------------------------------------------------------------------------


class Clients:
    """Client processes (`benchmarks._idle_clients`), driven a line at a time."""

    def __init__(
        self, root: Path, server: Server, connections: int, args: argparse.Namespace
    ) -> None:
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
