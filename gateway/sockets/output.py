"""Agent output, the hot path (DESIGN.md §2): one frame, one script call, one round trip.

A `worker:output` or `task:stream` frame carries one item (1.0) or a batch of them (1.1,
PROTOCOL.md §5: `items`, the first one's `seq`, the rest numbered on). Either way the frame
becomes one call of the `append_output` script, which stores each item as its own entry of
the session's event stream, exactly as a single item would be: watchers see the same
events, each with its own seq and eventId. The rules for a batch:

- at most `MAX_BATCH_ITEMS` items (more: PARAM_001, a shape rule like any list's limit) and
  `MAX_BATCH_BYTES` of JSON for the whole frame (more: RES_001, "payload too large");
- every item is validated as a single one would be; one bad item refuses the whole frame
  (PARAM_001 naming the item, `details.item` its index) and nothing is stored;
- seqs already stored are skipped and the rest stored; a batch whose first seq lies past
  the first unstored one stores nothing (no hole, ever) and is answered with the unchanged
  `persistedSeq`, which is what makes the agent send again from there;
- a stored `result` item's usage is added to the task's once, a stored `system` item's
  `workerSessionId` becomes the task's (the last one of the batch wins).

Each frame is logged at DEBUG (logger `gateway.sockets.agent.output`), one line per frame
with its item count: the honest count of frames a test can check against the lines sent.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from actors import Scripts
from orchestra import keys
from orchestra.codec import now_iso, to_json
from orchestra.errors import Forbidden, NotFound, ResourceExhausted
from orchestra.placement import partition_of
from orchestra.protocol import (
    MAX_BATCH_BYTES,
    TaskStream,
    TaskStreamItem,
    WorkerOutput,
    WorkerOutputItem,
)

__all__ = ["ItemArgs", "check_batch_size", "store", "stream_item", "worker_item"]

log = logging.getLogger("gateway.sockets.agent.output")

ItemArgs = tuple[str, str, str]
"""One item as the script takes it: its own event fields (a JSON object), the usage to add
to the task's (JSON, or ''), the tool's session id to keep (JSON, or '')."""

_USAGE_FIELDS = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "costUsd")


def stream_item(item: TaskStream | TaskStreamItem, frame_timestamp: Any = None) -> ItemArgs:
    data = {"type": item.type, "data": item.data, "timestamp": _timestamp(item, frame_timestamp)}
    return to_json(data), "", ""


def worker_item(item: WorkerOutput | WorkerOutputItem, frame_timestamp: Any = None) -> ItemArgs:
    data = {
        "type": item.type,
        "content": item.content,
        "timestamp": _timestamp(item, frame_timestamp),
        "details": item.details,
        "usage": item.usage,
        "stats": item.stats,
    }
    # What the task keeps of its output (PROTOCOL.md §8): a turn's usage, summed, and the
    # latest session id of the tool's own conversation.
    # A result's usage is never '' (a result without usage: '{}'): the script also tells
    # the owner, by that, that the worker waits for input.
    usage = to_json(_usage_numbers(item.usage or {})) if item.type == "result" else ""
    session = (item.details or {}).get("workerSessionId") if item.type == "system" else None
    return (
        to_json({k: v for k, v in data.items() if v is not None}),
        usage,
        to_json(session) if isinstance(session, str) and session else "",
    )


def check_batch_size(frame_bytes: int) -> None:
    """RES_001 for a batch frame over `MAX_BATCH_BYTES` of JSON."""
    if frame_bytes > MAX_BATCH_BYTES:
        raise ResourceExhausted(
            f"a batch holds at most {MAX_BATCH_BYTES} bytes of JSON, not {frame_bytes}"
        )


async def store(
    scripts: Scripts,
    *,
    session_id: str,
    task_id: str,
    agent_id: str,
    attempt: int | None,
    seq: int,
    event: str,
    items: list[ItemArgs],
    notifications_cap: int,
    partitions: int,
) -> dict[str, Any]:
    """Store a frame's items (seq, seq+1, ...) with one script call; the ack's data."""
    # `seq` is put in by the script: the task's numbering, which may differ from the
    # agent's after a retry.
    shared = to_json({"sessionId": session_id, "taskId": task_id, "agentId": agent_id})
    # The agent id compared as task hash fields hold it (the standard library's JSON).
    agent = json.dumps(agent_id)
    args: list[str | int] = [seq, event, agent, "" if attempt is None else attempt, shared[1:-1]]
    # A notification goes by the partition's outgoing stream (its forwarder moves it to
    # the notifications stream): every key of the call is in the session's partition.
    args += [now_iso(), notifications_cap, keys.webhook_events()]
    for item in items:
        args.extend(item)
    where = [
        keys.task(session_id, task_id, partitions),
        keys.session_events(session_id, partitions),
        keys.outgoing(partition_of(f"session:{session_id}", partitions), partitions),
    ]
    # Answered once durable (`Scripts.durable`): the agent forgets what it is told is stored.
    answer = await scripts.durable(scripts.append_output, where, args)
    if answer[0] == -1:
        raise NotFound("unknown task")
    if answer[0] == -2:
        raise Forbidden("this task is not assigned to this agent")
    if answer[0] == -3:
        return {"stale": True, "persistedSeq": int(answer[1])}
    persisted = int(answer[0])
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s frame of %d item(s), seq %d, task %s: %d stored, persistedSeq %d",
            event,
            len(items),
            seq,
            task_id,
            int(answer[1]),
            persisted,
        )
    return {"persistedSeq": persisted}


def _timestamp(item: Any, frame_timestamp: Any) -> str:
    for value in (item.timestamp, frame_timestamp):
        if isinstance(value, str) and len(value) <= 64:
            return value
    return now_iso()


def _usage_numbers(usage: dict[str, Any]) -> dict[str, float]:
    """The TokenUsage fields that are finite, non-negative numbers (the rest is not summed)."""
    return {
        name: value
        for name in _USAGE_FIELDS
        if isinstance(value := usage.get(name), int | float)
        and not isinstance(value, bool)
        and 0 <= value < 1e15
    }
