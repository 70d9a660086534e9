"""The `custom` worker: runs any command and streams what it prints.

Each line becomes a `task:stream` item (`type` stdout or stderr; with `pty: true` the
command runs in a pseudo-terminal, colours and all, and everything is `stdout`). The
command runs in its own session, hence its own process group: `interrupt` is SIGINT to the
group (escalating to SIGTERM and SIGKILL if it does not end), `kill` is SIGKILL to the
group. `timeoutS` ends it as an error once it has run that long. Input goes to stdin
(`eof` closes it). The result carries the exit code and `resourceUsage`: the CPU time and
peak memory of the command and everything it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from typing import Any

from agent_client.workers.base import (
    StopMode,
    Worker,
    WorkerExit,
    WorkerHost,
    WorkerSpec,
    WorkerStartError,
    worker_environment,
)
from agent_client.workers.items import utf8_boundary
from agent_client.workers.process import ChildProcess, read_lines
from orchestra.codec import now_iso

__all__ = ["CustomWorker"]

log = logging.getLogger(__name__)

# How long to let the pipes drain after the process group is gone: only a process that
# escaped the group (a new session of its own) could still hold them open.
_DRAIN_TIMEOUT_S = 2.0


class CustomWorker(Worker):
    """A command given as a string (run by `/bin/sh -c`) or as an argv list (exec'd)."""

    tool = "custom"

    def __init__(self, spec: WorkerSpec, host: WorkerHost) -> None:
        super().__init__(spec, host)
        self._proc: ChildProcess | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._escalation: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._timed_out = False
        self._done: asyncio.Task[WorkerExit] | None = None

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        command = parameters.get("command")
        timeout_s = parameters.get("timeoutS")
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
        ):
            return "timeoutS must be a positive number of seconds"
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
        pty = bool(self.spec.parameters.get("pty"))
        try:
            self._proc = await ChildProcess.spawn(
                argv, cwd=self.spec.working_directory, env=worker_environment(self.spec), pty=pty
            )
        except (OSError, ValueError) as exc:
            raise WorkerStartError(f"cannot start {argv[0]!r}: {exc}") from exc
        proc = self._proc
        self._readers = [asyncio.create_task(self._read(proc.stdout, "stdout"))]
        if proc.stderr is not None:
            self._readers.append(asyncio.create_task(self._read(proc.stderr, "stderr")))
        timeout_s = self.spec.parameters.get("timeoutS")
        if isinstance(timeout_s, int | float) and timeout_s > 0:
            self._timer = asyncio.create_task(self._time_out(float(timeout_s)))
        self._done = asyncio.create_task(self._watch())
        log.info("task %s: started custom worker, pid %d", self.spec.task_id, proc.pid)

    async def send_input(self, text: str, eof: bool = False) -> None:
        if self._proc is None:
            return
        if text:
            if not text.endswith("\n") and not eof:
                text += "\n"
            self._proc.write(text.encode())
        if eof:
            if self.spec.parameters.get("pty"):
                self._proc.write(b"\x04")  # Ctrl-D: what a terminal sends for end of input
            else:
                self._proc.close_stdin()

    async def interrupt(self) -> None:
        """SIGINT to the group; SIGTERM, then SIGKILL, if it does not end."""
        if self._begin_stop():
            self._escalate([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])

    async def stop(self, mode: StopMode) -> None:
        if not self._begin_stop():
            return
        if mode == "kill":
            assert self._proc is not None
            self._proc.signal_group(signal.SIGKILL)
        else:
            self._escalate([signal.SIGTERM, signal.SIGKILL])

    async def wait(self) -> WorkerExit:
        if self._done is None:
            raise RuntimeError("the worker was not started")
        return await asyncio.shield(self._done)

    # -- internals -------------------------------------------------------------------

    def _begin_stop(self) -> bool:
        if self._proc is None or self._proc.returncode is not None:
            return False
        self._stop_requested = True
        return True

    def _escalate(self, signals: list[signal.Signals]) -> None:
        if self._escalation is None or self._escalation.done():
            self._escalation = asyncio.create_task(self._signal_in_turn(signals))

    async def _signal_in_turn(self, signals: list[signal.Signals]) -> None:
        """Each signal in turn, the next only if the process outlives a grace period."""
        assert self._proc is not None
        for sig in signals:
            self._proc.signal_group(sig)
            if await self._proc.wait_for(self.spec.stop_grace_s):
                return
            log.info("task %s: still running after %s", self.spec.task_id, sig.name)

    async def _time_out(self, timeout_s: float) -> None:
        assert self._proc is not None
        if await self._proc.wait_for(timeout_s):
            return
        log.info("task %s: timed out after %g s", self.spec.task_id, timeout_s)
        self._timed_out = True
        self._escalate([signal.SIGTERM, signal.SIGKILL])

    async def _watch(self) -> WorkerExit:
        assert self._proc is not None
        code, usage = await self._proc.wait()
        # The leader is gone; whatever it left running in its group goes too, so that the
        # task's end is the end of its processes (and of their hold on our pipes).
        await self._proc.finish()
        _, pending = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT_S)
        for reader in pending:
            log.warning("task %s: an escaped process holds the output open", self.spec.task_id)
            reader.cancel()
        helpers = [t for t in (self._escalation, self._timer) if t is not None]
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*pending, *helpers, return_exceptions=True)
        log.info("task %s: worker ended with code %s", self.spec.task_id, code)
        error = None
        if self._timed_out:
            error = f"the command timed out after {self.spec.parameters.get('timeoutS')} s"
        return WorkerExit(
            exit_code=code,
            stopped=self._stop_requested and not self._timed_out,
            error=error,
            resource_usage=usage.wire(),
        )

    async def _read(self, stream: asyncio.StreamReader, kind: str) -> None:
        """Turn one pipe into output items, one per line (long lines split into pieces)."""
        limit = max(16, self.spec.max_chunk_bytes)
        carry = b""  # the end of a cut piece that would split a UTF-8 character
        with contextlib.suppress(asyncio.CancelledError):
            async for piece, complete in read_lines(stream, limit):
                data = carry + piece
                carry = b""
                while len(data) > limit:
                    cut = utf8_boundary(data, limit)
                    self._emit_line(kind, data[:cut])
                    data = data[cut:]
                if complete:
                    self._emit_line(kind, data)
                else:
                    carry = data
        if carry:
            self._emit_line(kind, carry)

    def _emit_line(self, kind: str, line: bytes) -> None:
        self.host.output(
            "task:stream",
            {"type": kind, "data": line.decode("utf-8", errors="replace"), "timestamp": now_iso()},
        )
