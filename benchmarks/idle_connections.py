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
import math
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from benchmarks._idle_pass import MIB, PER_CLIENT_PROCESS, Outcome, one_pass
from benchmarks._idle_servers import (
    DEFAULT_SOCKETS_PER_USER,
    Server,
    bare_server,
    open_files_limit,
    orchestra_server,
)
from benchmarks._report import percentile, print_table

PER_USER = 25
"""Connections per user by default: under the gateway's default cap of sockets per user."""


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
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
    figures = [(label, [figure(o) for o in outcomes], style) for label, figure, style in rows]
    print()
    print_table([o.name for o in outcomes], "gateway / bare", figures)
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

    def server(
        side: str, folder: Path, traced: Path | None, count: int
    ) -> AbstractAsyncContextManager[Server]:
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
