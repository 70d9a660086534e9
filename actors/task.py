"""The task actor: one unit of work on one agent, its attempts, and its permission requests.

The lifecycle and its rules live in `task_lifecycle`, an assignment in `assignment`, the
permission requests in `permissions`; this module turns messages into those steps. Reports
from an agent name the attempt they are about (PROTOCOL.md §5, 1.1): a report about any
attempt but the current one is answered `{stale: true}` and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors import permissions
from actors.actor import Actor
from actors.addresses import session_address, split_task_id
from actors.assignment import assign
from actors.notifications import notify
from actors.task_lifecycle import (
    MAX_REJECTIONS,
    RETRIES,
    TERMINAL,
    TRANSITIONS,
    dequeue,
    emit_status,
    enqueue,
    event_base,
    move,
    release_agent,
)
from actors.turn import CommitResult, Turn
from actors.views import task_view
from orchestra.codec import now_iso, parse_timestamp
from orchestra.errors import Forbidden, NotFound, TaskExecutionFailed

# Request ids of the latest inputs, to drop a retried request: far more than a client
# could have in flight across one reconnect.
INPUT_IDS_KEPT = 256
STALE = {"stale": True}


class TaskActor(Actor):
    kind = "task"

    async def on_create(self, turn: Turn) -> dict[str, Any]:
        if turn.exists:  # a retried create: the task is already there
            return task_view(turn.state).wire()
        sid, tid = split_task_id(turn.address.id)
        body = turn.message.body
        turn.set(
            id=tid,
            sessionId=sid,
            ownerId=body["ownerId"],
            agentId=None,
            tool=body["tool"],
            type=body.get("type", "code"),
            priority=body.get("priority", "normal"),
            parameters=body.get("parameters", {}),
            createdAt=now_iso(),
            attempts=0,
            lastSeq=0,
            status="queued",
            requiredCapabilities=body.get("requiredCapabilities") or [],
            strategy=body.get("strategy"),
            rejectedBy=[],
        )
        turn.tell(session_address(sid), "task:added", {"taskId": tid})
        emit_status(turn, None)
        if body.get("agentId"):
            await assign(self.env, turn, body["agentId"])
        else:
            enqueue(turn, self.env.settings.partitions)
        return task_view(turn.state).wire()

    async def on_assign(self, turn: Turn) -> None:
        """The dispatcher picked an agent for this waiting task."""
        if turn.state.get("status") == "queued":
            dequeue(turn, self.env.settings.partitions)
            await assign(self.env, turn, turn.message.body["agentId"])

    async def on_waiting(self, turn: Turn) -> None:
        """No agent can take the task yet: tell watchers why, when the reason changes."""
        reason = turn.message.body["reason"]
        if turn.state.get("status") == "queued" and turn.state.get("waitingFor") != reason:
            turn.set(waitingFor=reason)
            emit_status(turn, reason)

    # -- reports of the agent ----------------------------------------------------------

    async def on_accepted(self, turn: Turn) -> dict[str, Any]:
        if self._stale(turn):
            return STALE
        if turn.state["status"] == "assigned":
            self._move(turn, "accepted", startedAt=now_iso())
            body = turn.message.body
            turn.emit(
                turn.state["sessionId"],
                "task:accepted",
                event_base(turn) | {"estimatedDuration": body.get("estimatedDuration")},
            )
        return {}

    async def on_status(self, turn: Turn) -> dict[str, Any]:
        if self._stale(turn):
            return STALE
        reported = turn.message.body["status"]
        status = {"starting": "accepted", "paused": "running"}.get(reported, reported)
        current = turn.state["status"]
        message = turn.message.body.get("message")
        if status == current == "running" and message:
            emit_status(turn, message)  # news while running (how a tool handles approvals)
            return {}
        if status == current or status not in TRANSITIONS.get(current, frozenset()):
            return {}  # a repeat, or news about a task that has already ended
        extra: dict[str, Any] = {}
        if status in TERMINAL:
            extra["finishedAt"] = now_iso()
            if status == "error":
                extra["error"] = message or "the worker failed"
        if not turn.state.get("startedAt"):
            extra["startedAt"] = now_iso()
        self._move(turn, status, message=message, **extra)
        return {}

    async def on_result(self, turn: Turn) -> dict[str, Any]:
        if self._stale(turn):
            return STALE
        body = turn.message.body
        if turn.state.get("resultAt"):
            return {}  # a repeated result
        result = body.get("result")
        exit_code = result.get("exitCode") if isinstance(result, dict) else None
        turn.set(resultAt=now_iso(), result=result, exitCode=exit_code, duration=body["duration"])
        turn.emit(
            turn.state["sessionId"],
            "task:result",
            event_base(turn)
            | {
                "success": body["success"],
                "result": result,
                "error": body.get("error"),
                "duration": body["duration"],
                "resourceUsage": body.get("resourceUsage"),
            },
        )
        if turn.state["status"] not in TERMINAL:
            final = "completed" if body["success"] else "error"
            extra = {"error": body.get("error") or "the worker failed"} if final == "error" else {}
            self._move(turn, final, finishedAt=now_iso(), **extra)
        return {}

    async def on_rejected(self, turn: Turn) -> dict[str, Any]:
        if self._stale(turn):
            return STALE
        if turn.state["status"] not in ("assigned", "accepted"):
            return {}
        body = turn.message.body
        reason = body.get("reason") or "rejected by the agent"
        if body.get("code") == "PARAM_001":
            # The task's own parameters are at fault: no other agent would do better.
            message = f"PARAM_001: {reason}"
            self._move(turn, "error", message=message, error=message, finishedAt=now_iso())
            return {}
        rejected_by = [*(turn.state.get("rejectedBy") or []), turn.state["agentId"]]
        self._move(turn, "rejected", message=reason, rejectedBy=rejected_by)
        release_agent(turn)
        if int(turn.state.get("attempts", 0)) < MAX_REJECTIONS:
            # Another agent may take it: back to the queue, without the one that refused.
            self._move(turn, "queued", message=f"rejected by an agent ({reason}); queued again")
            enqueue(turn, self.env.settings.partitions)
        else:
            message = f"rejected by {len(rejected_by)} agents; last reason: {reason}"
            self._move(turn, "error", message=message, error=message, finishedAt=now_iso())
        return {}

    async def on_progress(self, turn: Turn) -> dict[str, Any]:
        if self._stale(turn):
            return STALE
        body = turn.message.body
        turn.emit(
            turn.state["sessionId"],
            "task:progress",
            event_base(turn)
            | {
                "progress": body["progress"],
                "currentStep": body.get("currentStep"),
                "estimatedRemaining": body.get("estimatedRemaining"),
            },
        )
        return {}

    async def on_permission_ask(self, turn: Turn) -> dict[str, Any]:
        """The worker asks to use a tool: watchers decide."""
        if self._stale(turn):
            return STALE
        if turn.state["status"] in TERMINAL:
            return {}  # its worker has ended: nothing waits for an answer
        view = permissions.ask(turn, turn.message.body, self.env.settings.permission_timeout_s)
        if view is not None:
            notify_permission(turn, view, self.env.settings.webhook_stream_max_len)
        return {}

    async def on_permission_cancelled(self, turn: Turn) -> dict[str, Any]:
        """The tool gave up on a request (it was interrupted, or it cancelled it)."""
        if self._stale(turn):
            return STALE
        body = turn.message.body
        permissions.cancel(turn, body["permissionId"], body.get("reason"))
        return {}

    # -- requests of users -------------------------------------------------------------

    async def on_input(self, turn: Turn) -> dict[str, Any]:
        self._require_live(turn)
        # A client that lost its gateway before the ack sends the same request again (same
        # envelope id), maybe to another node: the worker must get the text once.
        body = turn.message.body
        request_id = body.get("requestId")
        recent = list(turn.state.get("inputIds") or [])
        if request_id and request_id in recent:
            return {"accepted": True}
        if request_id:
            turn.set(inputIds=[*recent, request_id][-INPUT_IDS_KEPT:])
        command = {"taskId": turn.state["id"], "input": body.get("input") or ""}
        if body.get("eof"):
            command["eof"] = True
        turn.command(turn.state["agentId"], "worker:input", command)
        return {"accepted": True}

    async def on_stop(self, turn: Turn) -> dict[str, Any]:
        if not turn.exists:
            raise NotFound("unknown task")
        if turn.state.get("status") in TERMINAL:
            return {}
        if turn.state["status"] == "queued":
            dequeue(turn, self.env.settings.partitions)
            self._move(turn, "cancelled", finishedAt=now_iso())
            return {}
        self._require_live(turn)
        turn.command(
            turn.state["agentId"],
            "worker:stop",
            {"taskId": turn.state["id"], "mode": turn.message.body.get("mode", "interrupt")},
        )
        return {}

    async def on_permission(self, turn: Turn) -> dict[str, Any]:
        """A watcher's answer to a permission request: the first one wins."""
        if not turn.exists:
            raise NotFound("unknown task")
        live = turn.state["status"] not in TERMINAL and bool(turn.state.get("agentId"))
        return permissions.answer(turn, turn.message.body, deliver=live)

    async def on_permission_timeout(self, turn: Turn) -> None:
        live = turn.state.get("status") not in TERMINAL and bool(turn.state.get("agentId"))
        permissions.time_out(turn, turn.message.body["permissionId"], live)

    # -- the agent's fate --------------------------------------------------------------

    async def on_agent_lost(self, turn: Turn) -> None:
        """The agent vanished past its grace period while this task was on it."""
        if turn.state.get("status") not in ("assigned", "accepted", "running"):
            return
        if turn.state.get("agentId") != turn.message.body.get("agentId"):
            return  # already moved to another agent
        message = "the agent disconnected and did not come back within its grace period"
        if int(turn.state.get("attempts", 0)) < RETRIES.get(turn.state["tool"], 0) + 1:
            release_agent(turn)
            self._move(turn, "queued", message=message + "; queued again")
            enqueue(turn, self.env.settings.partitions)
            return
        self._move(turn, "lost", message=message, error=message, finishedAt=now_iso())

    async def on_agent_forgot(self, turn: Turn) -> None:
        """The agent came back without this task: its daemon restarted and lost it."""
        if turn.state.get("status") not in ("assigned", "accepted", "running"):
            return
        if turn.state.get("agentId") != turn.message.body.get("agentId"):
            return
        message = "the agent restarted and no longer has this task; its worker is gone"
        self._move(turn, "error", message=message, error=message, finishedAt=now_iso())

    # -- helpers ------------------------------------------------------------------------

    def _move(self, turn: Turn, status: str, message: str | None = None, **fields: Any) -> None:
        cap = self.env.settings.webhook_stream_max_len
        move(turn, status, message, webhook_cap=cap, **fields)

    def _stale(self, turn: Turn) -> bool:
        """Whether an agent's report is about an earlier attempt (True) or the current one
        (False); a report from an agent that never had the attempt it names is AUTH_002."""
        if not turn.exists:
            raise NotFound("unknown task")
        body = turn.message.body
        current = int(turn.state.get("attempts") or 0)
        attempt = body.get("attempt")
        if attempt is None or attempt == current:
            if body.get("agentId") != turn.state.get("agentId"):
                raise Forbidden("this task is not assigned to this agent")
            return False
        holders = turn.state.get("attemptAgents") or []
        if 1 <= attempt <= len(holders) and holders[attempt - 1] == body.get("agentId"):
            return True
        raise Forbidden("this task is not assigned to this agent")

    def _require_live(self, turn: Turn) -> None:
        if not turn.exists:
            raise NotFound("unknown task")
        if turn.state["status"] in TERMINAL:
            raise TaskExecutionFailed(f"the task has ended ({turn.state['status']})")
        if not turn.state.get("agentId"):
            raise TaskExecutionFailed("the task has no agent yet")

    async def on_committed(self, turn: Turn, result: CommitResult) -> None:
        """Keep the SQL history in step with the state (a new task in one insert)."""
        state = turn.state
        if turn.message.type == "create" and "createdAt" in turn.changes:
            await self.env.store.create_task(
                id=state["id"],
                session_id=state["sessionId"],
                owner_id=state["ownerId"],
                tool=state["tool"],
                type=state["type"],
                priority=state["priority"],
                parameters=state["parameters"],
                **_history(state),
            )
        elif {"status", "agentId", "attempts", "result"} & set(turn.changes):
            await self.env.store.update_task(state["id"], **_history(state))


def _history(state: dict[str, Any]) -> dict[str, Any]:
    """The SQL record's fields that follow the task's course."""
    return {
        "agent_id": state.get("agentId"),
        "status": state["status"],
        "attempts": state.get("attempts", 0),
        "error": state.get("error"),
        "exit_code": state.get("exitCode"),
        "result": state.get("result"),
        "started_at": _as_datetime(state.get("startedAt")),
        "finished_at": _as_datetime(state.get("finishedAt")),
        "worker_session_id": state.get("workerSessionId"),
        "usage": state.get("usage"),
    }


def notify_permission(turn: Turn, view: dict[str, Any], webhook_cap: int) -> None:
    """The owner's `permission.requested` webhooks."""
    notify(
        turn,
        "permission.requested",
        turn.state["ownerId"],
        f"{turn.state['id']}:{view['permissionId']}:permission.requested",
        {k: v for k, v in view.items() if k not in ("status", "attempt")}
        | {"agentId": turn.state.get("agentId")},
        max_len=webhook_cap,
    )


def _as_datetime(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None
