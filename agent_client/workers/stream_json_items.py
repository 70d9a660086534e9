"""What the stream-json CLIs (Claude Code, Qwen Code) print, as typed output items (§8).

Pure functions from one parsed stdout line to the `worker:output` items it stands for:

- `system` init (`init` for Claude, `session_start` for Qwen) -> `system`, with
  `details.workerSessionId`, `model`, `tools`;
- `assistant` content blocks -> `assistant` (text), `thinking`, `tool` (tool_use);
- `user` content -> `tool-result` (tool_result blocks), or `user` (text the tool itself
  put in the conversation, such as "[Request interrupted by user]");
- `result` -> `result`, with the turn's `usage` (tokens and cost), `stats` and
  `details.isError`.

Every item fits in one event: text longer than the chunk limit is split into parts of one
message (`details.part`, `details.parts`), a tool's result or input is cut to it
(`details.truncated`), as PROTOCOL.md §8 says (`workers.items`).
"""

from __future__ import annotations

import json
from typing import Any

from agent_client.workers.items import cut, split_text, summary
from orchestra.codec import now_iso

__all__ = [
    "Item",
    "items_of",
    "message_usage",
    "result_item",
    "result_text",
    "result_usage",
]

Item = dict[str, Any]

_INIT_SUBTYPES = frozenset({"init", "session_start"})


def items_of(line: dict[str, Any], limit: int) -> list[Item]:
    """The output items one stdout line of the CLI stands for (none for a line that only
    steers the protocol, or says nothing a watcher needs)."""
    kind = line.get("type")
    if kind == "system":
        return [_system(line)] if line.get("subtype") in _INIT_SUBTYPES else []
    if kind == "assistant":
        return _assistant(line, limit)
    if kind == "user":
        return _user(line, limit)
    if kind == "result":
        return [result_item(line, limit)]
    return []


def _item(kind: str, content: Any, details: dict[str, Any] | None = None, **extra: Any) -> Item:
    item: Item = {"type": kind, "content": content, "timestamp": now_iso()}
    if details:
        item["details"] = details
    item.update(extra)
    return item


def _system(line: dict[str, Any]) -> Item:
    session = line.get("session_id")
    model = line.get("model")
    details: dict[str, Any] = {"workerSessionId": session, "model": model}
    tools = line.get("tools")
    if isinstance(tools, list):
        details["tools"] = [t for t in tools if isinstance(t, str)]
    if line.get("permissionMode") or line.get("permission_mode"):
        details["permissionMode"] = line.get("permissionMode") or line.get("permission_mode")
    return _item("system", f"session {session} started (model {model})", details)


def _assistant(line: dict[str, Any], limit: int) -> list[Item]:
    message = line.get("message") if isinstance(line.get("message"), dict) else {}
    assert isinstance(message, dict)
    message_id = message.get("id")
    base: dict[str, Any] = {"messageId": message_id} if message_id else {}
    if line.get("aborted"):
        base["aborted"] = True
    if line.get("error"):
        base["error"] = line["error"]
    if line.get("parent_tool_use_id"):
        base["parentToolUseId"] = line["parent_tool_use_id"]
    items: list[Item] = []
    for block in _blocks(message.get("content")):
        kind = block.get("type")
        if kind == "text":
            parts = split_text(str(block.get("text", "")), limit)
            items += [_item("assistant", part, base | d) for part, d in parts]
        elif kind == "thinking":
            parts = split_text(str(block.get("thinking", "")), limit)
            items += [_item("thinking", part, base | d) for part, d in parts]
        elif kind == "tool_use":
            name = str(block.get("name", ""))
            tool_input, truncated = cut(block.get("input"), limit)
            details = base | {"toolUseId": block.get("id"), "name": name, "input": tool_input}
            if truncated:
                details["truncated"] = True
            items.append(_item("tool", summary(name, block.get("input")), details))
    return items


def _user(line: dict[str, Any], limit: int) -> list[Item]:
    message = line.get("message") if isinstance(line.get("message"), dict) else {}
    assert isinstance(message, dict)
    items: list[Item] = []
    for block in _blocks(message.get("content")):
        kind = block.get("type")
        if kind == "tool_result":
            content, truncated = cut(_text_of(block.get("content")), limit)
            details: dict[str, Any] = {
                "toolUseId": block.get("tool_use_id"),
                "isError": bool(block.get("is_error")),
            }
            if truncated:
                details["truncated"] = True
            items.append(_item("tool-result", content, details))
        elif kind == "text":
            parts = split_text(str(block.get("text", "")), limit)
            items += [_item("user", part, {"origin": "tool"} | d) for part, d in parts]
    return items


def result_item(line: dict[str, Any], limit: int, interrupted: bool = False) -> Item:
    """A turn's end: usage, stats and whether it failed."""
    content, _ = cut(result_text(line), limit)
    is_error = bool(line.get("is_error"))
    details: dict[str, Any] = {
        "isError": is_error,
        "subtype": line.get("subtype"),
        "workerSessionId": line.get("session_id"),
    }
    if line.get("terminal_reason"):
        details["terminalReason"] = line["terminal_reason"]
    if interrupted:
        details["interrupted"] = True
    stats: dict[str, Any] = {}
    for wire, name in (("durationMs", "duration_ms"), ("turns", "num_turns")):
        if isinstance(line.get(name), int | float):
            stats[wire] = line[name]
    if isinstance(line.get("total_cost_usd"), int | float):
        stats["costUsd"] = line["total_cost_usd"]
    return _item("result", content, details, usage=result_usage(line), stats=stats)


def result_text(line: dict[str, Any]) -> str:
    """What a `result` line says: its answer, or its error (Claude's `errors`, Qwen's
    `error.message`)."""
    text = line.get("result")
    if isinstance(text, str) and text:
        return text
    error = line.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    errors = line.get("errors")
    return "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""


def message_usage(line: dict[str, Any]) -> dict[str, Any]:
    """The usage of one `assistant` line's model call (Qwen Code's results carry only the
    session's running total, so a turn's usage is the sum of its calls)."""
    message = line.get("message") if isinstance(line.get("message"), dict) else {}
    assert isinstance(message, dict)
    return result_usage({"usage": message.get("usage")})


def result_usage(line: dict[str, Any]) -> dict[str, Any]:
    """The turn's TokenUsage: from `model_usage_since_last_result` (the turn's own, cost
    included) where the CLI gives it, else from `usage`."""
    per_model = line.get("model_usage_since_last_result")
    if isinstance(per_model, dict) and per_model:
        total: dict[str, float] = {}
        names = {
            "inputTokens": "inputTokens",
            "outputTokens": "outputTokens",
            "cacheReadInputTokens": "cacheReadTokens",
            "cacheCreationInputTokens": "cacheWriteTokens",
            "costUSD": "costUsd",
        }
        for figures in per_model.values():
            if not isinstance(figures, dict):
                continue
            for theirs, ours in names.items():
                value = figures.get(theirs)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[ours] = total.get(ours, 0) + value
        if "costUsd" in total:
            total["costUsd"] = round(total["costUsd"], 8)
        return total
    usage = line.get("usage") if isinstance(line.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    out: dict[str, Any] = {
        "inputTokens": int(usage.get("input_tokens") or 0),
        "outputTokens": int(usage.get("output_tokens") or 0),
    }
    if usage.get("cache_read_input_tokens") is not None:
        out["cacheReadTokens"] = int(usage["cache_read_input_tokens"])
    if usage.get("cache_creation_input_tokens") is not None:
        out["cacheWriteTokens"] = int(usage["cache_creation_input_tokens"])
    return out


def _text_of(content: Any) -> str:
    """A tool result's content as text (a string, or blocks of which the text ones count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                texts.append(f"[{block.get('type', 'content')}]")
        return "\n".join(texts)
    return "" if content is None else json.dumps(content, default=str)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []
