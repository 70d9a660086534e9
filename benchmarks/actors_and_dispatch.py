"""Benchmarks of the actor runtime and of dispatch, on real processes.

    python -m benchmarks.actors_and_dispatch [--messages 20000] [--starts 300]
    python -m benchmarks.actors_and_dispatch --redis both [--gateways 3] [--runs 3] [--monitor]

1. Actor messages handled per second, with 1 and with 3 gateway nodes: the benchmark
   puts `--messages` pings for 100 probe actors into the mailboxes at once, then times
   until every one has been handled (each is a full turn: state read, handler, fenced
   commit with the mailbox ack).
2. Time from `worker:start` (sent by a web client) to `task:assign` reaching the agent,
   p50 and p99 over `--starts` starts, one at a time, on one node.

Everything runs on this machine: a private Redis, SQLite, gateway processes started with
the `orchestra` command, a python-socketio web client and a minimal agent.

With `--redis single|cluster|both` (`benchmarks/_redis.py`), 1 and 2 are measured instead
with `--gateways` (3) gateway processes on each Redis configuration named, one Redis and/or
a Redis Cluster of three masters and three replicas with `ORCHESTRA_REDIS_WAIT_REPLICAS` 0
and 1, every server keeping an append-only file (`everysec`), `--runs` times each (the
order of the configurations reversed every other run); each run also reads every Redis
server's commands and CPU (`INFO commandstats`, `INFO cpu`), reported per message and
per start. `--monitor` adds one run per configuration under `MONITOR`, to tell the
commands clients sent from those scripts ran (slower: not one of the timed runs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import pickle
import secrets
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import socketio
from redis.asyncio import Redis

from actors import Address
from actors.messages import Message
from benchmarks._redis import (
    CHOICES,
    SINGLE,
    Observed,
    RedisConfig,
    RedisUsage,
    configs,
    monitored,
    running_redis,
)
from benchmarks._redis_report import report_actors
from orchestra import keys
from orchestra.aio import cancel_and_wait
from orchestra.codec import now_iso
from orchestra.redis_client import connect
from orchestra.redis_server import RedisServer
from tests.support.processes import Deployment
from tests.support.web import WebClient, login

PROBES = 100


@dataclass
class ActorRun:
    rate: float
    """Actor messages handled per second."""
    usage: RedisUsage
    """What every Redis server did from the first message sent to the last handled."""
    commands: dict[str, Counter[tuple[str, str]]]
    """Under `monitor`: per master, (client or script, command) -> count; else empty."""
    gateways_cpu_pct: float = 0.0
    """CPU of the gateway processes together meanwhile, in % of one core."""


@dataclass
class DispatchRun:
    latencies_ms: list[float]
    usage: RedisUsage
    commands: dict[str, Counter[tuple[str, str]]]


async def actor_throughput(
    root: Path,
    nodes: int,
    messages: int,
    config: RedisConfig = SINGLE,
    *,
    appendonly: bool = False,
    monitor: bool = False,
) -> ActorRun:
    folder = Path(tempfile.mkdtemp(prefix=f"{config.key}-{nodes}-", dir=root))
    async with running_redis(config, folder / "redis", appendonly=appendonly) as redis:
        deployment = Deployment(
            folder / "nodes",
            redis.url,
            f"sqlite+aiosqlite:///{folder / 'o.db'}",
            extra_env=config.env,
        )
        deployment.root.mkdir(parents=True, exist_ok=True)
        try:
            gateways = [await deployment.start_gateway(f"bench{i}") for i in range(nodes)]
            processes = [psutil.Process(g.popen.pid) for g in gateways]
            client = connect(redis.url)
            partitions = deployment.partitions
            await _settle(client, nodes, partitions)
            pipe = client.pipeline(transaction=False)
            for i in range(messages):
                address = Address("probe", f"b{i % PROBES}")
                fields: Any = Message(to=str(address), type="ping").fields()
                pipe.xadd(keys.mailbox(address.partition(partitions), partitions), fields)
            async with monitored(redis.masters if monitor else []) as commands:
                before = await redis.snapshot()
                cpu_s = sum(sum(p.cpu_times()[:2]) for p in processes)
                started = time.perf_counter()
                await pipe.execute()
                while True:
                    counts = await asyncio.gather(
                        *(
                            client.hget(keys.actor_state(f"probe:b{i}", partitions), "count")
                            for i in range(PROBES)
                        )
                    )
                    if sum(int(c or 0) for c in counts) >= messages:
                        break
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                cpu_s = sum(sum(p.cpu_times()[:2]) for p in processes) - cpu_s
                usage = await redis.since(before)
            await client.aclose()
            return ActorRun(messages / elapsed, usage, commands, 100 * cpu_s / elapsed)
        except BaseException:
            print(deployment.logs()[-6000:])
            raise
        finally:
            deployment.stop_all()


async def _settle(client: Redis, nodes: int, partitions: int) -> None:
    """Until the partitions are spread over all nodes (no lease moves during the run)."""
    while True:
        holders = {await client.get(keys.lease(p, partitions)) for p in range(partitions)}
        owners = {str(h).split(":")[0] for h in holders if h}
        if len(owners) == nodes and None not in holders:
            await asyncio.sleep(3)  # one more lease round: nothing moves after this
            return
        await asyncio.sleep(0.2)


async def start_to_assign(
    root: Path,
    starts: int,
    config: RedisConfig = SINGLE,
    nodes: int = 1,
    *,
    appendonly: bool = False,
    monitor: bool = False,
) -> DispatchRun:
    """Latencies of `starts` starts, with the web client and the agent on the first of
    `nodes` gateways, and what the Redis servers did meanwhile."""
    folder = Path(tempfile.mkdtemp(prefix=f"dispatch-{config.key}-{nodes}-", dir=root))
    async with running_redis(config, folder / "redis", appendonly=appendonly) as redis:
        deployment = Deployment(
            folder / "dispatch",
            redis.url,
            f"sqlite+aiosqlite:///{folder / 'dispatch.db'}",
            extra_env=config.env,
        )
        deployment.root.mkdir(parents=True, exist_ok=True)
        try:
            await deployment.create_user("bench", "bench-password")
            agent_id, secret_file = await deployment.create_agent("bench-agent", owner="bench")
            gateway = await deployment.start_gateway("dispatch")
            for i in range(1, nodes):
                await deployment.start_gateway(f"dispatch{i}")
            if nodes > 1:
                client = connect(redis.url)
                await _settle(client, nodes, deployment.partitions)
                await client.aclose()
            arrived: dict[str, float] = {}
            arrival = asyncio.Event()
            agent = socketio.AsyncClient()

            @agent.on("task:assign", namespace="/agent")
            async def assigned(data: dict[str, Any]) -> dict[str, Any]:
                arrived[data["taskId"]] = time.perf_counter()
                arrival.set()
                return {"commandId": data["commandId"]}

            secret = secret_file.read_text().strip()
            timestamp, nonce = int(time.time() * 1000), secrets.token_hex(8)
            signature = hmac.new(
                secret.encode(), f"{agent_id}:{timestamp}:{nonce}".encode(), hashlib.sha256
            ).hexdigest()
            await agent.connect(
                gateway.url,
                namespaces=["/agent"],
                auth={
                    "agentId": agent_id,
                    "timestamp": timestamp,
                    "nonce": nonce,
                    "signature": signature,
                },
            )
            await agent.call(
                "agent:register",
                {
                    "agentId": agent_id,
                    "name": "bench",
                    "capabilities": ["custom"],
                    "version": "bench",
                    "maxConcurrency": 1000,
                },
                namespace="/agent",
            )
            heartbeats = asyncio.create_task(_heartbeats(agent, agent_id))
            web = WebClient()
            await web.connect(gateway.url, await login(gateway.url, "bench", "bench-password"))
            latencies = []
            async with monitored(redis.masters if monitor else []) as commands:
                before = await redis.snapshot()
                for _ in range(starts):
                    arrival.clear()
                    sent = time.perf_counter()
                    answer = await web.ok(
                        "worker:start",
                        {"agentId": agent_id, "tool": "custom", "command": "true"},
                    )
                    while answer["taskId"] not in arrived:
                        await arrival.wait()
                        arrival.clear()
                    latencies.append((arrived[answer["taskId"]] - sent) * 1000)
                usage = await redis.since(before)
            await web.close()
            await cancel_and_wait(heartbeats)
            await agent.disconnect()
            return DispatchRun(latencies, usage, commands)
        finally:
            deployment.stop_all()


async def _heartbeats(agent: socketio.AsyncClient, agent_id: str) -> None:
    """What a real agent sends, so that a long run does not find its agent gone silent."""
    while True:
        await agent.emit(
            "agent:heartbeat",
            {
                "agentId": agent_id,
                "timestamp": now_iso(),
                "systemInfo": {"cpu": 0.0, "memory": 0.0, "disk": 0.0},
            },
            namespace="/agent",
        )
        await asyncio.sleep(1.0)


async def takeover(root: Path, lease_ttl_s: float) -> float:
    """Seconds from SIGKILL of one of three nodes until its partitions are held again."""
    async with RedisServer(data_dir=root / "redis-takeover", appendonly=False) as redis:
        deployment = Deployment(
            root / "takeover",
            redis.url,
            f"sqlite+aiosqlite:///{root / 'takeover.db'}",
            extra_env={"ORCHESTRA_LEASE_TTL_S": str(lease_ttl_s)},
        )
        deployment.root.mkdir(parents=True, exist_ok=True)
        try:
            nodes = [await deployment.start_gateway(f"t{i}") for i in range(3)]
            client = connect(redis.url)
            partitions = deployment.partitions
            await _settle(client, 3, partitions)
            victim = nodes[0]
            victim.kill()
            killed = time.perf_counter()
            while True:
                holders = [await client.get(keys.lease(p, partitions)) for p in range(partitions)]
                if all(h and not str(h).startswith("t0:") for h in holders):
                    break
                await asyncio.sleep(0.02)
            await client.aclose()
            return time.perf_counter() - killed
        finally:
            deployment.stop_all()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def compare(root: Path, args: argparse.Namespace) -> None:
    """Actor messages/s and dispatch latency on each `--redis` configuration, with
    `--gateways` gateways, `--runs` times each; then the figures side by side."""
    chosen = configs(args.redis)
    nodes = args.gateways or 3
    seen = {config.key: Observed(config) for config in chosen}
    for n in range(1, args.runs + 1):
        for config in chosen if n % 2 else chosen[::-1]:
            mine = seen[config.key]
            run = await actor_throughput(root, nodes, args.messages, config, appendonly=True)
            mine.rates.append(run.rate)
            mine.usages.append(run.usage)
            mine.extra.setdefault("gateways", []).append(run.gateways_cpu_pct)
            line = f"  run {n}, {config.label}: {run.rate:,.0f} actor messages/s"
            line += f" (load average {os.getloadavg()[0]:.1f})"
            if args.starts:
                starts = await start_to_assign(root, args.starts, config, nodes, appendonly=True)
                mine.extra.setdefault("p50", []).append(statistics.median(starts.latencies_ms))
                mine.extra.setdefault("p99", []).append(percentile(starts.latencies_ms, 0.99))
                mine.extra.setdefault("dispatch", []).append(starts.usage)
                line += f"; worker:start -> task:assign p50 {mine.extra['p50'][-1]:.1f} ms"
            print(line, flush=True)
    if args.monitor:
        for config in chosen:
            run = await actor_throughput(
                root, nodes, args.messages, config, appendonly=True, monitor=True
            )
            seen[config.key].extra["monitor"] = run
            if args.starts:
                seen[config.key].extra["monitor-starts"] = await start_to_assign(
                    root, args.starts, config, nodes, appendonly=True, monitor=True
                )
    raw = pickle.dumps(list(seen.values()))  # what the report is made of, kept
    (root / "observed.pickle").write_bytes(raw)
    print(f"\n{nodes} gateways, {args.messages:,} messages to {PROBES} actors a run")
    report_actors(list(seen.values()), args.messages, args.starts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--starts", type=int, default=300)
    parser.add_argument(
        "--redis",
        choices=CHOICES,
        help="compare Redis configurations (see the module's docstring); without it, "
        "one Redis with 1 and 3 gateways, a takeover and dispatch latency",
    )
    parser.add_argument("--gateways", type=int, help="with --redis: gateway processes (3)")
    parser.add_argument("--runs", type=int, default=1, help="with --redis: runs of each")
    parser.add_argument("--monitor", action="store_true", help="with --redis: see above")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orchestra-bench-"))
    if args.redis:
        await compare(root, args)
        return
    for nodes in (1, 3):
        rate = (await actor_throughput(root, nodes, args.messages)).rate
        print(
            f"actor messages handled/s, {nodes} node(s): {rate:,.0f}"
            f"  ({args.messages:,} messages, {PROBES} actors)"
        )
    lease_ttl_s = 6.0
    seconds = await takeover(root, lease_ttl_s)
    print(
        f"partitions of a SIGKILLed node (of 3) held again after {seconds:.1f} s"
        f" (lease {lease_ttl_s:g} s, renewal every {lease_ttl_s / 3:g} s)"
    )
    latencies = (await start_to_assign(root, args.starts)).latencies_ms
    print(
        f"worker:start -> task:assign at the agent, {args.starts} starts: "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
