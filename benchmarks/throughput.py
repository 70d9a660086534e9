"""Output lines per second end to end, Orchestra with persistence beside a bare relay.

    python -m benchmarks.throughput [--shape 1|10w|20s|all] [--lines 20000] [--runs 3]
    python -m benchmarks.throughput --redis both [--gateways 3] --paced-rate 0 ...

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

`--redis single|cluster|both` (`benchmarks/_redis.py`): an Orchestra side for each Redis
configuration named (one Redis; a Redis Cluster of three masters and three replicas with
`ORCHESTRA_REDIS_WAIT_REPLICAS` 0, and with 1), each with `--gateways` (3) gateways, all
up at once and taking turns with the relay. The agent is on a side's first gateway, the
watchers on the others first, in turn. Each run also reads every Redis server's commands
and CPU (`INFO commandstats`, `INFO cpu`), reported per line with the spread of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import statistics
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from benchmarks._redis import CHOICES, SINGLE, configs
from benchmarks._redis_report import report_throughput
from benchmarks._report import percentile, print_table
from benchmarks._throughput_runs import Run, Shape, Side, run_once, worker_command
from benchmarks._throughput_sides import orchestra_side, relay_side

WARM_UP_LINES = 500


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
        "server": "gateway(s) / relay process",
        "sender": "agent / producer process",
        "Redis": "Redis",
        "watchers": "watcher processes",
    }
    return [(f"CPU, {what}, % of a core", used(role), ".0f") for role, what in roles.items()]


def table(sides: list[Side], key: str, heading: str, rows: list[Row]) -> None:
    """A markdown table: one row a figure, the two sides and their ratio."""
    runs = [side.runs.get(key, []) for side in sides]
    print(f"\n{heading}\n")
    figures = [
        (label, [median_of(r, figure) for r in runs], style) for label, figure, style in rows
    ]
    print_table([side.name for side in sides], "Orchestra / relay", figures)


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
    parser.add_argument(
        "--loop-watch-ms",
        type=int,
        default=0,
        help="the gateway and the agent log a warning, with the stack, when their event loop "
        "is held longer than this (0: not watched)",
    )
    parser.add_argument(
        "--redis",
        choices=CHOICES,
        help="an Orchestra side per Redis configuration (see above); without it, one Redis",
    )
    parser.add_argument(
        "--gateways", type=int, help="gateway processes of each Orchestra side (1; 3 with --redis)"
    )
    args = parser.parse_args()
    args.gateways = args.gateways or (3 if args.redis else 1)
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
        orchestras = [
            await stack.enter_async_context(
                orchestra_side(root / config.key if args.redis else root, args, config)
            )
            for config in (configs(args.redis) if args.redis else [SINGLE])
        ]
        relay = await stack.enter_async_context(relay_side(root / "relay"))
        sides = [*orchestras, relay]
        for key, shape in shapes.items():
            print(f"{shape.title}:", flush=True)
            argv = worker_command(shape.lines, args.line_bytes, 0)
            await measure(sides, key, shape, argv, args)
            if key == "1" and args.paced_rate != 0:
                await paced(sides, args)
        for side in sides:
            check_batch(side)
    raw = pickle.dumps({side.name: side.runs for side in sides})  # the runs, kept
    (root / "runs.pickle").write_bytes(raw)
    report(sides, shapes, args)
    if args.redis:
        report_throughput(sides, shapes)
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
