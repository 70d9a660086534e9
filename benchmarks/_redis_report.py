"""What `benchmarks/_redis.py` measured, as text: per-server lines and side-by-side tables
of the Redis configurations (`--redis`)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence

from benchmarks._redis import NodeUsage, Observed, RedisUsage
from benchmarks._throughput_runs import Shape, Side

#: Commands that are background work whatever the load (discovery, health, gossip).
_BACKGROUND = {"info", "ping", "cluster|slots", "cluster|shards", "cluster|nodes", "command"}


def spread(values: Sequence[float], style: str = ",.0f") -> str:
    """`median (min-max)` of the values, or the one value."""
    if not values:
        return ""
    middle = format(statistics.median(values), style)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), style)}-{format(max(values), style)})"


def per_unit(usages: Sequence[RedisUsage], units: int, unit: str, top: int = 12) -> list[str]:
    """Lines saying, per server, its CPU and the commands it ran per `unit` (`units` of
    them each run), medians over the runs; masters first.

    Within each run the servers of a role are ranked by the commands they ran, the
    busiest first: a run's work may sit on another master than the last run's (a new
    session, placed anew), and it is how the load spreads that a rank tells."""
    if not usages:
        return []
    ranked = [_ranked(usage) for usage in usages]
    lines = []
    for index, (rank, first) in enumerate(ranked[0]):
        mine = [r[index][1] for r in ranked]
        cpu = [100 * n.cpu_s / u.seconds for n, u in zip(mine, usages, strict=True)]
        per: dict[str, float] = {}
        for name in {name for n in mine for name in n.calls}:
            per[name] = statistics.median(n.calls.get(name, 0) / units for n in mine)
        total = statistics.median(sum(n.calls.values()) / units for n in mine)
        named = sorted(per.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{name} {_few(count)}" for name, count in named[:top] if count >= 0.001)
        where = first.name if len(usages) == 1 else f"{rank} {first.role}"
        lines.append(
            f"  {where}: CPU {spread(cpu)} % of a core; "
            f"{_few(total)} commands per {unit} (scripts' own included): {shown}"
        )
    return lines


def _ranked(usage: RedisUsage) -> list[tuple[str, NodeUsage]]:
    """The servers of `usage`, masters then replicas, each role's busiest first, with
    their rank (`busiest`, `2nd`, ...)."""
    out: list[tuple[str, NodeUsage]] = []
    for role in ("master", "replica"):
        mine = sorted(
            (n for n in usage.nodes if n.role == role), key=lambda n: -sum(n.calls.values())
        )
        names = ["busiest", "2nd", "3rd"] + [f"{k}th" for k in range(4, len(mine) + 1)]
        out += [(names[k] if len(mine) > 1 else "the", n) for k, n in enumerate(mine)]
    return out


def _few(value: float) -> str:
    """A count per unit: two decimals, three below 0.1."""
    return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.3f}"


def monitor_lines(counts: dict[str, Counter[tuple[str, str]]], units: int, unit: str) -> list[str]:
    """Per master: the commands clients sent per `unit`, and those scripts ran."""
    lines = []
    for server, counter in counts.items():
        for source in ("client", "script"):
            mine = {
                name: n / units
                for (src, name), n in counter.items()
                if src == source and name not in _BACKGROUND
            }
            total = sum(mine.values())
            named = sorted(mine.items(), key=lambda item: -item[1])
            shown = ", ".join(f"{name} {v:.2f}" for name, v in named if v >= 0.005)
            lines.append(f"  {server}, sent by {source}s: {total:.2f} per {unit}: {shown}")
    return lines


def report_actors(seen: Sequence[Observed], messages: int, starts: int) -> None:
    """`benchmarks.actors_and_dispatch --redis`: the figures of each configuration side by
    side (median and range of its runs), then what its Redis servers did."""
    rows = [("actor messages/s", "rates", ",.0f")]
    if starts:
        rows += [
            ("`worker:start` to `task:assign` p50, ms", "p50", ".1f"),
            ("p99, ms", "p99", ".1f"),
        ]
    print(
        f"\n| what, median (min-max) of {len(seen[0].rates)} | "
        + " | ".join(o.config.label for o in seen)
        + " |"
    )
    print("|---|" + "---|" * len(seen))
    rows += [("CPU, gateways together, % of a core", "gateways", ".0f")]
    for label, what, style in rows:
        cells = [spread(o.rates if what == "rates" else o.extra[what], style) for o in seen]
        print(f"| {label} | {' | '.join(cells)} |")
    for role in ("master", "replica"):
        used = [spread([u.cpu_pct(role) for u in o.usages]) for o in seen]
        print(f"| CPU, Redis {role}s together, % of a core | {' | '.join(used)} |")
    base = statistics.median(seen[0].rates)
    ratios = " | ".join(f"{statistics.median(o.rates) / base:.2f}" for o in seen)
    print(f"| messages/s over {seen[0].config.label}'s | {ratios} |")
    for mine in seen:
        label = mine.config.label
        print(f"\n{label}: Redis servers per actor message (timed runs)")
        print("\n".join(per_unit(mine.usages, messages, "message")))
        if "dispatch" in mine.extra:
            print(f"{label}: Redis servers per start ({starts} starts a run)")
            print("\n".join(per_unit(mine.extra["dispatch"], starts, "start")))
        if "monitor" in mine.extra:
            run = mine.extra["monitor"]
            print(f"{label}: under MONITOR, one run at {run.rate:,.0f} messages/s")
            print("\n".join(monitor_lines(run.commands, messages, "message")))
        if "monitor-starts" in mine.extra:
            print(f"{label}: under MONITOR, {starts} starts")
            print("\n".join(monitor_lines(mine.extra["monitor-starts"].commands, starts, "start")))


def report_throughput(sides: Sequence[Side], shapes: Mapping[str, Shape]) -> None:
    """`benchmarks.throughput --redis`: per shape, every side's lines/s and CPU (median
    and range of its runs), ratios to the first side and to the last (the relay), then
    what each Orchestra side's Redis servers did per line."""
    for key, shape in shapes.items():
        runs = [side.runs.get(key, []) for side in sides]
        count = min(len(r) for r in runs)
        print(f"\n### {shape.title}: median (min-max) of {count} runs\n")
        print(f"| what | {' | '.join(side.name for side in sides)} |")
        print("|---|" + "---|" * len(sides))
        rates = [[run.rate for run in r] for r in runs]
        print(f"| lines/s, first line to last | {' | '.join(spread(r) for r in rates)} |")
        middle = [statistics.median(r) if r else 0.0 for r in rates]
        for name, base in ((sides[0].name, middle[0]), (sides[-1].name, middle[-1])):
            cells = " | ".join(f"{m / base:.2f}" if base else "" for m in middle)
            print(f"| over {name} | {cells} |")
        for role, label in (("server", "gateways / relay"), ("sender", "agent / producer")):
            cpu = [spread([run.cpu_pct.get(role, 0.0) for run in r]) for r in runs]
            print(f"| CPU, {label}, % of a core | {' | '.join(cpu)} |")
        for role in ("master", "replica"):
            used = [spread([run.redis.cpu_pct(role) for run in r if run.redis]) for r in runs]
            print(f"| CPU, Redis {role}s, % of a core | {' | '.join(used)} |")
        for side, side_runs in zip(sides, runs, strict=True):
            usages = [run.redis for run in side_runs if run.redis]
            if usages:
                lines = side_runs[0].lines
                print(f"\n{side.name}, {shape.title}: Redis servers per line (timed runs)")
                print("\n".join(per_unit(usages, lines, "line")))
