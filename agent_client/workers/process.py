"""A worker's child process: its own process group, pipes or a pseudo-terminal, its end.

Every adapter runs its tool through `ChildProcess`, so each gets the same guarantees:

- the process leads a new session, hence its own process group, so that a signal reaches
  every process it started and nothing it left behind outlives the task;
- stdout (and stderr, unless a pseudo-terminal merges them) are asyncio stream readers
  with no line limit: a tool's JSON line may be megabytes long;
- input is queued and written by one writer task, so a process that does not read its
  stdin never blocks the agent;
- the end is reaped with `wait4`, which also gives the CPU time and the peak resident
  memory of the process and of every descendant it waited for (`reaping`);
- its descendants are noted while it runs (`track_descendants`), so that those that left
  its process group for a session of their own (a tool's shell, `setsid`), which no group
  signal reaches, are killed when it ends (`finish`) or when asked (`kill_descendants`).

`stop_gracefully` is the stop sequence the AI CLIs need (close stdin, wait, SIGTERM,
wait, SIGKILL); `signal_group` is for SIGINT and an immediate SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import subprocess
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psutil

from agent_client.workers.reaping import ResourceUsage, reap_later

__all__ = ["DESCENDANTS_INTERVAL_S", "ChildProcess", "ResourceUsage", "read_lines"]

log = logging.getLogger(__name__)

# A reader's buffer may hold this much before it pauses the pipe: a generous bound that
# still keeps a runaway process from filling the agent's memory.
_READ_LIMIT = 256 * 1024 * 1024
DESCENDANTS_INTERVAL_S = 1.0
"""How often `track_descendants` looks: a tool's shell lives at least that long, mostly."""


class ChildProcess:
    """One started process; create it with `spawn`."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader | None,
        stdin: asyncio.StreamWriter | None,
        ended: asyncio.Future[tuple[int, ResourceUsage]],
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout = stdout
        self.stderr = stderr
        self._stdin = stdin
        self._ended = ended
        self._inputs: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name=f"stdin-{self.pid}")
        self._stdin_closed = stdin is None
        self._descendants: dict[int, float] = {}  # pid -> creation time, as noted
        self._tracker: asyncio.Task[None] | None = None
        try:  # created now, it knows if the pid is reused after the end (no children then)
            self._leader: psutil.Process | None = psutil.Process(self.pid)
        except psutil.Error:
            self._leader = None

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        pty: bool = False,
        track_descendants: bool = True,
    ) -> ChildProcess:
        """Start `argv` in `cwd`; OSError when it cannot be started. Its descendants are
        noted from the start (`track_descendants`) unless told otherwise."""
        loop = asyncio.get_running_loop()
        if pty:
            master, slave = os.openpty()
            try:
                # Fork and exec return at once (asyncio's own subprocesses do the same).
                popen = subprocess.Popen(  # noqa: ASYNC220
                    list(argv),
                    cwd=cwd,
                    env=dict(env),
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    start_new_session=True,
                    preexec_fn=_take_terminal,
                    close_fds=True,
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            out_file = os.fdopen(master, "rb", buffering=0)
            in_file = os.fdopen(os.dup(master), "wb", buffering=0)
            stdout = await _reader(loop, out_file)
            stdin = await _writer(loop, in_file)
            stderr = None
        else:
            popen = subprocess.Popen(  # noqa: ASYNC220
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
            assert popen.stdout is not None and popen.stderr is not None
            assert popen.stdin is not None
            stdout = await _reader(loop, popen.stdout)
            stderr = await _reader(loop, popen.stderr)
            stdin = await _writer(loop, popen.stdin)
        ended: asyncio.Future[tuple[int, ResourceUsage]] = loop.create_future()
        reap_later(loop, popen, ended)
        child = cls(popen, stdout, stderr, stdin, ended)
        if track_descendants:
            child.track_descendants()
        return child

    # -- input ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for stdin (dropped once stdin is closed)."""
        if not self._stdin_closed:
            self._inputs.put_nowait(data)

    def close_stdin(self) -> None:
        """Close stdin once everything queued before has been written."""
        if not self._stdin_closed:
            self._stdin_closed = True
            self._inputs.put_nowait(None)

    @property
    def stdin_closed(self) -> bool:
        return self._stdin_closed

    async def _write(self) -> None:
        stdin = self._stdin
        if stdin is None:
            return
        try:
            while True:
                data = await self._inputs.get()
                if data is None:
                    break
                stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError, OSError):
            log.info("process %d: stdin is closed, input dropped", self.pid)
        finally:
            with contextlib.suppress(Exception):
                stdin.close()

    # -- the end -------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return self._ended.result()[0] if self._ended.done() else None

    async def wait(self) -> tuple[int, ResourceUsage]:
        """The exit code (-N when killed by signal N) and what the process cost."""
        return await asyncio.shield(self._ended)

    async def wait_for(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the end; True when it ended."""
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), timeout_s)
        except TimeoutError:
            return False
        return True

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the whole process group (its id is the leader's pid: a new session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop_gracefully(self, grace_s: float, *, close_stdin: bool = True) -> None:
        """Close stdin (the CLIs then save and exit), then SIGTERM, then SIGKILL, each
        after `grace_s` without an end. Returns once the process has ended."""
        steps: list[signal.Signals | None] = [None] if close_stdin else []
        steps += [signal.SIGTERM, signal.SIGKILL]
        for step in steps:
            if self._ended.done():
                return
            if step is None:
                self.close_stdin()
            else:
                log.info("process %d: still running, sending %s", self.pid, step.name)
                if self._tracker is not None:
                    await self.note_descendants()  # those started since the last look too
                self.signal_group(step)
            if await self.wait_for(grace_s):
                return
        await self.wait()

    async def finish(self, *, kill_descendants: bool = True) -> None:
        """After the end: kill what the leader left in its group and (unless told not to:
        `kill_descendants` later) the noted descendants that escaped it; stop the writer."""
        self.signal_group(signal.SIGKILL)
        if self._tracker is not None:
            self._tracker.cancel()
            await asyncio.wait({self._tracker})
        if kill_descendants:
            self.kill_descendants()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    # -- descendants ---------------------------------------------------------------------

    def track_descendants(self, interval_s: float = DESCENDANTS_INTERVAL_S) -> None:
        """Note the descendants every `interval_s` while the process runs (once started,
        later calls do nothing). Once the process has ended, the descendants it left are
        orphans, no longer to be found from it: only what was noted can be killed. Each
        look is one scan of the process table, in a worker thread."""
        if self._tracker is None and not self._ended.done():
            name = f"descendants-{self.pid}"
            self._tracker = asyncio.create_task(self._track(interval_s), name=name)

    async def note_descendants(self) -> None:
        """Note the descendants now (say, before a signal: those started since the last
        look included)."""
        if self._leader is not None and not self._ended.done():
            self._descendants.update(await asyncio.to_thread(_descendants_of, self._leader))

    @property
    def descendants(self) -> Mapping[int, float]:
        """Every descendant noted so far, ended or not: pid -> creation time."""
        return MappingProxyType(self._descendants)

    def kill_descendants(self) -> None:
        """SIGKILL the noted descendants still running (and the group each leads), each
        only if it is still the same process: a pid reused since is left alone."""
        for pid, created in list(self._descendants.items()):
            with contextlib.suppress(psutil.Error, OSError):
                process = psutil.Process(pid)
                if process.create_time() != created or not process.is_running():
                    continue
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                process.kill()

    async def _track(self, interval_s: float) -> None:
        while not await self.wait_for(interval_s):
            await self.note_descendants()


async def read_lines(stream: asyncio.StreamReader, max_line_bytes: int) -> Any:
    """Yield the lines of `stream` (without the newline) as bytes, the last one even
    without a newline. A line longer than `max_line_bytes` is yielded in pieces of at
    most that size, each piece flagged: (line, complete)."""
    buffer = bytearray()
    while True:
        try:
            chunk = await stream.read(64 * 1024)
        except OSError as exc:  # a pseudo-terminal whose other side closed: EIO
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if not chunk:
            break
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > max_line_bytes:
                    yield bytes(buffer[:max_line_bytes]), False
                    del buffer[:max_line_bytes]
                    continue
                break
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            while len(line) > max_line_bytes:
                yield line[:max_line_bytes], False
                line = line[max_line_bytes:]
            yield line, True
    if buffer:
        yield bytes(buffer), True


# -- internals -------------------------------------------------------------------------


def _descendants_of(leader: psutil.Process) -> dict[int, float]:
    """The leader's descendants now, pid -> creation time (none once it is gone)."""
    found: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        for child in leader.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found[child.pid] = child.create_time()
    return found


def _take_terminal() -> None:
    """In the child (a new session already): make the pseudo-terminal its controlling
    terminal, so that Ctrl-C and job control behave as in a real terminal."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: Any) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


async def _writer(loop: asyncio.AbstractEventLoop, pipe: Any) -> asyncio.StreamWriter:
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop), pipe
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)
