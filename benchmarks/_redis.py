"""The Redis a benchmark runs Orchestra on, and what each of its servers did during a run.

`--redis single|cluster|both` picks the configurations (`configs`):

- ``single``: one Redis server (the baseline);
- ``cluster``: a Redis Cluster of three masters and three replicas on this machine
  (`tests/support/redis_cluster.py`), once with ``ORCHESTRA_REDIS_WAIT_REPLICAS=0`` and
  once with ``=1`` (a write whose effects leave its slot waits for one replica);
- ``both``: the three.

`running_redis` starts one; its `snapshot` reads every server's ``INFO commandstats`` and
``INFO cpu``, and `RunningRedis.since` turns two snapshots into `RedisUsage`: commands
and CPU per server over a run. ``INFO commandstats`` counts the commands that scripts run
(``redis.call``) as well as those clients send; `monitored` (``MONITOR`` on every master,
which slows Redis down: for a run of its own, not a timed one) tells the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks._processes import logged
from orchestra import keys
from orchestra.redis_client import connect
from orchestra.redis_server import AppendFsync, RedisServer
from tests.support.processes import Deployment
from tests.support.redis_cluster import RedisClusterHarness, redis_cluster

CHOICES = ("single", "cluster", "both")


@dataclass(frozen=True)
class RedisConfig:
    key: str
    label: str
    cluster: bool
    wait_replicas: int

    @property
    def env(self) -> dict[str, str]:
        """What the gateways of a deployment on it are started with."""
        return {"ORCHESTRA_REDIS_WAIT_REPLICAS": str(self.wait_replicas)}


SINGLE = RedisConfig("single", "1 Redis", False, 0)
CLUSTER = RedisConfig("cluster", "3 masters, WAIT 0", True, 0)
CLUSTER_WAIT = RedisConfig("cluster-wait1", "3 masters, WAIT 1", True, 1)


def configs(choice: str) -> list[RedisConfig]:
    """The configurations `--redis` names, the baseline first."""
    return {
        "single": [SINGLE],
        "cluster": [CLUSTER, CLUSTER_WAIT],
        "both": [SINGLE, CLUSTER, CLUSTER_WAIT],
    }[choice]


@dataclass(frozen=True)
class Node:
    port: int
    role: str
    """`master` or `replica` (as the cluster was created; the benchmarks kill nothing)."""
    pid: int
    slots: str = "all"
    """The slots it serves (a replica: its master's), e.g. `0-5460`: what names a
    server the same in every run, whatever its port."""

    @property
    def name(self) -> str:
        return f"{self.role} of slots {self.slots}"


@dataclass
class NodeUsage:
    """What one Redis server did over a run."""

    port: int
    role: str
    name: str
    """`Node.name`."""
    cpu_s: float
    calls: Counter[str]
    """Commands run, by name (``evalsha``, ``command|getkeys``), scripts' own included."""


@dataclass
class RedisUsage:
    seconds: float
    nodes: list[NodeUsage]

    @property
    def masters(self) -> list[NodeUsage]:
        return [n for n in self.nodes if n.role == "master"]

    def cpu_pct(self, role: str | None = None) -> float:
        """CPU of the servers of `role` (all when None), in % of one core."""
        used = sum(n.cpu_s for n in self.nodes if role is None or n.role == role)
        return 100 * used / self.seconds if self.seconds > 0 else 0.0

    def calls(self, role: str = "master") -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.nodes:
            if node.role == role:
                total.update(node.calls)
        return total


Snapshot = dict[int, tuple[float, dict[str, int], float]]
"""port -> (CPU seconds, calls by command, monotonic time read)."""


@dataclass
class RunningRedis:
    config: RedisConfig
    url: str
    nodes: list[Node]
    harness: RedisClusterHarness | None = None

    @property
    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(node.pid) for node in self.nodes]

    @property
    def masters(self) -> list[Node]:
        return [node for node in self.nodes if node.role == "master"]

    async def snapshot(self) -> Snapshot:
        """Every server's cumulative CPU and command counts, read now."""
        taken: Snapshot = {}
        for node in self.nodes:
            client = connect(f"redis://127.0.0.1:{node.port}")
            try:
                stats = await client.info("commandstats")
                cpu = await client.info("cpu")
            finally:
                await client.aclose()
            calls = {
                name.removeprefix("cmdstat_"): int(values["calls"])
                for name, values in stats.items()
                if isinstance(values, dict) and "calls" in values
            }
            used_s = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
            taken[node.port] = (used_s, calls, time.monotonic())
        return taken

    async def since(self, before: Snapshot) -> RedisUsage:
        """What every server did since `before` (the snapshot reads included)."""
        after = await self.snapshot()
        nodes = []
        for node in self.nodes:
            cpu0, calls0, _ = before[node.port]
            cpu1, calls1, _ = after[node.port]
            calls = Counter({k: v - calls0.get(k, 0) for k, v in calls1.items()})
            calls -= Counter()  # drops the commands not run meanwhile
            nodes.append(NodeUsage(node.port, node.role, node.name, cpu1 - cpu0, calls))
        began = min(t for _, _, t in before.values())
        ended = max(t for _, _, t in after.values())
        return RedisUsage(ended - began, nodes)


@asynccontextmanager
async def running_redis(
    config: RedisConfig,
    data_dir: Path,
    *,
    appendonly: bool = True,
    appendfsync: AppendFsync = "everysec",
) -> AsyncIterator[RunningRedis]:
    """One Redis server, or a cluster of three masters and three replicas (every node
    with an append-only file), stopped on the way out."""
    if not config.cluster:
        async with RedisServer(
            data_dir=data_dir, appendonly=appendonly, appendfsync=appendfsync
        ) as server:
            assert server.pid is not None
            yield RunningRedis(config, server.url, [Node(server.port, "master", server.pid)])
        return
    async with redis_cluster(data_dir, appendfsync=appendfsync) as cluster:
        seen = {n["port"]: n for n in await cluster.nodes()}
        nodes = []
        for port, server in cluster.servers.items():
            assert server.pid is not None
            node = seen[port]
            master = seen[node["master_port"]] if node["role"] == "replica" else node
            slots = ",".join(master["slots"])
            nodes.append(Node(port, node["role"], server.pid, slots))
        nodes.sort(key=lambda n: (n.role != "master", int(n.slots.split("-")[0])))
        yield RunningRedis(config, cluster.url, nodes, cluster)


@asynccontextmanager
async def redis_deployment(
    config: RedisConfig,
    root: Path,
    folder: Path,
    *,
    appendonly: bool = True,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[RunningRedis, Deployment]]:
    """`running_redis` (its data in `<root>/redis`) and a deployment in `folder` using
    it and SQLite (`<root>/o.db`), its gateways set for `config`. The logs of the
    deployment's processes go to standard error when something fails."""
    async with running_redis(config, root / "redis", appendonly=appendonly) as redis:
        deployment = Deployment(
            folder,
            redis.url,
            f"sqlite+aiosqlite:///{root}/o.db",
            extra_env=config.env | (extra_env or {}),
        )
        with logged(deployment) as made:
            yield redis, made


async def wait_spread(url: str, nodes: int, partitions: int) -> None:
    """Until every partition is held and the holders are `nodes` nodes, then one more
    lease round (2 s): no lease moves during the runs."""
    client = connect(url)
    try:
        while True:
            holders = [await client.get(keys.lease(p, partitions)) for p in range(partitions)]
            owners = {str(h).split(":")[0] for h in holders if h}
            if len(owners) == nodes and None not in holders:
                break
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
    await asyncio.sleep(3)


# -- MONITOR: the commands clients sent, apart from those scripts ran ----------------------

_MONITOR_LINE = re.compile(r'^\+\d+\.\d+ \[\d+ (?P<source>[^\]]+)\] "(?P<name>[^"]*)"(?P<rest>.*)$')


def monitor_entry(line: str) -> tuple[str, str] | None:
    """(`client` or `script`, command name) of one ``MONITOR`` line; None for others.

    A command of a script shows ``[0 lua]`` where a client's shows its address; a
    container command is named with its subcommand (``command|getkeys``), and a
    ``COMMAND GETKEYS`` with the command it asks about (``command|getkeys xread``)."""
    found = _MONITOR_LINE.match(line)
    if found is None:
        return None
    source = "script" if found["source"] == "lua" else "client"
    name = found["name"].lower()
    if name in {"command", "client", "cluster", "config", "script", "xinfo", "memory"}:
        sub = re.match(r' "([^"]*)"(?: "([^"]*)")?', found["rest"])
        if sub:
            name = f"{name}|{sub[1].lower()}"
            if name == "command|getkeys" and sub[2]:  # which command's keys were asked
                name += f" {sub[2].lower()}"
    return source, name


@asynccontextmanager
async def monitored(nodes: Sequence[Node]) -> AsyncIterator[dict[str, Counter[tuple[str, str]]]]:
    """``MONITOR`` on each node while the body runs: per node's name, (source, command) ->
    count."""
    counts: dict[str, Counter[tuple[str, str]]] = {node.name: Counter() for node in nodes}
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[None]] = []

    async def read(name: str, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            entry = monitor_entry(line.decode(errors="replace").rstrip("\r\n"))
            if entry is not None:
                counts[name][entry] += 1

    try:
        for node in nodes:
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port, limit=1 << 24)
            writers.append(writer)
            writer.write(b"*1\r\n$7\r\nMONITOR\r\n")
            await writer.drain()
            if (await reader.readline()).strip() != b"+OK":
                raise RuntimeError(f"MONITOR refused by :{node.port}")
            readers.append(asyncio.create_task(read(node.name, reader)))
        yield counts
        if nodes:
            await asyncio.sleep(0.2)  # the last lines on their way
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class Observed:
    """Rates and Redis usage of the runs of one configuration."""

    config: RedisConfig
    rates: list[float] = field(default_factory=list)
    usages: list[RedisUsage] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
