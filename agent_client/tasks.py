"""The agent's tasks: assignment, input, stop, permission, and the end of each worker.

Each task has an outbox (its ordered, spooled events) and, while its process runs, a
worker. What this module emits, per task, in order:

- refused: `task:rejected {reason}`;
- started: `task:accepted`, `worker:status running`, its output items, then, once every item
  is acknowledged, `worker:status completed | cancelled | error` and `task:result`.

After a daemon restart the spools come back: their output is sent again, and a task whose
worker died with the old daemon ends with `worker:status error` and a failed `task:result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agent_client.outbox import Link, TaskOutbox
from agent_client.spool import FinalEvents, Spool
from agent_client.workers import WORKERS, Worker, WorkerExit, WorkerSpec, WorkerStartError
from agent_client.workers.base import StopMode, describe_exit
from orchestra.aio import cancel_and_wait
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

    def __init__(self, settings: Settings, link: Link) -> None:
        self._settings = settings
        self._link = link
        self._agent_id = settings.agent_id
        self._spool_dir = settings.agent_state_dir / "spool"
        self._work_dir = settings.agent_state_dir / "work"
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
                self._end_orphan(spool.meta)
                spool.set_final(
                    self._final_events(
                        spool.task_id,
                        status="error",
                        message="the agent restarted while the worker was running",
                        success=False,
                        result=None,
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
        known = self._tasks.get(task_id)
        if known is not None:
            if known.outbox.spool.meta.get("commandId") in (None, command_id):
                log.info("task %s: assigned again while known, ignored", task_id)
                return
            # A new assignment of a task we hold: the gateway gave up on our earlier attempt
            # (we were gone past the grace period) and queued the task again. The earlier
            # attempt's worker and unsent reports are of no use to anyone now.
            log.warning("task %s: assigned anew; ending the earlier attempt", task_id)
            await self._drop(known)
        tool = str(task.get("tool", ""))
        parameters = task.get("parameters") if isinstance(task.get("parameters"), dict) else {}
        assert isinstance(parameters, dict)
        worker_class = WORKERS.get(tool)
        reason: str | None = None
        workdir: Path | None = None
        if self._shutting_down:
            reason = "the agent is shutting down"
        elif worker_class is None or tool not in self._settings.agent_capabilities:
            reason = f"this agent does not run the {tool!r} tool"
        elif self.running_count >= self._settings.agent_max_concurrency:
            reason = f"this agent is full ({self._settings.agent_max_concurrency} tasks running)"
        else:
            reason = worker_class.check(parameters)
            if reason is None:
                workdir, reason = self._working_directory(parameters.get("workingDirectory"))
        spool = Spool.create(self._spool_dir, task_id, tool=tool, commandId=command_id)
        outbox = self._new_outbox(spool)
        entry = _Task(outbox)
        self._tasks[task_id] = entry
        if reason is None and worker_class is not None and workdir is not None:
            spec = WorkerSpec(
                task_id=task_id,
                tool=tool,
                parameters=parameters,
                working_directory=workdir,
                stop_grace_s=self._settings.worker_stop_grace_s,
                max_chunk_bytes=max(1024, min(64 * 1024, self._settings.max_payload_bytes // 8)),
            )
            worker = worker_class(spec, outbox.output)
            # Queued before the process starts, so no output can overtake them.
            outbox.control("task:accepted", {})
            outbox.control("worker:status", {"status": "running"})
            try:
                await worker.start()
            except WorkerStartError as exc:
                reason = str(exc)
                outbox.discard_controls()
            else:
                entry.worker = worker
                entry.started = time.monotonic()
                spool.update_meta(pid=worker.pid, createTime=_create_time(worker.pid))
                entry.watcher = asyncio.create_task(self._watch(entry, worker))
        if reason is not None:
            log.info("task %s: rejected: %s", task_id, reason)
            outbox.finish([("task:rejected", self._ids(task_id) | {"reason": reason})])
        outbox.start()

    async def input(self, data: Mapping[str, Any]) -> None:
        """`worker:input`: text for the worker's stdin."""
        entry = self._running(data.get("taskId"), "worker:input")
        text = data.get("input")
        if entry is not None and entry.worker is not None:
            await entry.worker.send_input(text if isinstance(text, str) else str(text))

    async def stop(self, data: Mapping[str, Any]) -> None:
        """`worker:stop`: interrupt (SIGINT, escalating) or kill (SIGKILL)."""
        entry = self._running(data.get("taskId"), "worker:stop")
        mode: StopMode = "kill" if data.get("mode") == "kill" else "interrupt"
        if entry is not None and entry.worker is not None:
            log.info("task %s: stop requested (%s)", entry.outbox.task_id, mode)
            await entry.worker.stop(mode)

    async def permission(self, data: Mapping[str, Any]) -> None:
        """`worker:permission`: the user's decision on something the worker asked."""
        entry = self._running(data.get("taskId"), "worker:permission")
        if entry is not None and entry.worker is not None:
            await entry.worker.permission(
                str(data.get("permissionId", "")),
                str(data.get("decision", "deny")),
                data.get("message") if isinstance(data.get("message"), str) else None,
            )

    # -- shutting down -----------------------------------------------------------------

    async def shutdown(self, flush_timeout_s: float) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace), flush, close."""
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

    def _ids(self, task_id: str) -> dict[str, Any]:
        return {"taskId": task_id, "agentId": self._agent_id}

    def _new_outbox(self, spool: Spool) -> TaskOutbox:
        return TaskOutbox(
            spool,
            self._link,
            agent_id=self._agent_id,
            ack_timeout_s=self._settings.connection_timeout_s,
            retry_delay_s=self._settings.reconnect_delay_s,
            on_done=self._forget,
        )

    def _forget(self, outbox: TaskOutbox) -> None:
        entry = self._tasks.get(outbox.task_id)
        if entry is not None and entry.outbox is outbox:
            del self._tasks[outbox.task_id]
            log.info("task %s: delivered in full", outbox.task_id)

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

    def _working_directory(self, requested: Any) -> tuple[Path | None, str | None]:
        """The task's directory and None, or None and why it is refused."""
        if requested is None or requested == "":
            self._work_dir.mkdir(parents=True, exist_ok=True)
            return self._work_dir.resolve(), None
        if not isinstance(requested, str):
            return None, "workingDirectory must be a string"
        path = Path(requested).expanduser()
        if not path.is_absolute():
            path = self._work_dir / path
        path = path.resolve()
        roots = [Path(root).expanduser().resolve() for root in self._settings.agent_allowed_roots]
        if roots and not any(path.is_relative_to(root) for root in roots):
            return None, f"working directory {requested} is outside the roots this agent allows"
        if not path.is_dir():
            return None, f"working directory {requested} does not exist"
        return path, None

    async def _watch(self, entry: _Task, worker: Worker) -> None:
        """Wait for the worker's end, then queue its final status and result."""
        try:
            ended = await worker.wait()
        except Exception as exc:  # a bug in a worker must still end the task
            log.exception("task %s: the worker failed", entry.outbox.task_id)
            ended = WorkerExit(exit_code=None, stopped=False)
            message = f"the worker failed: {exc}"
        else:
            message = describe_exit(ended.exit_code)
        duration = time.monotonic() - entry.started
        success = ended.exit_code == 0 and not ended.stopped
        if self._shutting_down and ended.stopped:
            status, message = "error", "the agent shut down while the worker was running"
        elif ended.stopped:
            status, message = "cancelled", "the worker was stopped on request"
        elif success:
            status = "completed"
        else:
            status = "error"
        result: dict[str, Any] = {"exitCode": ended.exit_code}
        if ended.exit_code is not None and ended.exit_code < 0:
            with contextlib.suppress(ValueError):
                result["signal"] = signal.Signals(-ended.exit_code).name
        entry.outbox.finish(
            self._final_events(
                entry.outbox.task_id,
                status=status,
                message=None if success else message,
                success=success,
                result=result,
                duration=duration,
            )
        )

    def _final_events(
        self,
        task_id: str,
        *,
        status: str,
        message: str | None,
        success: bool,
        result: dict[str, Any] | None,
        duration: float,
    ) -> FinalEvents:
        state: dict[str, Any] = self._ids(task_id) | {"status": status}
        outcome: dict[str, Any] = self._ids(task_id) | {
            "success": success,
            "duration": round(duration, 3),
        }
        if message is not None:
            state["message"] = message
            outcome["error"] = message
        if result is not None:
            outcome["result"] = result
        return [("worker:status", state), ("task:result", outcome)]

    def _end_orphan(self, meta: Mapping[str, Any]) -> None:
        """Kill the process group a previous daemon left running, if it is still the same."""
        pid, created = meta.get("pid"), meta.get("createTime")
        if not isinstance(pid, int) or not isinstance(created, int | float):
            return
        if _create_time(pid) != created:
            return  # gone, or the pid now belongs to someone else
        log.warning("ending the orphaned worker process group %d", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _create_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None
