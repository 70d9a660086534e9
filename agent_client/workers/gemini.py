"""The `gemini` worker: Gemini CLI headless (`-o stream-json`), one process a turn.

A turn runs `gemini -o stream-json --skip-trust --approval-mode=M [--model=X] [--resume=ID]`
with the prompt on stdin (never in argv, which every local user can read); the session id of
its `init` event resumes the conversation in the next turn. Headless, gemini cannot ask for
permission: tools the approval mode does not allow are not offered to the model, and a call
to one gets an error result. SIGINT ends a turn at once (exit 0, no `result` event); a shell
tool runs in a session of its own and would outlive it, so the adapter kills the
descendants its `ChildProcess` noted: at the end of a turn interrupted or stopped, else when
the worker ends. What the CLI prints becomes output items in `gemini_items`. Gemini CLI
0.61.0's behaviour, as the adapter relies on it, is recorded in
tests/e2e/test_gemini_cli_facts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import signal
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_client.workers.base import (
    PermissionDecision,
    StopMode,
    Worker,
    WorkerExit,
    WorkerHost,
    WorkerSpec,
    WorkerStartError,
    describe_exit,
    worker_environment,
)
from agent_client.workers.gemini_items import GeminiItems, TurnOutput
from agent_client.workers.process import ChildProcess, ResourceUsage, read_lines

__all__ = ["APPROVAL_MODES", "GeminiWorker", "approval_note"]

log = logging.getLogger(__name__)

# fmt: off
APPROVAL_MODES = {"default": "default", "auto_edit": "auto_edit", "yolo": "yolo", "plan": "plan",
                  "acceptEdits": "auto_edit", "bypassPermissions": "yolo"}
_ALLOWS = {"default": "read-only tools: read, list, search", "plan": "read-only tools, plans",
           "auto_edit": "read-only tools, file edits, web fetch", "yolo": "every tool, shell too"}
# fmt: on
_MAX_LINE = 64 * 1024 * 1024  # one stream-json line may carry megabytes
_DRAIN_S = 2.0  # for the pipes, once the process has gone
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOISE = ("Warning: 256-color", "Ripgrep is not", "YOLO mode is", "[STARTUP]", "Warning: --")
_SAFE_ARG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")


def approval_note(mode: str) -> str:
    """What the user is told at the start: gemini will not ask, the approval mode decides."""
    return (
        "gemini runs headless and cannot ask for permission: tools run as approval mode "
        f"{mode} allows ({_ALLOWS[mode]}); others are refused: gemini does not offer them to "
        'the model, and a call to one ends in an error result ("Tool ... not found", or '
        '"... requires user confirmation, which is not supported in non-interactive mode")'
    )


@dataclass
class _Turn:
    proc: ChildProcess
    out: TurnOutput = field(default_factory=TurnOutput)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    helpers: list[asyncio.Task[None]] = field(default_factory=list)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    interrupted: bool = False


class GeminiWorker(Worker):
    """Gemini CLI, one headless process a turn, resumed with `--resume=<session id>`."""

    tool = "gemini"
    executable_name = "gemini"

    def __init__(self, spec: WorkerSpec, host: WorkerHost) -> None:
        super().__init__(spec, host)
        mode = str(spec.parameters.get("permissionMode") or "default")
        self._mode = APPROVAL_MODES.get(mode, "default")
        session = spec.parameters.get("workerSessionId")
        self._session_id: str | None = session if isinstance(session, str) and session else None
        self._secret = spec.secrets.get("apiKey") or ""  # also what `redact` hides
        self._out = GeminiItems(host, spec.max_chunk_bytes, self._secret, self._mode)
        self._inputs: deque[str] = deque()
        self._wake = asyncio.Event()
        self._turn: _Turn | None = None
        self._eof = False
        self._stop: StopMode | None = None
        self._exit_code = 0
        self._error: str | None = None
        self._usage = {"inputTokens": 0, "outputTokens": 0, "cacheReadTokens": 0}
        self._costs: list[ResourceUsage] = []
        self._spared: list[ChildProcess] = []  # turns whose descendants end with the worker
        self._argv0 = ""
        self._env: dict[str, str] = {}
        self._driver: asyncio.Task[WorkerExit] | None = None

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        mode = parameters.get("permissionMode") or "default"
        if not isinstance(mode, str) or mode not in APPROVAL_MODES:
            return f"permissionMode must be one of {', '.join(APPROVAL_MODES)} for gemini"
        for key in ("model", "workerSessionId"):
            value = parameters.get(key)
            if value is not None and not (isinstance(value, str) and _SAFE_ARG.match(value)):
                return f"{key} must be a plain name (letters, digits, . _ : / @ -)"
        if any(not isinstance(parameters.get(k) or "", str) for k in ("prompt", "baseUrl")):
            return "prompt and baseUrl must be strings"
        tools = parameters.get("allowedTools") or []
        if not (isinstance(tools, list) and all(isinstance(t, str) and t for t in tools)):
            return "allowedTools must be a list of tool names"
        return None

    @property
    def pid(self) -> int | None:
        return self._turn.proc.pid if self._turn is not None else None

    async def start(self) -> None:
        problem = self.check(self.spec.parameters)
        if problem is not None:
            raise WorkerStartError(problem)
        extra = {"GEMINI_API_KEY": self._secret} if self._secret else {}
        base_url = self.spec.parameters.get("baseUrl")
        if isinstance(base_url, str) and base_url:
            extra["GOOGLE_GEMINI_BASE_URL"] = base_url
        self._env = worker_environment(self.spec, extra)
        found = self.spec.executable or shutil.which("gemini", path=self._env.get("PATH"))
        if not found:
            raise WorkerStartError("the gemini CLI is not installed here")
        self._argv0 = found
        note = approval_note(self._mode)
        self.host.control("worker:status", {"status": "running", "message": note})
        prompt = self.spec.parameters.get("prompt")
        first = await self._spawn(prompt) if isinstance(prompt, str) and prompt.strip() else None
        self._driver = asyncio.create_task(self._drive(first), name=f"gemini-{self.spec.task_id}")

    async def send_input(self, text: str, eof: bool = False) -> None:
        """The next turn's prompt, queued while a turn runs; `eof`: no turn after those."""
        if self._driver is None or self._driver.done() or self._stop is not None:
            log.info("task %s: input for an ended gemini worker dropped", self.spec.task_id)
            return
        if text.strip() and self._eof:
            log.info("task %s: input after the end of input dropped", self.spec.task_id)
        elif text.strip():
            self._inputs.append(text)
        self._eof = self._eof or eof
        self._wake.set()

    async def interrupt(self) -> None:
        """SIGINT to the running turn (SIGTERM, then SIGKILL, if it lingers); the worker
        stays for the next input."""
        turn = self._turn
        if turn is None or turn.proc.returncode is not None or turn.interrupted:
            return
        turn.interrupted = True
        self._escalate(turn, [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])

    async def stop(self, mode: StopMode) -> None:
        if self._driver is None or self._driver.done() or self._stop is not None:
            return
        self._stop = mode
        self._inputs.clear()
        self._wake.set()
        turn = self._turn
        if turn is None or turn.proc.returncode is not None:
            return
        # `kill`: SIGKILL now; `terminate`: SIGTERM (gemini exits 0 on it), then SIGKILL.
        self._escalate(turn, [signal.SIGTERM, signal.SIGKILL][mode == "kill" :])

    async def decide(self, decision: PermissionDecision) -> None:
        log.info("task %s: gemini never asks; the decision on %s is dropped",
                 self.spec.task_id, decision.permission_id)  # fmt: skip

    async def wait(self) -> WorkerExit:
        if self._driver is None:
            raise RuntimeError("the worker was not started")
        return await asyncio.shield(self._driver)

    # -- turns -----------------------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [self._argv0, "-o", "stream-json", "--skip-trust", f"--approval-mode={self._mode}"]
        model, tools = self.spec.parameters.get("model"), self.spec.parameters.get("allowedTools")
        if isinstance(model, str) and model:
            argv.append(f"--model={model}")
        if isinstance(tools, list) and tools:
            argv.append("--allowed-tools=" + ",".join(tools))
        if self._session_id:
            argv.append(f"--resume={self._session_id}")
        return argv

    async def _spawn(self, prompt: str) -> _Turn:
        try:
            proc = await ChildProcess.spawn(
                self._argv(), cwd=self.spec.working_directory, env=self._env
            )
        except (OSError, ValueError) as exc:
            raise WorkerStartError(f"cannot start {self._argv0!r}: {exc}") from exc
        proc.write(prompt.encode())
        proc.close_stdin()
        self._out.emit_text("user", prompt, {})
        self._turn = turn = _Turn(proc)
        turn.readers = [asyncio.create_task(self._read_stdout(turn)),
                        asyncio.create_task(self._read_stderr(turn))]  # fmt: skip
        log.info("task %s: gemini turn %d, pid %d", self.spec.task_id, len(self._costs) + 1,
                 proc.pid)  # fmt: skip
        return turn

    async def _drive(self, turn: _Turn | None) -> WorkerExit:
        """Run the turns one after another until the input ends, a stop or a failure."""
        while True:
            if turn is not None:
                await self._finish(turn)
                turn = None
            if self._stop is not None or self._error is not None:
                break
            if self._inputs:
                try:
                    turn = await self._spawn(self._inputs.popleft())
                except WorkerStartError as exc:
                    self._error = str(exc)
                continue
            if self._eof:
                break
            self._wake.clear()
            await self._wake.wait()
        if self._inputs:
            log.info("task %s: %d queued inputs dropped", self.spec.task_id, len(self._inputs))
        for proc in self._spared:
            proc.kill_descendants()
        costs = self._costs
        usage = ResourceUsage(sum(c.cpu_user_s for c in costs), sum(c.cpu_system_s for c in costs),
                              max((c.max_rss_bytes for c in costs), default=0))  # fmt: skip
        result = {"workerSessionId": self._session_id, "usage": dict(self._usage),
                  "turns": len(costs)}  # fmt: skip
        return WorkerExit(
            exit_code=self._exit_code,
            stopped=self._stop is not None,
            error=self._error,
            succeeded=self._error is None and self._stop is None,
            result=result,
            resource_usage=usage.wire() if costs else None,
        )

    async def _finish(self, turn: _Turn) -> None:
        """Wait for a turn's end; close it with a `result` item if the CLI printed none."""
        code, usage = await turn.proc.wait()
        # A tool's shell outlives the CLI (a session of its own): it ends with a turn cut
        # short, else with the worker.
        cut_short = turn.interrupted or self._stop is not None
        await turn.proc.finish(kill_descendants=cut_short)
        if not cut_short:
            self._spared.append(turn.proc)
        _, pending = await asyncio.wait(turn.readers, timeout=_DRAIN_S)
        for task in [*pending, *turn.helpers]:
            task.cancel()
        await asyncio.gather(*pending, *turn.helpers, return_exceptions=True)
        self._turn = None
        self._out.flush_text(turn.out)
        self._session_id = turn.out.session_id or self._session_id
        for key, value in turn.out.usage.items():
            self._usage[key] += value
        self._costs.append(usage)
        if self._stop is not None or not turn.interrupted:
            self._exit_code = code  # an interrupted turn is no failure, whatever its code
        details: dict[str, Any] = {"isError": False, "exitCode": code}
        if self._stop is not None:
            pass  # the task ends cancelled: no turn result
        elif turn.interrupted and not turn.out.result_seen:
            self._out.emit("result", "interrupted", details | {"interrupted": True})
        elif code != 0:
            self._error = self._failure(turn, code)
            if not turn.out.result_seen:
                self._out.emit("result", self._error, details | {"isError": True})
        elif not turn.out.result_seen:
            self._out.emit_cut("result", turn.out.last_text, details)
        log.info("task %s: gemini turn ended with code %d", self.spec.task_id, code)

    def _failure(self, turn: _Turn, code: int) -> str:
        lines = [s.strip() for s in turn.stderr if s.strip() and not s.startswith(_NOISE)]
        lines = [line for line in lines if not line.startswith("at ")]  # a stack trace
        detail = turn.out.error or " ".join(lines[-3:])
        message = f"gemini failed ({describe_exit(code).removeprefix('the worker ')})"
        message += f": {detail}" if detail else ""
        if "Invalid auth method selected" in detail:
            message += (" (with a base URL, headless gemini needs security.auth.selectedType "
                        '"gemini-api-key" in its settings.json: gemini-cli#27550)')  # fmt: skip
        return message[:2000]

    def _escalate(self, turn: _Turn, signals: list[signal.Signals]) -> None:
        async def in_turn() -> None:
            for sig in signals:
                await turn.proc.note_descendants()  # those started since the last look too
                turn.proc.signal_group(sig)
                if await turn.proc.wait_for(self.spec.stop_grace_s):
                    return

        turn.helpers.append(asyncio.create_task(in_turn()))

    # -- output ----------------------------------------------------------------------

    async def _read_stdout(self, turn: _Turn) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for line, complete in read_lines(turn.proc.stdout, _MAX_LINE):
                text = line.decode("utf-8", errors="replace")
                event: Any = None
                if complete and text.startswith("{"):
                    with contextlib.suppress(ValueError):
                        event = json.loads(text)
                if not (isinstance(event, dict) and self._out.on_event(turn.out, event)):
                    self._out.log("log", text)

    async def _read_stderr(self, turn: _Turn) -> None:
        assert turn.proc.stderr is not None
        with contextlib.suppress(asyncio.CancelledError):
            async for line, _ in read_lines(turn.proc.stderr, _MAX_LINE):
                text = _ANSI.sub("", line.decode("utf-8", errors="replace"))
                turn.stderr.append(self._out.redact(text[:2000]))
                self._out.log("stderr", text)
