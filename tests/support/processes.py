"""Real gateway and agent processes, started through the `orchestra` command like a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from orchestra.db import Store
from orchestra.redis_server import free_port
from orchestra.settings import Settings

DEFAULT_TIMEOUT_S = 60.0


async def wait_for(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll until `condition` returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


def process_alive(process: psutil.Process) -> bool:
    """True while the process runs (a zombie waiting for its parent does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Process:
    """A child `orchestra` process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Gateway(Process):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Deployment:
    """Redis + SQL + gateway and agent processes for one test, in one folder."""

    root: Path
    redis_url: str
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
        env.update(
            ORCHESTRA_REDIS_URL=self.redis_url,
            ORCHESTRA_DATABASE_URL=self.database_url,
            ORCHESTRA_DATA_DIR=str(self.root / "data"),
            ORCHESTRA_JWT_SECRET="test-jwt-secret-" + "x" * 32,
            ORCHESTRA_LOG_LEVEL="INFO",
            ORCHESTRA_HEARTBEAT_INTERVAL_S="2",
            # Agents run tasks in the test's folders (by default only under the home folder).
            ORCHESTRA_AGENT_ALLOWED_ROOTS=str(self.root),
            # Tests poll quickly; the rate limit has its own test with its own figure.
            ORCHESTRA_RATE_LIMIT_REQUESTS="1000000",
            # The chaos tests watch with many sockets of one user; the caps have their tests.
            ORCHESTRA_MAX_SOCKETS_PER_USER="1000",
            # Each test stops its gateways: no request of a test is in flight by then.
            ORCHESTRA_SHUTDOWN_TIMEOUT_S="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def orchestra(self, *args: str) -> str:
        """Run an `orchestra` command to completion; its standard output."""
        done = subprocess.run(
            [sys.executable, "-m", "orchestra", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"orchestra {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    @property
    def secrets_key(self) -> str:
        """The master key this deployment's gateways use (development: the one they keep in
        the data folder, made here if none is yet), which agent secrets are encrypted under."""
        return Settings.load(self.env).secrets_key

    @property
    def partitions(self) -> int:
        """The actor partition count this deployment's gateways use (`settings.partitions`):
        what the keys of a partition's things are built with (`orchestra.keys`)."""
        return Settings.load(self.env).partitions

    def store(self) -> Store:
        """A store on this deployment's database, with its gateways' secrets key."""
        return Store(self.database_url, secrets_key=self.secrets_key)

    async def create_user(self, name: str, password: str, *, admin: bool = False) -> None:
        """Straight into the SQL store: quicker than a command (test_up runs the command)."""
        async with self.store() as store:
            await store.create_user(name, password, is_admin=admin)

    async def create_agent(self, name: str, owner: str) -> tuple[str, Path]:
        """Register an agent for `owner`; its id and a file holding its secret."""
        async with self.store() as store:
            user = await store.get_user_by_name(owner)
            assert user is not None, f"no user {owner}"
            agent, secret = await store.create_agent(name, user.id, ["custom"])
        secret_file = self.root / f"{name}-{agent.id[:8]}.secret"
        secret_file.write_text(secret + "\n")
        return agent.id, secret_file

    def _spawn(
        self,
        name: str,
        args: list[str],
        cls: type[Process] = Process,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        log_path = self.root / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "orchestra", *args],
                env=self.env | (env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = cls(name=name, popen=popen, log_path=log_path, **extra)
        self.processes.append(process)
        return process

    async def start_gateway(self, node_id: str = "gw1", port: int | None = None) -> Gateway:
        port = port or free_port()
        gateway: Gateway = self._spawn(
            f"gateway-{node_id}",
            ["gateway", "--host", "127.0.0.1", "--port", str(port), "--node-id", node_id],
            Gateway,
            port=port,
        )
        await wait_for(
            lambda: _healthy(gateway), what=f"gateway {node_id} to answer /health", timeout_s=60
        )
        return gateway

    def start_agent(
        self,
        agent_id: str,
        secret_file: Path,
        server_url: str,
        env: dict[str, str] | None = None,
    ) -> Process:
        """An agent daemon; `env` adds to its environment (a PATH with fake tools, say)."""
        process: Process = self._spawn(
            f"agent-{agent_id[:8]}",
            [
                "agent",
                "--server",
                server_url,
                "--agent-id",
                agent_id,
                "--secret-file",
                str(secret_file),
                "--state-dir",
                str(self.root / "agents" / agent_id),
            ],
            env=env,
        )
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.log()[-6000:]}" for p in self.processes)


def _healthy(gateway: Gateway) -> bool:
    if not gateway.alive():
        raise AssertionError(f"gateway exited:\n{gateway.log()[-4000:]}")
    try:
        with urllib.request.urlopen(gateway.url + "/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def http(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A blocking JSON request; (status, body). Use through asyncio.to_thread in async tests."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


async def holds_every_partition(gateway: Gateway, partitions: int = 16) -> bool:
    """Whether `gateway` holds every actor partition (it is the only live node, and has
    taken over what a killed one held)."""
    status, health = await asyncio.to_thread(http, "GET", gateway.url + "/health")
    return status == 200 and sorted(health.get("partitions") or []) == list(range(partitions))
