"""The task actor: one unit of work on one agent, and its lifecycle.

    queued -> assigned -> accepted -> running -> completed | error | cancelled
    assigned | accepted -> rejected (back to the queue, or error when no retry is left)
    assigned | accepted | running -> lost (the agent vanished past its grace period)

Every transition goes through `_move`, which also emits the session's `worker:status`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from actors.actor import Actor
from actors.addresses import agent_address, session_address, split_task_id
from actors.dispatcher import DISPATCHER
from actors.turn import CommitResult, Turn
from actors.views import task_view
from orchestra import keys
from orchestra.codec import now_iso, parse_timestamp
from orchestra.errors import Forbidden, NotFound, TaskExecutionFailed

TERMINAL = frozenset({"completed", "error", "cancelled", "lost"})

# Retries after the agent is lost: none for interactive tools (a conversation cannot be
# replayed elsewhere), one for commands. A task may be rejected this many times in all.
RETRIES = {"custom": 1}
MAX_REJECTIONS = 3
# Request ids of the latest inputs, to drop a retried request: far more than a client
# could have in flight across one reconnect.
INPUT_IDS_KEPT = 256

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"assigned", "cancelled", "error"}),
    "assigned": frozenset(
        {"accepted", "running", "rejected", "completed", "error", "cancelled", "lost", "queued"}
    ),
    "accepted": frozenset(
        {"running", "rejected", "completed", "error", "cancelled", "lost", "queued"}
    ),
    "running": frozenset({"completed", "error", "cancelled", "lost", "queued"}),
    "rejected": frozenset({"queued", "error"}),
}

# What watchers are told for each lifecycle state (PROTOCOL.md §4, worker:status).
WIRE_STATUS = {
    "queued": "queued",
    "assigned": "starting",
    "accepted": "starting",
    "running": "running",
    "completed": "completed",
    "error": "error",
    "cancelled": "cancelled",
    "lost": "lost",
}


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
            ownerIsAdmin=bool(body.get("ownerIsAdmin")),
            rejectedBy=[],
        )
        turn.tell(session_address(sid), "task:added", {"taskId": tid})
        self._emit_status(turn, None)
        if body.get("agentId"):
            self._assign(turn, body["agentId"])
        else:
            self._enqueue(turn)
        return task_view(turn.state).wire()

    async def on_assign(self, turn: Turn) -> None:
        """The dispatcher picked an agent for this waiting task."""
        if turn.state.get("status") == "queued":
            self._dequeue(turn)
            self._assign(turn, turn.message.body["agentId"])

    async def on_waiting(self, turn: Turn) -> None:
        """No agent can take the task yet: tell watchers why, when the reason changes."""
        reason = turn.message.body["reason"]
        if turn.state.get("status") == "queued" and turn.state.get("waitingFor") != reason:
            turn.set(waitingFor=reason)
            self._emit_status(turn, reason)

    async def on_accepted(self, turn: Turn) -> None:
        self._check_agent(turn)
        if turn.state["status"] in ("assigned",):
            self._move(turn, "accepted", startedAt=now_iso())
            body = turn.message.body
            turn.emit(
                turn.state["sessionId"],
                "task:accepted",
                self._event_base(turn) | {"estimatedDuration": body.get("estimatedDuration")},
            )

    async def on_status(self, turn: Turn) -> None:
        self._check_agent(turn)
        reported = turn.message.body["status"]
        status = {"starting": "accepted", "paused": "running"}.get(reported, reported)
        current = turn.state["status"]
        if status == current or status not in TRANSITIONS.get(current, frozenset()):
            return  # a repeat, or news about a task that has already ended
        extra: dict[str, Any] = {}
        if status in TERMINAL:
            extra["finishedAt"] = now_iso()
            if status == "error":
                extra["error"] = turn.message.body.get("message") or "the worker failed"
        if not turn.state.get("startedAt"):
            extra["startedAt"] = now_iso()
        self._move(turn, status, message=turn.message.body.get("message"), **extra)

    async def on_result(self, turn: Turn) -> None:
        self._check_agent(turn)
        body = turn.message.body
        if turn.state.get("resultAt"):
            return  # a repeated result
        result = body.get("result")
        exit_code = result.get("exitCode") if isinstance(result, dict) else None
        turn.set(resultAt=now_iso(), result=result, exitCode=exit_code, duration=body["duration"])
        turn.emit(
            turn.state["sessionId"],
            "task:result",
            self._event_base(turn)
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

    async def on_rejected(self, turn: Turn) -> None:
        self._check_agent(turn)
        if turn.state["status"] not in ("assigned", "accepted"):
            return
        reason = turn.message.body.get("reason") or "rejected by the agent"
        rejected_by = [*(turn.state.get("rejectedBy") or []), turn.state["agentId"]]
        self._move(turn, "rejected", message=reason, rejectedBy=rejected_by)
        self._release_agent(turn)
        if int(turn.state.get("attempts", 0)) < MAX_REJECTIONS:
            # Another agent may take it: back to the queue, without the one that refused.
            self._move(turn, "queued", message=f"rejected by an agent ({reason}); queued again")
            self._enqueue(turn)
        else:
            message = f"rejected by {len(rejected_by)} agents; last reason: {reason}"
            self._move(turn, "error", message=message, error=message, finishedAt=now_iso())

    async def on_input(self, turn: Turn) -> dict[str, Any]:
        self._require_live(turn)
        # A client that lost its gateway before the ack sends the same request again (same
        # envelope id), maybe to another node: the worker must get the text once.
        request_id = turn.message.body.get("requestId")
        recent = list(turn.state.get("inputIds") or [])
        if request_id and request_id in recent:
            return {"accepted": True}
        if request_id:
            turn.set(inputIds=[*recent, request_id][-INPUT_IDS_KEPT:])
        turn.command(
            turn.state["agentId"],
            "worker:input",
            {"taskId": turn.state["id"], "input": turn.message.body["input"]},
        )
        return {"accepted": True}

    async def on_stop(self, turn: Turn) -> dict[str, Any]:
        if not turn.exists:
            raise NotFound("unknown task")
        if turn.state.get("status") in TERMINAL:
            return {}
        if turn.state["status"] == "queued":
            self._dequeue(turn)
            self._move(turn, "cancelled", finishedAt=now_iso())
            return {}
        self._require_live(turn)
        turn.command(
            turn.state["agentId"],
            "worker:stop",
            {"taskId": turn.state["id"], "mode": turn.message.body.get("mode", "interrupt")},
        )
        return {}

    async def on_agent_lost(self, turn: Turn) -> None:
        """The agent vanished past its grace period while this task was on it."""
        if turn.state.get("status") not in ("assigned", "accepted", "running"):
            return
        if turn.state.get("agentId") != turn.message.body.get("agentId"):
            return  # already moved to another agent
        message = "the agent disconnected and did not come back within its grace period"
        if int(turn.state.get("attempts", 0)) < RETRIES.get(turn.state["tool"], 0) + 1:
            self._release_agent(turn)
            self._move(turn, "queued", message=message + "; queued again")
            self._enqueue(turn)
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

    async def on_progress(self, turn: Turn) -> None:
        self._check_agent(turn)
        body = turn.message.body
        turn.emit(
            turn.state["sessionId"],
            "task:progress",
            self._event_base(turn)
            | {
                "progress": body["progress"],
                "currentStep": body.get("currentStep"),
                "estimatedRemaining": body.get("estimatedRemaining"),
            },
        )

    async def on_permission_ask(self, turn: Turn) -> None:
        """The worker asks to use a tool: watchers decide."""
        self._check_agent(turn)
        body = turn.message.body
        turn.emit(
            turn.state["sessionId"],
            "worker:permission",
            {
                "sessionId": turn.state["sessionId"],
                "taskId": turn.state["id"],
                "permissionId": body["permissionId"],
                "tool": body["tool"],
                "input": body.get("input"),
            },
        )

    async def on_permission(self, turn: Turn) -> dict[str, Any]:
        """A watcher's decision goes to the agent."""
        self._require_live(turn)
        body = turn.message.body
        decision = {k: body[k] for k in ("permissionId", "decision", "message") if body.get(k)}
        turn.command(
            turn.state["agentId"], "worker:permission", {"taskId": turn.state["id"], **decision}
        )
        return {}

    # -- helpers ------------------------------------------------------------------------

    def _assign(self, turn: Turn, agent_id: str) -> None:
        # The new attempt's output is numbered on from what the earlier ones stored (no
        # output is stored while the task waits without an agent, so this is exact).
        turn.set(
            agentId=agent_id,
            attempts=int(turn.state.get("attempts", 0)) + 1,
            seqBase=int(turn.state.get("lastSeq") or 0),
        )
        self._move(turn, "assigned")
        task = turn.state
        parameters = dict(task["parameters"])
        parameters.update(sessionId=task["sessionId"], userId=task["ownerId"])
        turn.command(
            agent_id,
            "task:assign",
            {
                "taskId": task["id"],
                "agentId": agent_id,
                "task": {
                    "taskId": task["id"],
                    "type": task["type"],
                    "tool": task["tool"],
                    "parameters": parameters,
                    "priority": task["priority"],
                },
            },
        )
        turn.tell(agent_address(agent_id), "task:assigned", {"taskId": task["id"]})

    def _enqueue(self, turn: Turn) -> None:
        member, priority = self._queue_entry(turn)
        score = time.time() * 1000
        turn.write(lambda pipe: pipe.zadd(keys.dispatch_queue(priority), {member: score}))
        turn.tell(DISPATCHER, "kick")

    def _dequeue(self, turn: Turn) -> None:
        member, priority = self._queue_entry(turn)
        turn.write(lambda pipe: pipe.zrem(keys.dispatch_queue(priority), member))

    def _queue_entry(self, turn: Turn) -> tuple[str, str]:
        return f"{turn.state['sessionId']}/{turn.state['id']}", turn.state["priority"]

    def _release_agent(self, turn: Turn) -> None:
        """The task leaves its agent without ending (rejected, or queued again)."""
        agent_id = turn.state.get("agentId")
        if agent_id:
            turn.tell(agent_address(agent_id), "task:finished", {"taskId": turn.state["id"]})
        turn.set(agentId=None)

    def _move(self, turn: Turn, status: str, message: str | None = None, **fields: Any) -> None:
        """The one place a task changes lifecycle state."""
        previous = turn.state.get("status")
        if previous is not None and status not in TRANSITIONS.get(previous, frozenset()):
            raise ValueError(f"task {turn.state.get('id')}: no transition {previous} -> {status}")
        turn.set(status=status, **fields)
        self._emit_status(turn, message, previous)
        if status in TERMINAL and previous not in TERMINAL and turn.state.get("agentId"):
            turn.tell(
                agent_address(turn.state["agentId"]), "task:finished", {"taskId": turn.state["id"]}
            )

    def _emit_status(self, turn: Turn, message: str | None, previous: str | None = None) -> None:
        """Tell watchers, when what they see changes (assigned and accepted both read
        `starting`; a rejection is followed by where the task goes next)."""
        status = turn.state["status"]
        if status == "rejected" or (
            previous is not None
            and WIRE_STATUS.get(previous) == WIRE_STATUS[status]
            and not message
        ):
            return
        data = self._event_base(turn) | {"status": WIRE_STATUS[status]}
        if message:
            data["message"] = message
        turn.emit(turn.state["sessionId"], "worker:status", data)

    def _event_base(self, turn: Turn) -> dict[str, Any]:
        return {
            "sessionId": turn.state["sessionId"],
            "taskId": turn.state["id"],
            "agentId": turn.state.get("agentId"),
        }

    def _check_agent(self, turn: Turn) -> None:
        if not turn.exists:
            raise NotFound("unknown task")
        if turn.message.body.get("agentId") != turn.state.get("agentId"):
            raise Forbidden("this task is not assigned to this agent")

    def _require_live(self, turn: Turn) -> None:
        if not turn.exists:
            raise NotFound("unknown task")
        if turn.state["status"] in TERMINAL:
            raise TaskExecutionFailed(f"the task has ended ({turn.state['status']})")
        if not turn.state.get("agentId"):
            raise TaskExecutionFailed("the task has no agent yet")

    async def on_committed(self, turn: Turn, result: CommitResult) -> None:
        """Keep the SQL history in step with the state."""
        state = turn.state
        if turn.message.type == "create" and "createdAt" in turn.changes:
            await self.env.store.create_task(
                id=state["id"],
                session_id=state["sessionId"],
                owner_id=state["ownerId"],
                tool=state["tool"],
                type=state["type"],
                priority=state["priority"],
                status=state["status"],
                parameters=state["parameters"],
            )
        if turn.changes:
            await self.env.store.update_task(
                state["id"],
                agent_id=state.get("agentId"),
                status=state["status"],
                attempts=state.get("attempts", 0),
                error=state.get("error"),
                exit_code=state.get("exitCode"),
                result=state.get("result"),
                started_at=_as_datetime(state.get("startedAt")),
                finished_at=_as_datetime(state.get("finishedAt")),
            )


def _as_datetime(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None
