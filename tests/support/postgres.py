"""A real PostgreSQL for tests: a server to talk to, and a fresh database on it per test session.

Which server, in this order:
1. ``ORCHESTRA_TEST_POSTGRES_URL`` (e.g. ``postgresql://user:pw@host:5432/postgres``), when set;
2. the server at 127.0.0.1:5432 as user ``postgres``, when it lets us in without a password;
3. a private server started from the binaries under ``/usr/lib/postgresql/*/bin`` (or on PATH),
   in a temporary folder, on a free port, and stopped afterwards. As root it runs as the
   ``postgres`` OS user, since PostgreSQL refuses to run as root.

On that server `postgres_database` creates ``orch_test_<hex>`` and drops it at the end, so runs
never see each other's tables. A session-scoped fixture can be written from it as::

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def postgres_url() -> AsyncIterator[str]:
        async with postgres_database() as url:
            yield url
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url

__all__ = ["PostgresServer", "postgres_database", "postgres_server"]

ENV_URL = "ORCHESTRA_TEST_POSTGRES_URL"
_LOCAL_HOST, _LOCAL_PORT = "127.0.0.1", 5432
_START_TIMEOUT = 60.0  # seconds for a private server to accept connections
_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class PostgresServer:
    """Where a server listens and who may create databases on it."""

    host: str
    port: int
    user: str
    password: str | None = None
    admin_database: str = "postgres"

    def connect_args(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `asyncpg.connect`."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database or self.admin_database,
        }

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (``postgresql+asyncpg://``) for ``database`` on this server."""
        url = URL.create(
            "postgresql+asyncpg",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        )
        return url.render_as_string(hide_password=False)


async def _accepts(server: PostgresServer, connect_timeout: float = 3.0) -> bool:
    try:
        conn = await asyncpg.connect(**server.connect_args(), timeout=connect_timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


def _server_from_env(value: str) -> PostgresServer:
    url = make_url(value)
    return PostgresServer(
        host=url.host or _LOCAL_HOST,
        port=url.port or _LOCAL_PORT,
        user=url.username or "postgres",
        password=url.password,
        admin_database=url.database or "postgres",
    )


def _find_bin_dir() -> Path:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "no PostgreSQL for the tests: set ORCHESTRA_TEST_POSTGRES_URL, run a server on "
        "127.0.0.1:5432 that trusts user postgres, or install the server binaries (initdb)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_LOCAL_HOST, 0))
        return int(sock.getsockname()[1])


async def _run(argv: list[str], run_as: dict[str, Any], cwd: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        **run_as,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {out.decode(errors='replace')}")


@asynccontextmanager
async def _private_server() -> AsyncIterator[PostgresServer]:
    bin_dir = _find_bin_dir()
    run_as: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    if os.geteuid() == 0:
        # PostgreSQL will not run as root: hand the folder to the postgres user and run as it.
        # (subprocess's user/group is `runuser -u postgres` without a wrapper process between
        # us and the postmaster, so signals reach the server itself.)
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data = base / "data"
    log = base / "postgres.log"
    proc: asyncio.subprocess.Process | None = None
    try:
        settings = "-U postgres -A trust -E UTF8 --locale=C --no-sync".split()
        await _run([str(bin_dir / "initdb"), "-D", str(data), *settings], run_as, base)
        port = _free_port()
        # Throwaway data: durability would only cost time here.
        options = "fsync=off synchronous_commit=off full_page_writes=off".split()
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base)]
        argv += ["-c", f"listen_addresses={_LOCAL_HOST}"]
        argv += [arg for option in options for arg in ("-c", option)]
        with log.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=base, stdout=log_file, stderr=log_file, **run_as
            )
        server = PostgresServer(host=_LOCAL_HOST, port=port, user="postgres")
        deadline = time.monotonic() + _START_TIMEOUT
        while not await _accepts(server, connect_timeout=1.0):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private PostgreSQL did not start: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)  # poll interval while the server starts up
        yield server
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: end sessions, then exit
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@asynccontextmanager
async def postgres_server() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server to use, found or started as the module docstring says."""
    if os.environ.get(ENV_URL):
        server = _server_from_env(os.environ[ENV_URL])
        if not await _accepts(server):
            raise RuntimeError(f"{ENV_URL} is set but its server does not accept connections")
        yield server
        return
    local = PostgresServer(host=_LOCAL_HOST, port=_LOCAL_PORT, user="postgres")
    if await _accepts(local):
        yield local
        return
    async with _private_server() as server:
        yield server


@asynccontextmanager
async def postgres_database(server: PostgresServer | None = None) -> AsyncIterator[str]:
    """A new, empty database (on ``server``, or on `postgres_server`), dropped afterwards.

    Yields its ``postgresql+asyncpg://`` URL.
    """
    if server is None:
        async with postgres_server() as found, postgres_database(found) as url:
            yield url
        return
    name = f"orch_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(**server.connect_args())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield server.url(name)
    finally:
        admin = await asyncpg.connect(**server.connect_args())
        try:
            # A pool left open by a failed test must not keep the database from being dropped.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await admin.close()
