"""Benchmarks of the actor runtime and of dispatch, on real processes.

    python -m benchmarks.actors_and_dispatch [--messages 20000] [--starts 300]

1. Actor messages handled per second, with 1 and with 3 gateway nodes: the benchmark
   puts `--messages` pings for 100 probe actors into the mailboxes at once, then times
   until every one has been handled (each is a full turn: state read, handler, fenced
   commit with the mailbox ack).
2. Time from `worker:start` (sent by a web client) to `task:assign` reaching the agent,
   p50 and p99 over `--starts` starts, one at a time, on one node.

Everything runs on this machine: a private Redis, SQLite, gateway processes started with
the `orchestra` command, a python-socketio web client and a minimal agent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio
from redis.asyncio import Redis

from actors import Address
from actors.messages import Message
from orchestra import keys
from orchestra.aio import cancel_and_wait
from orchestra.codec import now_iso
from orchestra.redis_server import RedisServer
from tests.support.processes import Deployment
from tests.support.web import WebClient, login

PROBES = 100


async def actor_throughput(root: Path, nodes: int, messages: int) -> float:
    async with RedisServer(data_dir=root / f"redis-{nodes}", appendonly=False) as redis:
        deployment = Deployment(
            root / f"nodes-{nodes}", redis.url, f"sqlite+aiosqlite:///{root / f'nodes-{nodes}.db'}"
        )
        deployment.root.mkdir(parents=True, exist_ok=True)
        try:
            for i in range(nodes):
                await deployment.start_gateway(f"bench{i}")
            client = Redis.from_url(redis.url, decode_responses=True)
            await _settle(client, nodes)
            partitions = 16
            pipe = client.pipeline(transaction=False)
            for i in range(messages):
                address = Address("probe", f"b{i % PROBES}")
                fields: Any = Message(to=str(address), type="ping").fields()
                pipe.xadd(keys.mailbox(address.partition(partitions)), fields)
            started = time.perf_counter()
            await pipe.execute()
            while True:
                counts = await asyncio.gather(
                    *(client.hget(keys.actor_state(f"probe:b{i}"), "count") for i in range(PROBES))
                )
                if sum(int(c or 0) for c in counts) >= messages:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            await client.aclose()
            return messages / elapsed
        finally:
            deployment.stop_all()


async def _settle(client: Redis, nodes: int) -> None:
    """Until the partitions are spread over all nodes (no lease moves during the run)."""
    while True:
        holders = {await client.get(f"orch:lease:{p}") for p in range(16)}
        owners = {str(h).split(":")[0] for h in holders if h}
        if len(owners) == nodes and None not in holders:
            await asyncio.sleep(3)  # one more lease round: nothing moves after this
            return
        await asyncio.sleep(0.2)


async def start_to_assign(root: Path, starts: int) -> list[float]:
    async with RedisServer(data_dir=root / "redis-dispatch", appendonly=False) as redis:
        deployment = Deployment(
            root / "dispatch", redis.url, f"sqlite+aiosqlite:///{root / 'dispatch.db'}"
        )
        deployment.root.mkdir(parents=True, exist_ok=True)
        try:
            await deployment.create_user("bench", "bench-password")
            agent_id, secret_file = await deployment.create_agent("bench-agent", owner="bench")
            gateway = await deployment.start_gateway("dispatch")
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
            for _ in range(starts):
                arrival.clear()
                sent = time.perf_counter()
                answer = await web.ok(
                    "worker:start", {"agentId": agent_id, "tool": "custom", "command": "true"}
                )
                while answer["taskId"] not in arrived:
                    await arrival.wait()
                    arrival.clear()
                latencies.append((arrived[answer["taskId"]] - sent) * 1000)
            await web.close()
            await cancel_and_wait(heartbeats)
            await agent.disconnect()
            return latencies
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
            client = Redis.from_url(redis.url, decode_responses=True)
            await _settle(client, 3)
            victim = nodes[0]
            victim.kill()
            killed = time.perf_counter()
            while True:
                holders = [await client.get(keys.lease(p)) for p in range(16)]
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--starts", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orchestra-bench-"))
    for nodes in (1, 3):
        rate = await actor_throughput(root, nodes, args.messages)
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
    latencies = await start_to_assign(root, args.starts)
    print(
        f"worker:start -> task:assign at the agent, {args.starts} starts: "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
