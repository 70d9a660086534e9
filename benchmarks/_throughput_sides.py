"""The two systems `benchmarks.throughput` compares, each set up as a `Side`: Orchestra
(Redis with its append-only file, SQLite, a gateway and an agent daemon) and the bare
python-socketio relay with its producer (`benchmarks/_relay.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import socketio

from benchmarks._processes import spawned
from benchmarks._redis import SINGLE, RedisConfig, redis_deployment, wait_spread
from benchmarks._throughput_runs import Side
from orchestra.redis_server import free_port
from tests.support.processes import http, wait_for
from tests.support.web import login

PASSWORD = "throughput-bench-password"
WEB = "/web"
RELAY = "benchmarks._relay"


@asynccontextmanager
async def orchestra_side(
    root: Path, args: argparse.Namespace, config: RedisConfig = SINGLE
) -> AsyncIterator[Side]:
    """Redis (`config`), SQLite, `args.gateways` gateways, one agent daemon and a control
    client of its owner, both on the first gateway (watchers go to the others first)."""
    # Redis keeps its append-only file (everysec), as in docker-compose.yml.
    deployed = redis_deployment(config, root, root / "orchestra")
    async with deployed as (redis, deployment):
        # The agent's event rate limit (2,000/s sustained by default) is a policy, not a
        # capacity: out of the way here, as the per-user request limit is.
        deployment.extra_env |= {
            "ORCHESTRA_AGENT_RATE_LIMIT_PER_S": "1000000",
            "ORCHESTRA_AGENT_RATE_LIMIT_BURST": "1000000",
        }
        if args.loop_watch_ms:
            deployment.extra_env["ORCHESTRA_LOOP_STALL_WARN_MS"] = str(args.loop_watch_ms)
        deployment.root.mkdir(parents=True)
        control = socketio.AsyncClient(reconnection=False)
        try:
            await deployment.create_user("bench", PASSWORD)
            agent_id, secret_file = await deployment.create_agent("bench-agent", owner="bench")
            gateway = await deployment.start_gateway("throughput")
            gateways = [gateway]
            for n in range(1, args.gateways):
                gateways.append(await deployment.start_gateway(f"throughput{n}"))
            if args.gateways > 1:
                await wait_spread(redis.url, args.gateways, deployment.partitions)
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
                "Orchestra" if args.redis is None else f"Orchestra, {config.label}",
                gateway.url,
                auth,
                batch,
                root,
                new_sessions,
                start_worker,
                {
                    "server": [psutil.Process(g.popen.pid) for g in gateways],
                    "sender": psutil.Process(agent.popen.pid),
                    "Redis": redis.processes,
                },
                lambda: agent.log().count("disconnected from"),
                watch_urls=[g.url for g in gateways] if len(gateways) > 1 else [],
                redis=redis,
            )
        finally:
            if control.connected:
                await control.disconnect()


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

    async with spawned(root, "relay", [RELAY, "serve", "--port", str(port)]) as relay:
        await wait_for(
            lambda: asyncio.to_thread(lambda: producers() >= 0), what="the relay to answer"
        )
        async with spawned(root, "producer", [RELAY, "produce", "--url", url]) as producer:
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
