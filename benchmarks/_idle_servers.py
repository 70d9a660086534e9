"""The servers `benchmarks.idle_connections` holds idle connections to, each started as
one process (under tracemalloc when asked): an Orchestra gateway with Redis, SQLite and
signed-in users, and the bare python-socketio server of `benchmarks/_relay.py`.
"""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks._processes import orchestra_deployment, spawned, start_module
from orchestra import keys
from orchestra.redis_client import connect
from orchestra.redis_server import free_port
from tests.support.processes import Process, http, wait_for

PASSWORD = "idle-bench-password"
DEFAULT_SOCKETS_PER_USER = 32
"""The gateway's default cap of `/web` sockets a user."""


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


def traced_module(module: list[str], traced: Path | None) -> list[str]:
    """`module` (what follows `python -m`), run under tracemalloc when `traced` is a folder."""
    return ["benchmarks._traced", str(traced), *module] if traced else module


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
    async with orchestra_deployment(root, root, appendonly=False) as (redis, deployment):
        # The access tokens must outlive the run.
        deployment.extra_env["ORCHESTRA_ACCESS_TOKEN_TTL_S"] = "7200"
        per_user = math.ceil(connections / users)
        if per_user > DEFAULT_SOCKETS_PER_USER:  # the cap must not bite
            deployment.extra_env["ORCHESTRA_MAX_SOCKETS_PER_USER"] = str(per_user + 100)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        client = connect(redis.url)
        try:
            names = [f"idle-{n}" for n in range(users)]
            async with deployment.store() as store:
                gate = asyncio.Semaphore(4)

                async def create(name: str) -> None:
                    async with gate:
                        await store.create_user(name, PASSWORD)

                await asyncio.gather(*(create(name) for name in names))
            port = free_port()
            gateway = start_module(
                root,
                "gateway",
                traced_module(["orchestra", "gateway", "--host", "127.0.0.1", "--port",
                               str(port), "--node-id", "idle"], traced),
                env=deployment.env,
                preexec_fn=raise_child_limit,
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
        finally:
            await client.aclose()


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
    module = traced_module(["benchmarks._relay", "serve", "--port", str(port)], traced)
    async with spawned(root, "relay", module, preexec_fn=raise_child_limit) as relay:
        await wait_for(lambda: answers(url, relay), timeout_s=120, what="the relay")

        async def counted() -> int:
            _, body = await asyncio.to_thread(http, "GET", url + "/health")
            return int(body.get("web", -1))

        yield Server(
            "bare python-socketio", url, [], 0, psutil.Process(relay.popen.pid), counted, traced
        )
