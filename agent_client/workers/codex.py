"""The `codex` worker: OpenAI's Codex CLI driven through `codex app-server` (JSON-RPC lines).

One app-server process runs one thread for the task: `initialize`, then `thread/start
{cwd, approvalPolicy, sandbox, model?}` (or `thread/resume {threadId}` for
`workerSessionId`), then one `turn/start {threadId, input}` per user message, all JSON-RPC
(`codex_rpc`). What Codex notifies becomes output items (`codex_items`). Its approval requests
(`item/commandExecution/requestApproval`, `item/fileChange/requestApproval`) become
`worker:permission` with the JSON-RPC request id as `permissionId`, answered `accept`
(allow once), `acceptForSession` (allow for the session) or `decline` (deny, or the
gateway refused the request). A request Codex withdraws (`serverRequest/resolved` before
our answer, or its turn ended) is reported `worker:permission:cancelled`; a decision for
it, or a second one, is dropped. Other server requests are answered with an error.

Endpoint and key: with `secrets.apiKey` or `parameters.baseUrl` the worker defines a model
provider of its own on the command line (base URL, `env_key = "OPENAI_API_KEY"`, `wire_api
= "responses"`): Codex 0.171 ignores `OPENAI_API_KEY` and `OPENAI_BASE_URL` for its
built-in `openai` provider (which wants a `codex login`) and speaks only the Responses API.
The key (the AI config's, else an `OPENAI_API_KEY` the agent itself has) goes in the
environment only. With neither key nor base URL, Codex uses its own login.

When the task ends: between turns the worker waits for input. It ends on `eof` (once the
running and queued turns are done: stdin closes and Codex exits), on `stop`, when Codex
exits by itself (a crash: the task ends `error`), or on a fatal error: a turn failed for
authentication (no key, 401/403), or the thread could not be started or resumed; that
error is a `result` item with `details.isError` and ends the task `error`. An ordinary
failed turn is a `result` with `isError` and the worker stays; the task ends `error` when
its last turn failed. An interrupted turn is not an error.

Input during a turn is queued and started as a turn of its own when the running one ends.
(Codex can take input into a running turn, `turn/steer` or a second `turn/start`, but then
it gets no turn or result of its own, and an interrupt of that turn takes it along.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import deque
from collections.abc import Mapping
from typing import Any

from agent_client.workers import codex_events as ev
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
from agent_client.workers.codex_items import (
    TurnState,
    Usage,
    item,
    item_outputs,
    system_item,
    turn_outputs,
)
from agent_client.workers.codex_rpc import CodexRpc, Reply
from agent_client.workers.items import split_text
from agent_client.workers.permission_requests import NO_ANSWER, UNANSWERED_GRACE_S
from agent_client.workers.process import ChildProcess, read_lines
from orchestra.codec import now_iso

__all__ = ["CodexWorker"]

log = logging.getLogger(__name__)

_DRAIN_TIMEOUT_S = 2.0


class CodexWorker(Worker):
    tool = "codex"
    executable_name = "codex"

    def __init__(self, spec: WorkerSpec, host: WorkerHost) -> None:
        super().__init__(spec, host)
        self._proc: ChildProcess | None = None
        self._rpc: CodexRpc | None = None
        self._pending: dict[str, tuple[Any, str | None]] = {}  # approvals: (raw id, turn id)
        self._items: dict[str, dict[str, Any]] = {}  # started thread items, by id
        self._queue: deque[str] = deque()
        self._turn: TurnState | None = None
        self._thread_id: str | None = None
        self._usage = Usage()
        self._ready = self._eof = self._ending = self._gone = self._stopped = False
        self._fatal: str | None = None
        self._last_error: str | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._done: asyncio.Task[WorkerExit] | None = None

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        mode = parameters.get("permissionMode")
        if mode is not None and mode not in ev.MODES:
            return f"permissionMode must be one of {', '.join(ev.MODES)}"
        for name in ("prompt", "workerSessionId", "model", "baseUrl"):
            if parameters.get(name) is not None and not isinstance(parameters[name], str):
                return f"{name} must be a string"
        return None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        executable = self.spec.executable or "codex"
        key = self.spec.secrets.get("apiKey")
        env = worker_environment(self.spec, {ev.API_KEY_ENV: key} if key else {})
        with_key = bool(env.get(ev.API_KEY_ENV))  # the AI config's, or the agent's own
        argv = ev.command_line(executable, self.spec.parameters.get("baseUrl"), with_key)
        try:
            self._proc = await ChildProcess.spawn(argv, cwd=self.spec.working_directory, env=env)
        except (OSError, ValueError) as exc:
            raise WorkerStartError(f"cannot start {executable!r}: {exc}") from exc
        assert self._proc.stderr is not None
        self._rpc = CodexRpc(
            self._proc, self.spec.task_id, self._on_request, self._on_notification, self._log_line
        )
        self._readers = [
            asyncio.create_task(self._rpc.read(self._proc.stdout)),
            asyncio.create_task(self._read_stderr(self._proc.stderr)),
        ]
        self._done = asyncio.create_task(self._watch())
        if isinstance(prompt := self.spec.parameters.get("prompt"), str) and prompt:
            self._queue.append(prompt)
        client = {"name": "orchestra", "title": "Orchestra", "version": "1"}
        self._request("initialize", {"clientInfo": client, "capabilities": None}, self._initialized)
        log.info("task %s: started codex app-server, pid %d", self.spec.task_id, self._proc.pid)

    async def send_input(self, text: str, eof: bool = False) -> None:
        if self._eof and text:
            log.info("task %s: input after eof dropped", self.spec.task_id)
        elif text:
            self._queue.append(text)
        self._eof = self._eof or eof
        self._pump()

    async def interrupt(self) -> None:
        turn = self._turn
        if turn is None:
            log.info("task %s: interrupt with no turn running", self.spec.task_id)
        elif turn.id is None:
            turn.interrupt_wanted = True  # sent once turn/start has answered
        else:
            self._request("turn/interrupt", {"threadId": self._thread_id, "turnId": turn.id})

    async def stop(self, mode: StopMode) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._stopped = True
        if mode == "kill":
            self._proc.signal_group(signal.SIGKILL)
        else:
            self._end_gracefully()

    async def decide(self, decision: PermissionDecision) -> None:
        if decision.decision == "deny":
            answer = "decline"
        else:
            answer = "acceptForSession" if decision.scope == "session" else "accept"
        if decision.updated_input:
            log.info("task %s: codex cannot take an updated input; ignored", self.spec.task_id)
        self._answer(decision.permission_id, answer)

    async def wait(self) -> WorkerExit:
        if self._done is None:
            raise RuntimeError("the worker was not started")
        return await asyncio.shield(self._done)

    # -- JSON-RPC -----------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self._rpc is not None:
            self._rpc.send(message)

    def _request(self, method: str, params: dict[str, Any], reply: Reply | None = None) -> None:
        if self._rpc is not None:
            self._rpc.request(method, params, reply)

    def _answer(self, permission_id: str, decision: str) -> None:
        """Answer one approval request, once; a request not pending (never asked, answered,
        withdrawn) gets nothing."""
        pending = self._pending.pop(permission_id, None)
        if pending is None:
            log.info("task %s: answer to %s dropped", self.spec.task_id, permission_id)
            return
        self._send({"id": pending[0], "result": {"decision": decision}})

    # -- the thread and its turns -------------------------------------------------------

    def _initialized(self, _result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        if error is not None:
            return self._fail(f"codex app-server refused initialize: {error.get('message')}")
        self._send({"method": "initialized"})
        params = ev.thread_params(self.spec.parameters, str(self.spec.working_directory))
        method = "thread/resume" if "threadId" in params else "thread/start"
        self._request(method, params, self._thread_ready)
        return None

    def _thread_ready(self, result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        resume = self.spec.parameters.get("workerSessionId")
        if error is not None or not isinstance(result, dict):
            what = f"resume thread {resume}" if resume else "start a thread"
            return self._fail(f"codex could not {what}: {(error or {}).get('message')}")
        self._thread_id = str(result["thread"]["id"])
        self._output(system_item(result, bool(resume)))
        self._ready = True
        self._pump()
        return None

    def _pump(self) -> None:
        """Start the next queued turn when none runs; end the worker when asked and idle."""
        if not self._ready or self._turn is not None or self._ending or self._gone:
            return
        if self._queue:
            text = self._queue.popleft()
            self._turn = TurnState(text=text)
            user_input = [{"type": "text", "text": text, "text_elements": []}]
            params = {"threadId": self._thread_id, "input": user_input}
            self._request("turn/start", params, self._turn_started)
        elif self._eof:
            self._end_gracefully()

    def _turn_started(self, result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        turn = self._turn
        if turn is None:
            return
        if error is not None or not isinstance(result, dict):
            message = f"codex did not start the turn: {(error or {}).get('message')}"
            return self._turn_completed({"status": "failed", "error": {"message": message}})
        turn.id = turn.id or str(result["turn"]["id"])
        if turn.interrupt_wanted:
            self._request("turn/interrupt", {"threadId": self._thread_id, "turnId": turn.id})
        return None

    def _turn_completed(self, codex_turn: dict[str, Any]) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        outputs, error = turn_outputs(codex_turn, turn, self.spec.max_chunk_bytes)
        self._cancel_pending(f"the turn ended ({codex_turn.get('status')})", turn.id)
        self._usage.add(turn.usage)
        for out in outputs:
            self._output(out)
        self._last_error = str(error.get("message")) if error else None
        if error and ev.is_fatal(error):
            self._fail(self._last_error, report=False)
        self._pump()

    def _fail(self, message: str | None, report: bool = True) -> None:
        """A fatal error: reported as a result (unless a turn's result already says it),
        queued input is dropped and the worker ends."""
        self._fatal = message or "codex failed"
        if report:
            details = {"isError": True, "status": "failed", "error": self._fatal}
            self._output(item("result", self._fatal, details))
        if self._queue:
            log.info("task %s: %d queued inputs dropped", self.spec.task_id, len(self._queue))
            self._queue.clear()
        self._end_gracefully()

    def _end_gracefully(self) -> None:
        if self._ending or self._gone or self._proc is None:
            return
        self._ending = True
        grace = self.spec.stop_grace_s
        self._tasks.append(asyncio.create_task(self._proc.stop_gracefully(grace)))

    # -- what Codex says ----------------------------------------------------------------

    def _on_request(self, raw_id: Any, method: str, params: dict[str, Any]) -> None:
        if method not in ev.APPROVALS:
            log.info("task %s: codex asked %s: not supported", self.spec.task_id, method)
            error = {"code": -32601, "message": f"{method} is not supported by this client"}
            self._send({"id": raw_id, "error": error})
            return
        permission_id = str(raw_id)
        self._pending[permission_id] = (raw_id, params.get("turnId"))
        started = self._items.get(str(params.get("itemId")))
        tool, tool_input, title = ev.permission_fields(method, params, started)
        fields = {"permissionId": permission_id, "tool": tool, "input": tool_input, "title": title}

        def refused(code: str, message: str) -> None:
            log.info(
                "task %s: %s refused (%s: %s)", self.spec.task_id, permission_id, code, message
            )
            self._answer(permission_id, "decline")

        self.host.control("worker:permission", fields, on_refused=refused)
        # Should the gateway's answer (deny, at its deadline) never get here, Codex must
        # not wait for ever all the same.
        asyncio.get_running_loop().call_later(
            self.spec.permission_timeout_s + UNANSWERED_GRACE_S, self._unanswered, permission_id
        )

    def _unanswered(self, permission_id: str) -> None:
        if permission_id in self._pending:
            self._send({"id": self._pending[permission_id][0], "result": {"decision": "decline"}})
            self._cancel_pending(NO_ANSWER, None, permission_id)

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        turn = self._turn
        if method in ("item/started", "item/completed"):
            thread_item = params.get("item") or {}
            item_id = str(thread_item.get("id"))
            if method == "item/started":
                self._items[item_id] = thread_item
            else:
                self._items.pop(item_id, None)
            for out in item_outputs(method, thread_item, turn, self.spec.max_chunk_bytes):
                self._output(out)
        elif method == "item/agentMessage/delta" and turn is not None:
            turn.partial.setdefault(str(params.get("itemId")), []).append(str(params.get("delta")))
        elif method == "item/commandExecution/outputDelta" and turn is not None:
            chunks = turn.outputs.setdefault(str(params.get("itemId")), [])
            if sum(len(c) for c in chunks) <= self.spec.max_chunk_bytes:
                chunks.append(str(params.get("delta")))
        elif method == "thread/tokenUsage/updated" and turn is not None:
            if turn.id is None or params.get("turnId") in (None, turn.id):
                turn.usage.add_breakdown((params.get("tokenUsage") or {}).get("last") or {})
                turn.model_calls += 1
        elif method == "turn/started" and turn is not None:
            turn.id = turn.id or (params.get("turn") or {}).get("id")
        elif method == "turn/completed" and turn is not None:
            self._turn_completed(params.get("turn") or {})
        elif method == "serverRequest/resolved":
            self._cancel_pending("withdrawn by codex", None, str(params.get("requestId")))
        elif method == "error" and params.get("willRetry"):
            error = params.get("error") or {}
            self._log_line(f"codex: {error.get('message')} {error.get('additionalDetails') or ''}")
        elif method in ("warning", "configWarning", "deprecationNotice"):
            self._log_line(f"codex {method}: {params.get('message') or params.get('summary')}")

    def _cancel_pending(self, reason: str, turn_id: str | None, only: str | None = None) -> None:
        """Report requests Codex gave up on (one, those of a turn, or all) as cancelled."""
        for permission_id, (_raw, asked_in) in list(self._pending.items()):
            if only is not None and permission_id != only:
                continue
            if only is None and turn_id is not None and asked_in not in (None, turn_id):
                continue
            del self._pending[permission_id]
            fields = {"permissionId": permission_id, "reason": reason}
            self.host.control("worker:permission:cancelled", fields)

    def _output(self, fields: dict[str, Any]) -> None:
        self.host.output("worker:output", fields)

    def _log_line(self, line: str, kind: str = "log") -> None:
        for piece, _ in split_text(line, self.spec.max_chunk_bytes):
            self.host.output("task:stream", {"type": kind, "data": piece, "timestamp": now_iso()})

    # -- the process --------------------------------------------------------------------

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for line, _complete in read_lines(stream, self.spec.max_chunk_bytes):
                self._log_line(line.decode("utf-8", errors="replace"), "stderr")

    async def _watch(self) -> WorkerExit:
        assert self._proc is not None
        code, usage = await self._proc.wait()
        await self._proc.finish()
        _, unfinished = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT_S)
        for task in (*unfinished, *self._tasks):
            task.cancel()
        await asyncio.gather(*unfinished, *self._tasks, return_exceptions=True)
        self._gone = True
        if self._rpc is not None:
            self._rpc.close()
        crashed = not self._stopped and not self._ending
        if self._turn is not None:  # it ended mid-turn
            ending: dict[str, Any] = {"status": "stopped"}
            if not self._stopped:
                ending = {"status": "failed", "error": {"message": describe_exit(code)}}
            self._turn_completed(ending)
        self._cancel_pending("the worker ended", None)
        error_text = self._fatal
        if error_text is None and crashed:
            error_text = f"codex app-server ended unexpectedly: {describe_exit(code)}"
        elif error_text is None and not self._stopped:
            error_text = self._last_error
        log.info("task %s: codex worker ended with code %s", self.spec.task_id, code)
        return WorkerExit(
            exit_code=code,
            stopped=self._stopped,
            error=error_text,
            result={"workerSessionId": self._thread_id, "usage": self._usage.wire()},
            resource_usage=usage.wire(),
        )
