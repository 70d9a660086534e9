"""The Redis-side accounting of the benchmarks (benchmarks/_redis.py): which MONITOR lines
are a client's and which a script's, and the figures per unit of work."""

from __future__ import annotations

from collections import Counter

from benchmarks._redis import NodeUsage, RedisUsage, configs, monitor_entry
from benchmarks._redis_report import monitor_lines, per_unit, spread


def test_monitor_lines_tell_clients_from_scripts() -> None:
    client = '+1700000000.123456 [0 127.0.0.1:50444] "EVALSHA" "ab12" "1" "k"'
    script = '+1700000000.123460 [0 lua] "HSET" "k" "a" "1"'
    getkeys = '+1700000000.2 [0 127.0.0.1:50444] "COMMAND" "GETKEYS" "XREAD" "STREAMS" "s" "0"'
    assert monitor_entry(client) == ("client", "evalsha")
    assert monitor_entry(script) == ("script", "hset")
    assert monitor_entry(getkeys) == ("client", "command|getkeys xread")
    assert monitor_entry("+OK") is None


def test_figures_per_unit_are_medians_over_runs() -> None:
    def run(evalsha: int, cpu_s: float) -> RedisUsage:
        calls = Counter(evalsha=evalsha, hset=2 * evalsha)
        master = NodeUsage(1 + evalsha, "master", "master of slots 0-99", cpu_s, calls)
        replica = NodeUsage(2, "replica", "replica of slots 0-99", 0.1, Counter(hset=evalsha))
        return RedisUsage(2.0, [master, replica])

    usages = [run(10, 0.5), run(30, 1.0), run(20, 2.0)]
    assert usages[0].cpu_pct("master") == 25.0 and usages[0].cpu_pct() == 30.0
    lines = per_unit(usages, 10, "message")
    assert lines[0].startswith("  the master: CPU 50 (25-100) % of a core; 6.00 commands")
    assert "evalsha 2.00" in lines[0] and "hset 4.00" in lines[0]
    assert lines[1].startswith("  the replica: CPU 5 ")
    assert per_unit(usages[:1], 10, "message")[0].startswith("  master of slots 0-99: CPU 25 ")
    counts = {
        "master of slots 0-99": Counter(
            {("client", "evalsha"): 4, ("script", "hset"): 8, ("client", "ping"): 9}
        )
    }
    client, script = monitor_lines(counts, 4, "line")
    assert "0-99, sent by clients: 1.00 per line: evalsha 1.00" in client  # pings are background
    assert "sent by scripts: 2.00 per line: hset 2.00" in script
    assert spread([3.0, 1.0, 2.0]) == "2 (1-3)" and spread([1.5], ".1f") == "1.5"
    assert [c.key for c in configs("both")] == ["single", "cluster", "cluster-wait1"]
