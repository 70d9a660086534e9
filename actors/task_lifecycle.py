"""A task's lifecycle: its states, the one place it moves, and what watchers are told.

    queued -> assigned -> accepted -> running -> completed | error | cancelled
    assigned | accepted -> rejected (back to the queue, or error when no retry is left)
    assigned | accepted | running -> lost (the agent vanished past its grace period)

Every transition goes through `move`, which also emits the session's `worker:status`,
resolves the permission requests of a worker that has ended, frees the agent's slot and
queues the owner's webhook notifications, all in the same turn.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actors import permissions
from actors.addresses import agent_address
from actors.dispatcher import DISPATCHER
from actors.notifications import notify
from actors.turn import AfterCommit, CommitResult, Turn
from orchestra import keys

__all__ = [
    "MAX_REJECTIONS",
    "RETRIES",
    "TERMINAL",
    "TRANSITIONS",
    "WIRE_STATUS",
    "dequeue",
    "emit_status",
    "enqueue",
    "event_base",
    "move",
    "release_agent",
]

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "error", "cancelled", "lost"})

# Retries after the agent is lost: none for interactive tools (a conversation cannot be
# replayed elsewhere), one for commands. A task may be rejected this many times in all.
RETRIES = {"custom": 1}
MAX_REJECTIONS = 3

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

# Webhook notifications (`/api/webhooks`) for the ends that the owner wants to hear of.
_NOTIFIED = {"completed": "task.completed", "error": "task.failed", "lost": "task.failed"}


def move(
    turn: Turn, status: str, message: str | None = None, *, webhook_cap: int, **fields: Any
) -> None:
    """The one place a task changes lifecycle state. `webhook_cap`: the length the stream of
    webhook notifications is trimmed to (`WEBHOOK_STREAM_MAX_LEN`)."""
    previous = turn.state.get("status")
    if previous is not None and status not in TRANSITIONS.get(previous, frozenset()):
        raise ValueError(f"task {turn.state.get('id')}: no transition {previous} -> {status}")
    turn.set(status=status, **fields)
    emit_status(turn, message, previous)
    if status in TERMINAL and previous not in TERMINAL:
        turn.after_commit(_log_end(turn.state["id"], status, previous))
        permissions.end_all(turn)
        if turn.state.get("agentId"):
            turn.tell(
                agent_address(turn.state["agentId"]), "task:finished", {"taskId": turn.state["id"]}
            )
        if status in _NOTIFIED:
            state = turn.state
            notify(
                turn,
                _NOTIFIED[status],
                state["ownerId"],
                f"{state['id']}:{_NOTIFIED[status]}",
                event_base(turn)
                | {
                    "tool": state["tool"],
                    "status": status,
                    "error": state.get("error"),
                    "workerSessionId": state.get("workerSessionId"),
                    "usage": state.get("usage"),
                },
                max_len=webhook_cap,
            )


def emit_status(turn: Turn, message: str | None, previous: str | None = None) -> None:
    """Tell watchers, when what they see changes (assigned and accepted both read
    `starting`; a rejection is followed by where the task goes next)."""
    status = turn.state["status"]
    if status == "rejected" or (
        previous is not None and WIRE_STATUS.get(previous) == WIRE_STATUS[status] and not message
    ):
        return
    data = event_base(turn) | {"status": WIRE_STATUS[status]}
    if message:
        data["message"] = message
    turn.emit(turn.state["sessionId"], "worker:status", data)


def event_base(turn: Turn) -> dict[str, Any]:
    return {
        "sessionId": turn.state["sessionId"],
        "taskId": turn.state["id"],
        "agentId": turn.state.get("agentId"),
    }


def enqueue(turn: Turn, partitions: int) -> None:
    member, priority = _queue_entry(turn)
    score = time.time() * 1000
    queue = keys.dispatch_queue(priority, partitions)
    turn.write(lambda pipe: pipe.zadd(queue, {member: score}))
    turn.tell(DISPATCHER, "kick")


def dequeue(turn: Turn, partitions: int) -> None:
    member, priority = _queue_entry(turn)
    queue = keys.dispatch_queue(priority, partitions)
    turn.write(lambda pipe: pipe.zrem(queue, member))


def release_agent(turn: Turn) -> None:
    """The task leaves its agent without ending (rejected, or queued again): the worker of
    that attempt is of no use now, and neither are its permission requests."""
    permissions.end_all(turn)
    agent_id = turn.state.get("agentId")
    if agent_id:
        turn.tell(agent_address(agent_id), "task:finished", {"taskId": turn.state["id"]})
    turn.set(agentId=None)


def _log_end(task_id: str, status: str, previous: str | None) -> AfterCommit:
    """One line when a task ends, once that is written (under the trace id of what
    ended it: the agent's report carries the one its task was assigned under)."""

    async def logged(result: CommitResult) -> None:
        log.info("task %s: %s (was %s)", task_id, status, previous)

    return logged


def _queue_entry(turn: Turn) -> tuple[str, str]:
    return f"{turn.state['sessionId']}/{turn.state['id']}", turn.state["priority"]
