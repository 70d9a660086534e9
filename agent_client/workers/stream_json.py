"""The stream-json adapter: Claude Code and Qwen Code through their machine interface.

Both CLIs read JSON lines on stdin (user messages, and control requests of the host) and
print JSON lines on stdout (what the session does, control requests of their own, one
`result` per turn). A `StreamJsonWorker` subclass is one dialect: its command line, its
environment and its `initialize` request; everything else is shared here:

- the process stays up between turns: `send_input` is the next user message, sent at once
  (the CLI queues what arrives during a turn); `eof` closes stdin, and the CLI ends after
  its last turn;
- `interrupt` is the control request `interrupt`: the turn ends (its `result` item says
  `details.interrupted`) and the worker stays for more input;
- a `can_use_tool` control request becomes a permission request (its `request_id` is the
  permissionId); `decide` answers it once. A request the CLI cancels, or that is still
  open when its turn ends, is reported `worker:permission:cancelled`, and a later answer
  is dropped. "Allow for the session" is passed on as a session rule for the whole tool,
  and the worker itself allows that tool from then on without asking anyone;
- a turn that ends in an error the user did not cause (no API key, say) ends the worker:
  the task ends `error` with the CLI's own message. Success is judged by the `result`
  lines, not by the exit code;
- the stop sequence the CLIs need to save their transcript: close stdin, then SIGTERM,
  then SIGKILL, each after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from abc import abstractmethod
from typing import Any, ClassVar

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
from agent_client.workers.items import cut
from agent_client.workers.permission_requests import Asked, PendingRequests
from agent_client.workers.process import ChildProcess, read_lines
from agent_client.workers.stream_json_items import (
    items_of,
    message_usage,
    result_item,
    result_text,
)
from orchestra.codec import now_iso

__all__ = ["StreamJsonWorker"]

log = logging.getLogger(__name__)

_MAX_LINE_BYTES = 64 * 1024 * 1024  # a JSON line longer than this is dropped, not parsed
_INITIALIZE_TIMEOUT_S = 120.0
_DRAIN_TIMEOUT_S = 5.0


class StreamJsonWorker(Worker):
    """A stream-json CLI for one task; subclasses give the dialect."""

    usage_from_calls: ClassVar[bool] = False
    """Whether a turn's usage is the sum of its model calls' (its `result` has only the
    session's running total) rather than what its `result` says."""

    def __init__(self, spec: WorkerSpec, host: WorkerHost) -> None:
        super().__init__(spec, host)
        self._proc: ChildProcess | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._begin: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._done: asyncio.Task[WorkerExit] | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._request_ids = itertools.count(1)
        self._requests = PendingRequests(
            host,
            spec.task_id,
            limit=spec.max_chunk_bytes,
            timeout_s=spec.permission_timeout_s,
            answer=self._answer,
        )
        self._session_id = spec.parameters.get("workerSessionId")
        self._announced: str | None = None  # the session id of the last `system` item
        self._interrupting = False
        self._busy = False  # a message was sent and its turn's result has not come yet
        self._turn_usage: dict[str, Any] = {}  # summed over the turn's model calls
        self._fatal: str | None = None
        self._stop_requested = False

    # -- the dialect -------------------------------------------------------------------

    @abstractmethod
    def command(self, executable: str) -> list[str]:
        """The command line (the API key never goes here: see `environment`)."""

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """What the CLI needs in its environment: its API key and base URL variables."""

    def initialize_request(self) -> dict[str, Any]:
        return {"subtype": "initialize", "hooks": None}

    def session_rule(self, tool: str) -> list[dict[str, Any]] | None:
        """`updatedPermissions` that allow `tool` for the rest of the CLI's session (never
        the suggestions' `localSettings`, which would outlive the session)."""
        rule = {"type": "addRules", "rules": [{"toolName": tool}], "behavior": "allow"}
        return [rule | {"destination": "session"}]

    # -- the Worker interface ----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        executable = self.spec.executable or self.executable_name or self.tool
        argv = self.command(executable)
        try:
            self._proc = await ChildProcess.spawn(
                argv,
                cwd=self.spec.working_directory,
                env=worker_environment(self.spec, self.environment()),
            )
        except OSError as exc:
            raise WorkerStartError(f"cannot start {self.tool} ({argv[0]}): {exc}") from exc
        proc = self._proc
        self._readers = [asyncio.create_task(self._read_stdout(proc))]
        if proc.stderr is not None:
            self._readers.append(asyncio.create_task(self._read_stderr(proc.stderr)))
        self._done = asyncio.create_task(self._watch(proc))
        self._begin = asyncio.create_task(self._initialize(self.spec.parameters.get("prompt")))
        log.info("task %s: started %s, pid %d", self.spec.task_id, self.tool, proc.pid)

    async def send_input(self, text: str, eof: bool = False) -> None:
        if self._proc is None or self._proc.stdin_closed:
            return
        if self._begin is not None and not self._begin.done():
            # The prompt and anything typed before the CLI is initialized go after it.
            await asyncio.wait({self._begin})
        if text:
            self._send_message(text)
        if eof:
            self._proc.close_stdin()

    async def interrupt(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return  # (an interrupt while idle is the CLI's to ignore)
        self._interrupting = True
        request_id = f"interrupt-{next(self._request_ids)}"
        self._write({"type": "control_request", "request_id": request_id,
                     "request": {"subtype": "interrupt"}})  # fmt: skip

    async def stop(self, mode: StopMode) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._stop_requested = True
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._proc.stop_gracefully(self.spec.stop_grace_s))

    async def decide(self, decision: PermissionDecision) -> None:
        self._requests.decide(decision)

    async def wait(self) -> WorkerExit:
        if self._done is None:
            raise RuntimeError("the worker was not started")
        return await asyncio.shield(self._done)

    # -- talking to the CLI ------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        assert self._proc is not None
        self._proc.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def _send_message(self, text: str) -> None:
        self._write({"type": "user", "message": {"role": "user", "content": text},
                     "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
        self._busy = True
        content, truncated = cut(text, self.spec.max_chunk_bytes)
        item: dict[str, Any] = {"type": "user", "content": content, "timestamp": now_iso()}
        if truncated:
            item["details"] = {"truncated": True}
        self.host.output("worker:output", item)

    async def _initialize(self, prompt: Any) -> None:
        """The control protocol's handshake, then the first prompt."""
        request_id = f"init-{next(self._request_ids)}"
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        self._write({"type": "control_request", "request_id": request_id,
                     "request": self.initialize_request()})  # fmt: skip
        try:
            answer = await asyncio.wait_for(asyncio.shield(reply), _INITIALIZE_TIMEOUT_S)
        except TimeoutError:
            self._fail(f"{self.tool} did not answer its initialize request")
            return
        finally:
            self._replies.pop(request_id, None)
        if answer.get("subtype") == "error":
            self._fail(f"{self.tool} refused to initialize: {answer.get('error')}")
            return
        if isinstance(prompt, str) and prompt:
            self._send_message(prompt)

    def _fail(self, message: str) -> None:
        """An error the task cannot recover from: end the worker gracefully."""
        if self._fatal is None:
            self._fatal = message
            log.warning("task %s: %s", self.spec.task_id, message)
        if self._proc is not None:
            self._proc.close_stdin()

    def edited_input_refusal(self, asked: Asked, decision: PermissionDecision) -> str | None:
        """Why an allow with an edited input must be a deny instead (for a CLI that would
        run the original input), or None."""
        return None

    def _answer(self, request_id: str, asked: Asked, decision: PermissionDecision) -> None:
        response: dict[str, Any]
        if decision.decision == "allow":
            refusal = self.edited_input_refusal(asked, decision)
            if refusal is not None:
                decision = PermissionDecision(request_id, "deny", message=refusal)
        if decision.decision == "allow":
            response = {"behavior": "allow", "updatedInput": decision.updated_input or asked.input}
            if decision.scope == "session":
                rules = self.session_rule(asked.tool)
                if rules:
                    response["updatedPermissions"] = rules
        else:
            response = {"behavior": "deny", "message": decision.message or "denied by the user",
                        "interrupt": False}  # fmt: skip
        self._write({"type": "control_response", "response": {
            "subtype": "success", "request_id": request_id, "response": response}})  # fmt: skip

    # -- what the CLI says -------------------------------------------------------------

    async def _read_stdout(self, proc: ChildProcess) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for raw, complete in read_lines(proc.stdout, _MAX_LINE_BYTES):
                if not complete:
                    log.error("task %s: a line over %d bytes was dropped", self.spec.task_id,
                              _MAX_LINE_BYTES)  # fmt: skip
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                if not isinstance(line, dict):
                    if raw.strip():
                        self._log_line("log", raw)
                    continue
                try:
                    self._on_line(line)
                except Exception:  # one odd line must not silence the worker
                    log.exception("task %s: a line could not be handled", self.spec.task_id)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for raw, _ in read_lines(stream, self.spec.max_chunk_bytes):
                self._log_line("stderr", raw)

    def _log_line(self, kind: str, raw: bytes) -> None:
        data, _ = cut(raw.decode("utf-8", errors="replace"), self.spec.max_chunk_bytes)
        self.host.output("task:stream", {"type": kind, "data": data, "timestamp": now_iso()})

    def _on_line(self, line: dict[str, Any]) -> None:
        kind = line.get("type")
        if kind == "control_response":
            response = line.get("response") if isinstance(line.get("response"), dict) else {}
            assert isinstance(response, dict)
            reply = self._replies.get(str(response.get("request_id")))
            if reply is not None and not reply.done():
                reply.set_result(response)
            return
        if kind == "control_request":
            self._on_control_request(line)
            return
        if kind == "control_cancel_request":
            self._requests.withdraw(str(line.get("request_id")), "the tool cancelled the request")
            return
        if kind == "result":
            self._on_result(line)
            return
        if kind == "assistant" and self.usage_from_calls:
            for name, value in message_usage(line).items():
                self._turn_usage[name] = self._turn_usage.get(name, 0) + value
        for item in items_of(line, self.spec.max_chunk_bytes):
            if item["type"] == "system":
                session = item["details"].get("workerSessionId")
                if session == self._announced:
                    continue  # the CLI says so at every turn: once is enough
                self._announced = self._session_id = session
            self.host.output("worker:output", item)

    def _on_control_request(self, line: dict[str, Any]) -> None:
        request_id = str(line.get("request_id"))
        request = line.get("request") if isinstance(line.get("request"), dict) else {}
        assert isinstance(request, dict)
        if request.get("subtype") != "can_use_tool":
            self._write({"type": "control_response", "response": {
                "subtype": "error", "request_id": request_id,
                "error": f"unsupported control request {request.get('subtype')!r}"}})  # fmt: skip
            return
        title = request.get("title") or request.get("description") or request.get("display_name")
        self._requests.ask(
            request_id,
            Asked(str(request.get("tool_name") or ""), request.get("input")),
            title=title if isinstance(title, str) else None,
            suggestions=request.get("permission_suggestions"),
        )

    def _on_result(self, line: dict[str, Any]) -> None:
        aborted = bool(line.get("is_error")) or str(line.get("terminal_reason", "")).startswith(
            "aborted"
        )
        interrupted = self._interrupting and aborted
        self._interrupting = False
        self._busy = False
        item = result_item(line, self.spec.max_chunk_bytes, interrupted)
        if self.usage_from_calls:
            item["usage"] = self._turn_usage
        self._turn_usage = {}
        self.host.output("worker:output", item)
        self._requests.withdraw_all("the turn ended")
        if line.get("is_error") and not interrupted:
            text = result_text(line)
            self._fail(text or f"{self.tool} ended its turn with an error ({line.get('subtype')})")

    async def _watch(self, proc: ChildProcess) -> WorkerExit:
        code, usage = await proc.wait()
        await proc.finish()
        _, pending = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT_S)
        for reader in pending:
            reader.cancel()
        helpers = [t for t in (self._begin, self._stopping) if t is not None]
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*pending, *helpers, return_exceptions=True)
        for reply in self._replies.values():
            if not reply.done():
                reply.cancel()
        error = self._fatal
        if error is None and not self._stop_requested:
            if self._busy:
                error = f"{self.tool} ended in the middle of a turn ({describe_exit(code)})"
            elif not proc.stdin_closed:
                error = f"{self.tool} ended by itself ({describe_exit(code)})"
        log.info("task %s: %s ended with code %s", self.spec.task_id, self.tool, code)
        result: dict[str, Any] = {}
        if self._session_id:
            result["workerSessionId"] = self._session_id
        return WorkerExit(
            exit_code=code,
            stopped=self._stop_requested,
            error=error,
            # The results, not the exit code, say how it went: it exits 1 after an error
            # result, and may exit non-zero after a clean end of its input too.
            succeeded=error is None and not self._stop_requested,
            result=result,
            resource_usage=usage.wire(),
        )
