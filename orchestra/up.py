"""`orchestra up`: Redis, SQLite, one gateway and one local agent on this machine.

Everything lives in one data folder (mode 700): Redis's append-only file, the SQLite
database, the admin's password and the local agent's secret (all three mode 600). The
gateway and the agent run as child processes that die with this one; Ctrl-C stops all of
them, Redis last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from orchestra.files import PRIVATE_DIR, make_private_dir, tighten
from orchestra.logs import configure
from orchestra.redis_server import RedisServer, die_with_parent_preexec
from orchestra.settings import Settings

ADMIN = "admin"
LOCAL_AGENT = "local"


def up(args: argparse.Namespace) -> int:
    try:
        configure("INFO", _log_format(args))
        data_dir: Path = args.data_dir.resolve()
        # Secrets live in it: the owner's only (an existing folder is tightened, and logged).
        make_private_dir(data_dir)
        tighten(data_dir, PRIVATE_DIR, "data folder")
        return asyncio.run(_up(args, data_dir))
    except KeyboardInterrupt:
        return 0


async def _up(args: argparse.Namespace, data_dir: Path) -> int:
    redis = RedisServer(data_dir=data_dir / "redis", appendonly=True)
    await redis.start()
    children: list[subprocess.Popen[bytes]] = []
    # Where this run's private Redis answers, for `orchestra status --data-dir` (which
    # would otherwise look for Redis at its default address); removed at the end.
    running = running_redis_file(data_dir)
    try:
        _write_private(running, redis.url)
        env = dict(os.environ)
        env.update(
            ORCHESTRA_REDIS_URL=redis.url,
            ORCHESTRA_DATA_DIR=str(data_dir),
            ORCHESTRA_LOG_FORMAT=_log_format(args),
        )
        database_url = f"sqlite+aiosqlite:///{data_dir / 'orchestra.db'}"
        env.setdefault("ORCHESTRA_DATABASE_URL", database_url)
        # The key the gateway will use (the same environment, so the same key), which the
        # local agent's secret is kept encrypted under. Not put in the children's
        # environment: the agent and its workers have no use for it.
        settings = Settings.load(env)
        secrets_key = settings.secrets_key
        await _migrate(redis.url, settings.partitions)
        password = await _ensure_admin(env, data_dir, secrets_key)
        url = f"http://{args.host}:{args.port}"
        children.append(
            _spawn(
                ["gateway", "--host", args.host, "--port", str(args.port), "--node-id", "up"], env
            )
        )
        await asyncio.to_thread(_wait_healthy, url, children[0])
        agent_line = "  (no local agent: --no-agent)"
        if not args.no_agent:
            agent_id, secret_file = await _ensure_local_agent(env, data_dir, secrets_key)
            children.append(
                _spawn(
                    [
                        "agent",
                        "--server",
                        url,
                        "--agent-id",
                        agent_id,
                        "--secret-file",
                        str(secret_file),
                    ],
                    env,
                )
            )
            agent_line = f"  local agent: {agent_id}"
        print(
            f"\nOrchestra is running at {url}\n"
            f"  admin:       {ADMIN} / {password}\n"
            f"{agent_line}\n"
            f"  data:        {data_dir}\n\n"
            "Another agent, from a second terminal:\n"
            f"  orchestra agent create laptop --data-dir {data_dir} --secret-file laptop.secret\n"
            f"  orchestra agent --server {url} --agent-id <the id it printed> "
            "--secret-file laptop.secret\n\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        await _wait_for_exit(children)
        return 0
    finally:
        for child in reversed(children):
            _stop(child)
        running.unlink(missing_ok=True)
        await redis.stop()


async def _migrate(redis_url: str, partitions: int) -> None:
    """Data an older version left in this folder's Redis (or placed for another partition
    count), moved to this version's key layout (`gateway.migrate`): this process owns the
    only node there is."""
    migrate = importlib.import_module("gateway.migrate").migrate
    report = await migrate(redis_url, partitions, owned=True)
    if report.changed:
        print(f"orchestra up: Redis data migrated: {report.line()}", flush=True)


def running_redis_file(data_dir: Path) -> Path:
    """The file naming the Redis of an `orchestra up` running on `data_dir`."""
    return data_dir / "redis" / "running.url"


def _log_format(args: argparse.Namespace) -> str:
    """The children's log format: --log-format, ORCHESTRA_LOG_FORMAT, or text (a person
    reads them in the terminal `up` runs in)."""
    given: str | None = getattr(args, "log_format", None)
    return given or os.environ.get("ORCHESTRA_LOG_FORMAT") or "text"


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestra", *command],
        env=env,
        preexec_fn=die_with_parent_preexec(),
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _wait_for_exit(children: list[subprocess.Popen[bytes]]) -> None:
    """Until Ctrl-C, SIGTERM, or a child exiting by itself."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for child in children:
            if child.poll() is not None:
                print(
                    f"orchestra up: a child exited with status {child.returncode}", file=sys.stderr
                )
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def _wait_healthy(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"orchestra up: the gateway exited with status {child.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"orchestra up: the gateway did not answer at {url} within {timeout_s:g} s")


async def _ensure_admin(env: dict[str, str], data_dir: Path, secrets_key: str) -> str:
    from orchestra.db import Store

    password_file = data_dir / "admin-password"
    store = await Store.connect(env["ORCHESTRA_DATABASE_URL"], secrets_key=secrets_key)
    try:
        if await store.get_user_by_name(ADMIN) is None:
            password = secrets.token_urlsafe(12)
            await store.create_user(ADMIN, password, is_admin=True)
            _write_private(password_file, password)
            return password
    finally:
        await store.close()
    try:
        return password_file.read_text().strip()
    except FileNotFoundError:
        return f"(unchanged; not in {password_file})"


async def _ensure_local_agent(
    env: dict[str, str], data_dir: Path, secrets_key: str
) -> tuple[str, Path]:
    from orchestra.db import Store

    id_file = data_dir / "local-agent.id"
    secret_file = data_dir / "local-agent.secret"
    store = await Store.connect(env["ORCHESTRA_DATABASE_URL"], secrets_key=secrets_key)
    try:
        if id_file.exists() and secret_file.exists():
            agent_id = id_file.read_text().strip()
            if await store.agent_secret(agent_id) is not None:
                return agent_id, secret_file
        admin = await store.get_user_by_name(ADMIN)
        assert admin is not None
        agent, secret = await store.create_agent(LOCAL_AGENT, admin.id, ["custom"])
    finally:
        await store.close()
    _write_private(secret_file, secret)
    id_file.write_text(agent.id + "\n")
    return agent.id, secret_file


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
