"""How `codex app-server`'s thread items and turns become Orchestra output items (§8).

Pure functions and small state, no I/O: `codex.CodexWorker` feeds them what Codex says.

- `thread/start`'s (or `thread/resume`'s) answer -> `system` (`details.workerSessionId`:
  the thread id, `model`, `approvalPolicy`, `sandbox`, `resumed`).
- `userMessage` -> `user`; `agentMessage` (and `plan`) -> `assistant` (`details.messageId`);
  `reasoning` -> `thinking`. Text longer than the chunk limit goes out in several items of
  the same `messageId` (`details.part`, `details.parts`).
- `commandExecution`, `fileChange`, `mcpToolCall`, `dynamicToolCall`, `webSearch`,
  `imageView`, `collabAgentToolCall` -> `tool` when the item starts (`details: {toolUseId:
  item id, name, input}`), `tool-result` when it completes (`details: {toolUseId, isError,
  status, exitCode?}`; content cut to the chunk limit with `details.truncated`).
- A turn's end -> `result`: `usage` summed over the turn's model calls (Codex reports each
  call's `last` usage in `thread/tokenUsage/updated`; OpenAI's `inputTokens` include the
  cached ones, so `inputTokens` here is the uncached part and `cacheReadTokens` the cached
  part; Codex reports no cost), `stats: {durationMs, turns: model calls}`,
  `details: {isError, status, turnId, interrupted?, error?, codexErrorInfo?}`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from agent_client.workers.items import cut, split_text
from orchestra.codec import now_iso

__all__ = [
    "TOOL_ITEM_TYPES",
    "TurnState",
    "Usage",
    "item",
    "item_outputs",
    "system_item",
    "text_items",
    "tool_call",
    "tool_result",
    "turn_outputs",
    "user_text",
]

TOOL_ITEM_TYPES = frozenset(
    {
        "commandExecution",
        "fileChange",
        "mcpToolCall",
        "dynamicToolCall",
        "webSearch",
        "imageView",
        "collabAgentToolCall",
    }
)


@dataclass
class Usage:
    """Token counts, as `TokenUsage` on the wire."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def add_breakdown(self, breakdown: dict[str, Any]) -> None:
        """Add one Codex `TokenUsageBreakdown` (`inputTokens` includes the cached ones)."""
        cached = _int(breakdown.get("cachedInputTokens"))
        self.input_tokens += max(0, _int(breakdown.get("inputTokens")) - cached)
        self.cache_read_tokens += cached
        self.cache_write_tokens += _int(breakdown.get("cacheWriteInputTokens"))
        self.output_tokens += _int(breakdown.get("outputTokens"))

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens

    def wire(self) -> dict[str, int]:
        usage = {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens}
        if self.cache_read_tokens:
            usage["cacheReadTokens"] = self.cache_read_tokens
        if self.cache_write_tokens:
            usage["cacheWriteTokens"] = self.cache_write_tokens
        return usage


@dataclass
class TurnState:
    """One turn from `turn/start` to `turn/completed`."""

    text: str
    id: str | None = None
    started: float = field(default_factory=time.monotonic)
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    interrupt_wanted: bool = False
    last_answer: str = ""
    partial: dict[str, list[str]] = field(default_factory=dict)
    """agentMessage deltas by item id, until the item completes."""
    outputs: dict[str, list[str]] = field(default_factory=dict)
    """commandExecution output deltas by item id, a fallback for `aggregatedOutput`."""
    announced: set[str] = field(default_factory=set)
    """Tool items already reported as `tool`."""


def item(
    kind: str, content: str, details: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One `worker:output` item."""
    fields: dict[str, Any] = {"type": kind, "content": content}
    if details is not None:
        fields["details"] = details
    return fields | extra | {"timestamp": now_iso()}


def system_item(result: dict[str, Any], resumed: bool) -> dict[str, Any]:
    """The `system` item for `thread/start`'s (or `thread/resume`'s) answer."""
    thread_id, model = result["thread"]["id"], result.get("model")
    details = {
        "workerSessionId": thread_id,
        "model": model,
        "modelProvider": result.get("modelProvider"),
        "cwd": result.get("cwd"),
        "approvalPolicy": result.get("approvalPolicy"),
        "sandbox": (result.get("sandbox") or {}).get("type"),
        "resumed": resumed,
    }
    verb = "resumed" if resumed else "started"
    return item("system", f"Codex thread {thread_id} {verb} ({model})", details)


def text_items(kind: str, text: str, message_id: str, limit: int, **details: Any) -> list[dict]:
    """A `user`, `assistant` or `thinking` text, split into items of at most `limit`."""
    return [
        item(kind, piece, {"messageId": message_id, **more, **details})
        for piece, more in split_text(text, limit)
    ]


def user_text(content: Any) -> str:
    """A `userMessage`'s input parts as one text (images and files by their path)."""
    parts = []
    for part in content if isinstance(content, list) else []:
        kind = part.get("type")
        if kind == "text":
            parts.append(str(part.get("text", "")))
        elif kind in ("localImage", "localAudio", "mention", "skill"):
            parts.append(f"[{kind}: {part.get('path') or part.get('name')}]")
        elif kind:
            parts.append(f"[{kind}]")
    return "\n".join(parts)


def _name_and_input(thread_item: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """A tool item's name, its input and a one-line description."""
    kind = str(thread_item.get("type"))
    if kind == "commandExecution":
        command = str(thread_item.get("command", ""))
        return kind, {"command": command, "cwd": thread_item.get("cwd")}, command
    if kind == "fileChange":
        changes = thread_item.get("changes") or []
        paths = ", ".join(str(c.get("path")) for c in changes if isinstance(c, dict))
        return kind, {"changes": changes}, f"change {paths}" if paths else "change files"
    if kind == "mcpToolCall":
        name = f"mcp__{thread_item.get('server')}__{thread_item.get('tool')}"
        return name, _as_input(thread_item.get("arguments")), name
    if kind == "dynamicToolCall":
        name = str(thread_item.get("tool"))
        return name, _as_input(thread_item.get("arguments")), name
    if kind == "webSearch":
        query = str(thread_item.get("query", ""))
        return kind, {"query": query}, f"search the web: {query}"
    if kind == "imageView":
        return kind, {"path": thread_item.get("path")}, f"view {thread_item.get('path')}"
    tool = str(thread_item.get("tool", kind))
    agent_input = {
        "prompt": thread_item.get("prompt"),
        "receivers": thread_item.get("receiverThreadIds"),
    }
    return tool, agent_input, tool


def _as_input(arguments: Any) -> dict[str, Any]:
    return arguments if isinstance(arguments, dict) else {"arguments": arguments}


def tool_call(thread_item: dict[str, Any]) -> dict[str, Any]:
    """The `tool` item of a tool item that started."""
    name, tool_input, line = _name_and_input(thread_item)
    details = {"toolUseId": thread_item.get("id"), "name": name, "input": tool_input}
    return item("tool", line, details)


def tool_result(thread_item: dict[str, Any], fallback: str, limit: int) -> dict[str, Any]:
    """The `tool-result` item of a tool item that completed."""
    kind = thread_item.get("type")
    status = str(thread_item.get("status") or "completed")
    is_error = status in ("failed", "declined") or thread_item.get("success") is False
    details: dict[str, Any] = {"toolUseId": thread_item.get("id"), "status": status}
    if kind == "commandExecution":
        exit_code = thread_item.get("exitCode")
        details["exitCode"] = exit_code
        is_error = is_error or (isinstance(exit_code, int) and exit_code != 0)
        output = thread_item.get("aggregatedOutput")
        content = output if isinstance(output, str) else fallback
        if not content:
            content = f"exit code {exit_code}" if exit_code is not None else status
    elif kind == "mcpToolCall":
        error = thread_item.get("error")
        result = thread_item.get("result") or {}
        if isinstance(error, dict):
            content = str(error.get("message", ""))
        else:
            content = "\n".join(
                str(b.get("text")) if isinstance(b, dict) and "text" in b else json.dumps(b)
                for b in result.get("content") or []
            )
    elif kind == "dynamicToolCall":
        blocks = thread_item.get("contentItems") or []
        content = "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))
    elif kind == "fileChange":
        paths = [
            str(c.get("path")) for c in thread_item.get("changes") or [] if isinstance(c, dict)
        ]
        content = f"{status}: {', '.join(paths)}" if paths else status
    else:
        content = status
    content, truncated = cut(content or status, limit)
    details["isError"] = is_error
    if truncated:
        details["truncated"] = True
    return item("tool-result", content, details)


def item_outputs(
    method: str, thread_item: dict[str, Any], turn: TurnState | None, limit: int
) -> list[dict[str, Any]]:
    """The items for one `item/started` or `item/completed`."""
    kind, item_id = thread_item.get("type"), str(thread_item.get("id"))
    if method == "item/started":
        if kind in TOOL_ITEM_TYPES and turn is not None:
            turn.announced.add(item_id)
            return [tool_call(thread_item)]
        return []
    if kind == "userMessage":
        return text_items("user", user_text(thread_item.get("content")), item_id, limit)
    if kind in ("agentMessage", "plan"):
        text = str(thread_item.get("text", ""))
        if turn is not None:
            turn.partial.pop(item_id, None)
            turn.last_answer = text if kind == "agentMessage" else turn.last_answer
        extra = {"kind": "plan"} if kind == "plan" else {}
        return text_items("assistant", text, item_id, limit, **extra)
    if kind == "reasoning":
        parts = [*(thread_item.get("summary") or []), *(thread_item.get("content") or [])]
        return text_items("thinking", "\n".join(map(str, parts)), item_id, limit)
    if kind not in TOOL_ITEM_TYPES:
        return []
    announced = turn is not None and item_id in turn.announced
    fallback = "".join(turn.outputs.pop(item_id, [])) if turn is not None else ""
    return [
        *([] if announced else [tool_call(thread_item)]),
        tool_result(thread_item, fallback, limit),
    ]


def turn_outputs(
    codex_turn: dict[str, Any], turn: TurnState, limit: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The items that end a turn (what an interrupted answer had said so far, then the
    `result`), and the turn's error when it failed."""
    outputs = [
        out
        for item_id, deltas in turn.partial.items()
        for out in text_items("assistant", "".join(deltas), item_id, limit, partial=True)
    ]
    status = str(codex_turn.get("status"))
    error = codex_turn.get("error") if status == "failed" else None
    if status == "failed" and not isinstance(error, dict):
        error = {"message": "the turn failed"}
    details: dict[str, Any] = {
        "isError": status == "failed",
        "status": status,
        "turnId": codex_turn.get("id") or turn.id,
    }
    if status == "interrupted":
        details["interrupted"] = True
    if error is not None:
        details |= {"error": error.get("message"), "codexErrorInfo": error.get("codexErrorInfo")}
    duration = codex_turn.get("durationMs")
    if not isinstance(duration, int):
        duration = round((time.monotonic() - turn.started) * 1000)
    stats = {"durationMs": duration, "turns": turn.model_calls}
    content = str((error or {}).get("message") or turn.last_answer or status)
    outputs.append(item("result", content, details, usage=turn.usage.wire(), stats=stats))
    return outputs, error


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
