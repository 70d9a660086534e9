"""The `custom` worker: runs a configured command and streams its stdout and stderr.

Each line becomes a `task:stream` item (`type` stdout or stderr). The command runs in its
own session, hence its own process group, so that a stop reaches every process it spawned
and nothing it left behind outlives the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

from agent_client.workers.base import (
    OutputSink,
    StopMode,
    Worker,
    WorkerExit,
    WorkerSpec,
    WorkerStartError,
    worker_environment,
)
from orchestra.codec import now_iso

__all__ = ["CustomWorker"]

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
# How long to let the pipes drain after the process group is gone: only a process that
# escaped the group (a new session of its own) could still hold them open.
_DRAIN_TIMEOUT_S = 2.0


class CustomWorker(Worker):
    """A command given as a string (run by `/bin/sh -c`) or as an argv list (exec'd)."""

    tool = "custom"

    def __init__(self, spec: WorkerSpec, emit: OutputSink) -> None:
        super().__init__(spec, emit)
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._escalation: asyncio.Task[None] | None = None
        self._inputs: asyncio.Queue[bytes] = asyncio.Queue()
        self._stop_requested = False
        self._done: asyncio.Task[WorkerExit] | None = None

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        command = parameters.get("command")
        if isinstance(command, str) and command.strip():
            return None
        if (
            isinstance(command, list)
            and command
            and all(isinstance(part, str) for part in command)
            and command[0]
        ):
            return None
        return "the custom tool needs parameters.command: a non-empty string or list of strings"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        command = self.spec.parameters.get("command")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command or [])
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.spec.working_directory,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=worker_environment(self.spec.task_id),
            )
        except (OSError, ValueError) as exc:
            raise WorkerStartError(f"cannot start {argv[0]!r}: {exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self._proc.stdout, "stdout")),
            asyncio.create_task(self._read(self._proc.stderr, "stderr")),
        ]
        self._writer = asyncio.create_task(self._write())
        self._done = asyncio.create_task(self._watch())
        log.info("task %s: started custom worker, pid %d", self.spec.task_id, self._proc.pid)

    async def send_input(self, text: str) -> None:
        if not text.endswith("\n"):
            text += "\n"
        # Queued, not written here: a process that never reads stdin would otherwise block
        # the command handler (and every command after it) once the pipe is full.
        self._inputs.put_nowait(text.encode())

    async def stop(self, mode: StopMode) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._stop_requested = True
        if mode == "kill":
            self._signal(signal.SIGKILL)
            return
        first = signal.SIGINT if mode == "interrupt" else signal.SIGTERM
        self._signal(first)
        if self._escalation is None or self._escalation.done():
            self._escalation = asyncio.create_task(self._escalate(first))

    async def wait(self) -> WorkerExit:
        if self._done is None:
            raise RuntimeError("the worker was not started")
        return await asyncio.shield(self._done)

    # -- internals -------------------------------------------------------------------

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the whole process group (its id is the leader's pid: a new session)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    async def _escalate(self, first: signal.Signals) -> None:
        """After SIGINT: SIGTERM then SIGKILL; after SIGTERM: SIGKILL; a grace period each."""
        assert self._proc is not None
        steps = [signal.SIGTERM, signal.SIGKILL] if first == signal.SIGINT else [signal.SIGKILL]
        for sig in steps:
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), self.spec.stop_grace_s)
                return
            except TimeoutError:
                log.info("task %s: still running, sending %s", self.spec.task_id, sig.name)
                self._signal(sig)

    async def _watch(self) -> WorkerExit:
        assert self._proc is not None
        code = await self._proc.wait()
        # The leader is gone; whatever it left running in its group goes too, so that the
        # task's end is the end of its processes (and of their hold on our pipes).
        self._signal(signal.SIGKILL)
        _, pending = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT_S)
        for reader in pending:
            log.warning("task %s: an escaped process holds the output open", self.spec.task_id)
            reader.cancel()
        for helper in (self._writer, self._escalation):
            if helper is not None:
                helper.cancel()
        await asyncio.gather(
            *pending,
            *(t for t in (self._writer, self._escalation) if t is not None),
            return_exceptions=True,
        )
        log.info("task %s: worker ended with code %s", self.spec.task_id, code)
        return WorkerExit(exit_code=code, stopped=self._stop_requested)

    async def _write(self) -> None:
        """Feed queued input to stdin, in order, until the process stops reading."""
        assert self._proc is not None and self._proc.stdin is not None
        stdin = self._proc.stdin
        while True:
            data = await self._inputs.get()
            try:
                stdin.write(data)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                log.info("task %s: stdin is closed, input dropped", self.spec.task_id)
                return

    async def _read(self, stream: asyncio.StreamReader, kind: str) -> None:
        """Turn one pipe into output items, one per line (long lines split into pieces)."""
        buffer = bytearray()
        limit = max(16, self.spec.max_chunk_bytes)
        while True:
            chunk = await stream.read(_READ_SIZE)
            if not chunk:
                break
            buffer += chunk
            while True:
                newline = buffer.find(b"\n")
                if newline < 0:
                    if len(buffer) <= limit:
                        break
                    cut = _utf8_boundary(buffer, limit)
                    self._emit_line(kind, bytes(buffer[:cut]))
                    del buffer[:cut]
                    continue
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                while len(line) > limit:
                    cut = _utf8_boundary(line, limit)
                    self._emit_line(kind, line[:cut])
                    line = line[cut:]
                self._emit_line(kind, line)
        if buffer:
            # A last line without a newline is still a line.
            self._emit_line(kind, bytes(buffer))

    def _emit_line(self, kind: str, line: bytes) -> None:
        self.emit(
            "task:stream",
            {"type": kind, "data": line.decode("utf-8", errors="replace"), "timestamp": now_iso()},
        )


def _utf8_boundary(data: bytes | bytearray, limit: int) -> int:
    """The largest cut at or below `limit` that does not split a UTF-8 character."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut or limit
