"""The agent's tasks: assignment, input, stop, permission answers, and each worker's end.

Each task has an outbox (its ordered, spooled events) and, while it runs, a worker. What
this module emits, per task, in order:

- refused: `task:rejected {reason}` (`code: PARAM_001` when the task's own parameters are
  at fault, such as a working directory outside the allowed roots);
- started: `task:accepted`, `worker:status running`, its output items and reports
  (permission requests), then, once every item is acknowledged, `worker:status completed
  | cancelled | error` and `task:result`.

Every report names the task's attempt. A `task:assign` of a task held under another
attempt means the gateway gave up on that one: its worker and unsent reports are dropped.
So is a task whose reports the gateway answers `{stale: true}`.

After a daemon restart the spools come back: their output is sent again, and a task whose
worker died with the old daemon ends with `worker:status error` and a failed `task:result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_client.endings import create_time, end_orphan, final_events
from agent_client.outbox import Link, TaskOutbox
from agent_client.spool import Spool
from agent_client.workdirs import RecentWorkdirs, WorkdirRefused, working_directory
from agent_client.workers import (
    PermissionDecision,
    ToolInfo,
    Worker,
    WorkerExit,
    WorkerSpec,
    WorkerStartError,
)
from orchestra import trace
from orchestra.aio import cancel_and_wait
from orchestra.crypto import unseal_for_agent
from orchestra.settings import Settings

__all__ = ["TaskManager"]

log = logging.getLogger(__name__)


@dataclass
class _Task:
    outbox: TaskOutbox
    worker: Worker | None = None
    started: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.watcher is not None and not self.watcher.done()


class TaskManager:
    """Starts, feeds, stops and reports the workers of one agent."""

    def __init__(
        self,
        settings: Settings,
        link: Link,
        secret: str,
        workers: Mapping[str, type[Worker]],
    ) -> None:
        self._settings = settings
        self._link = link
        self._secret = secret  # unseals the AI configs' keys sent for this agent
        self._agent_id = settings.agent_id
        self._spool_dir = settings.agent_state_dir / "spool"
        self._work_dir = settings.agent_state_dir / "work"
        self.recent = RecentWorkdirs(settings.agent_state_dir / "recent-workdirs.json")
        """The working directories tasks were started in, most recent first."""
        self._workers = dict(workers)
        self.tools: dict[str, ToolInfo] = {}
        """The tools found on this machine, by name (set by the daemon once it looked)."""
        self._tasks: dict[str, _Task] = {}
        self._shutting_down = False

    # -- state -------------------------------------------------------------------------

    @property
    def running_count(self) -> int:
        """Workers whose process is alive (what maxConcurrency limits)."""
        return sum(1 for task in self._tasks.values() if task.running)

    def running_tasks(self) -> list[dict[str, Any]]:
        """`runningTasks` for `agent:register`: every task not yet fully delivered."""
        return [task.outbox.running_task() for task in self._tasks.values()]

    def restore(self) -> None:
        """Take back the tasks spooled by a previous run of the daemon."""
        for spool in Spool.load_all(self._spool_dir):
            if spool.task_id in self._tasks:
                continue
            if spool.final is None:
                end_orphan(spool.meta)
                spool.set_final(
                    final_events(
                        self._agent_id,
                        spool.meta.get("attempt"),
                        spool.task_id,
                        WorkerExit(
                            exit_code=None,
                            stopped=False,
                            error="the agent restarted while the worker was running",
                        ),
                        duration=0.0,
                    )
                )
            outbox = self._new_outbox(spool)
            self._tasks[spool.task_id] = _Task(outbox)
            outbox.start()
            log.info(
                "task %s: restored, %d output items to send again",
                spool.task_id,
                spool.last_seq - spool.persisted_seq,
            )

    # -- commands ----------------------------------------------------------------------

    async def assign(self, data: Mapping[str, Any]) -> None:
        """`task:assign`: start the worker, or reject the task."""
        task = data.get("task") if isinstance(data.get("task"), dict) else {}
        assert isinstance(task, dict)
        task_id = data.get("taskId") or task.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            log.error("task:assign without a taskId, ignored")
            return
        command_id = data.get("commandId")
        attempt = data.get("attempt") if isinstance(data.get("attempt"), int) else None
        known = self._tasks.get(task_id)
        if known is not None:
            meta = known.outbox.spool.meta
            same = meta.get("attempt") == attempt if attempt is not None else None
            if same or (same is None and meta.get("commandId") in (None, command_id)):
                log.info("task %s: assigned again while known, ignored", task_id)
                return
            # A new attempt of a task we hold: the gateway gave up on our earlier one (we
            # were gone past the grace period) and queued the task again.
            log.warning("task %s: assigned anew; ending the earlier attempt", task_id)
            await self._drop(known)
        tool = str(task.get("tool", ""))
        parameters = task.get("parameters") if isinstance(task.get("parameters"), dict) else {}
        assert isinstance(parameters, dict)
        # The command's trace id goes with every report of the task (`outbox.py`).
        spool = Spool.create(
            self._spool_dir,
            task_id,
            tool=tool,
            commandId=command_id,
            attempt=attempt,
            traceId=trace.current_trace_id() or None,
        )
        outbox = self._new_outbox(spool)
        entry = _Task(outbox)
        self._tasks[task_id] = entry
        refusal = await self._start(entry, task_id, tool, parameters)
        if refusal is not None:
            reason, code = refusal
            log.info("task %s: rejected: %s", task_id, reason)
            rejection: dict[str, Any] = outbox.ids | {"reason": reason}
            if code is not None:
                rejection["code"] = code
            outbox.finish([("task:rejected", rejection)])
        else:
            log.info("task %s: started a %s worker, attempt %s", task_id, tool, attempt)
        outbox.start()

    async def _start(
        self, entry: _Task, task_id: str, tool: str, parameters: dict[str, Any]
    ) -> tuple[str, str | None] | None:
        """Start the task's worker; (reason, code) when it cannot be."""
        worker_class = self._workers.get(tool)
        found = self.tools.get(tool)
        if self._shutting_down:
            return "the agent is shutting down", None
        if worker_class is None or found is None:
            return f"this agent does not run the {tool!r} tool", None
        if self.running_count >= self._settings.agent_max_concurrency:
            return f"this agent is full ({self._settings.agent_max_concurrency} running)", None
        problem = worker_class.check(parameters)
        if problem is not None:
            return problem, "PARAM_001"
        try:
            workdir = working_directory(
                parameters.get("workingDirectory"), self._settings, self._work_dir
            )
        except WorkdirRefused as exc:
            return str(exc), "PARAM_001"
        try:
            secrets = self._unseal(task_id, parameters.get("secrets"))
        except ValueError as exc:
            return f"the task's secrets cannot be opened here ({exc})", None
        timeout_s = parameters.get("permissionTimeoutS")
        spec = WorkerSpec(
            task_id=task_id,
            tool=tool,
            parameters={k: v for k, v in parameters.items() if k != "secrets"},
            working_directory=workdir,
            stop_grace_s=self._settings.worker_stop_grace_s,
            attempt=entry.outbox.attempt or 1,
            executable=found.executable,
            secrets=secrets,
            permission_timeout_s=float(timeout_s) if isinstance(timeout_s, int | float) else 1800.0,
            max_chunk_bytes=max(1024, min(64 * 1024, self._settings.max_payload_bytes // 8)),
        )
        worker = worker_class(spec, entry.outbox)
        # Queued before the process starts, so no output can overtake them.
        entry.outbox.control("task:accepted", {})
        entry.outbox.control("worker:status", {"status": "running"})
        try:
            await worker.start()
        except WorkerStartError as exc:
            entry.outbox.discard_controls()
            return str(exc), None
        entry.worker = worker
        entry.started = time.monotonic()
        if parameters.get("workingDirectory"):  # asked for, not the agent's own folder
            self.recent.add(workdir)
        entry.outbox.spool.update_meta(pid=worker.pid, createTime=create_time(worker.pid))
        entry.watcher = asyncio.create_task(self._watch(entry, worker))
        return None

    async def input(self, data: Mapping[str, Any]) -> None:
        """`worker:input`: the user's next message (or bytes for stdin; `eof` ends it)."""
        entry = self._running(data.get("taskId"), "worker:input")
        text = data.get("input")
        if entry is not None and entry.worker is not None:
            await entry.worker.send_input(
                text if isinstance(text, str) else "", eof=data.get("eof") is True
            )

    async def stop(self, data: Mapping[str, Any]) -> None:
        """`worker:stop`: interrupt the current turn (the worker stays), or kill it."""
        entry = self._running(data.get("taskId"), "worker:stop")
        if entry is None or entry.worker is None:
            return
        log.info("task %s: stop requested (%s)", entry.outbox.task_id, data.get("mode"))
        if data.get("mode") == "kill":
            await entry.worker.stop("kill")
        else:
            await entry.worker.interrupt()

    async def permission(self, data: Mapping[str, Any]) -> None:
        """`worker:permission`: the answer to something the worker asked."""
        entry = self._running(data.get("taskId"), "worker:permission")
        if entry is None or entry.worker is None:
            return
        attempt = data.get("attempt")
        if attempt is not None and entry.outbox.attempt not in (None, attempt):
            log.info("task %s: an answer for attempt %s, dropped", entry.outbox.task_id, attempt)
            return
        updated = data.get("updatedInput")
        await entry.worker.decide(
            PermissionDecision(
                permission_id=str(data.get("permissionId", "")),
                decision="allow" if data.get("decision") == "allow" else "deny",
                scope="session" if data.get("scope") == "session" else "once",
                message=data.get("message") if isinstance(data.get("message"), str) else None,
                updated_input=updated if isinstance(updated, dict) else None,
            )
        )

    # -- shutting down -----------------------------------------------------------------

    async def shutdown(self, flush_timeout_s: float) -> None:
        """Stop every worker (gracefully, then harder after the grace), flush, close."""
        self._shutting_down = True
        running = [t for t in self._tasks.values() if t.running and t.worker is not None]
        for entry in running:
            assert entry.worker is not None
            await entry.worker.stop("terminate")
        watchers = [t.watcher for t in running if t.watcher is not None]
        if watchers:
            await asyncio.wait(watchers, timeout=3 * self._settings.worker_stop_grace_s + 5)
        outboxes = [t.outbox for t in self._tasks.values()]
        waits = [asyncio.create_task(o.done.wait()) for o in outboxes if not o.done.is_set()]
        if waits and flush_timeout_s > 0:
            # Only worth waiting for while connected: otherwise the spool keeps it all.
            await asyncio.wait(waits, timeout=flush_timeout_s)
        for waiter in waits:
            waiter.cancel()
        for outbox in outboxes:
            await outbox.close()

    # -- internals ---------------------------------------------------------------------

    def _unseal(self, task_id: str, secrets: Any) -> dict[str, str]:
        if not isinstance(secrets, dict) or not isinstance(secrets.get("sealed"), str):
            return {}
        return unseal_for_agent(self._secret, task_id, secrets["sealed"])

    def _new_outbox(self, spool: Spool) -> TaskOutbox:
        return TaskOutbox(
            spool,
            self._link,
            agent_id=self._agent_id,
            ack_timeout_s=self._settings.connection_timeout_s,
            retry_delay_s=self._settings.reconnect_delay_s,
            on_done=self._forget,
            on_stale=self._superseded,
        )

    def _forget(self, outbox: TaskOutbox) -> None:
        entry = self._tasks.get(outbox.task_id)
        if entry is not None and entry.outbox is outbox:
            del self._tasks[outbox.task_id]
            log.info("task %s: delivered in full", outbox.task_id)

    def _superseded(self, outbox: TaskOutbox) -> None:
        """The gateway moved on to a later attempt: this attempt's worker must go."""
        entry = self._tasks.get(outbox.task_id)
        if entry is not None and entry.outbox is outbox and entry.worker is not None:
            asyncio.get_running_loop().create_task(entry.worker.stop("kill"))

    async def _drop(self, entry: _Task) -> None:
        """End a task attempt without a word to the gateway: worker, reports, spool."""
        if entry.worker is not None and entry.running:
            await entry.worker.stop("kill")
            # Until it is gone its pipes may still bring output for the old spool.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry.worker.wait(), self._settings.worker_stop_grace_s)
        if entry.watcher is not None:
            await cancel_and_wait(entry.watcher)
        await entry.outbox.close()
        entry.outbox.spool.remove()
        if self._tasks.get(entry.outbox.task_id) is entry:
            del self._tasks[entry.outbox.task_id]

    def _running(self, task_id: Any, event: str) -> _Task | None:
        entry = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if entry is None or not entry.running:
            log.info("%s for task %s, which has no running worker: ignored", event, task_id)
            return None
        return entry

    async def _watch(self, entry: _Task, worker: Worker) -> None:
        """Wait for the worker's end, then queue its final status and result."""
        try:
            ended = await worker.wait()
        except Exception as exc:  # a bug in a worker must still end the task
            log.exception("task %s: the worker failed", entry.outbox.task_id)
            ended = WorkerExit(exit_code=None, stopped=False, error=f"the worker failed: {exc}")
        if self._shutting_down and ended.stopped:
            ended = WorkerExit(
                exit_code=ended.exit_code,
                stopped=True,
                error="the agent shut down while the worker was running",
                result=ended.result,
                resource_usage=ended.resource_usage,
            )
        entry.outbox.finish(
            final_events(
                self._agent_id,
                entry.outbox.attempt,
                entry.outbox.task_id,
                ended,
                duration=time.monotonic() - entry.started,
            )
        )
