"""What Gemini CLI prints (`-o stream-json`), as the gemini worker's output items (§8).

- `init` -> `system` (`details.workerSessionId`, `model`, `approvalMode`);
- assistant `message` deltas -> one `assistant` item per message (`details.messageId`),
  sent once the message ends (a message that is no delta, another event, the turn's end);
- `tool_use` -> `tool`; `tool_result` -> `tool-result` (`isError`, `errorType`);
- `error` -> `system` (`severity`, `isError`);
- `result` -> `result`, with the turn's `usage` (`inputTokens` without the cached ones)
  and `stats`.

The user's own message is an item the worker sends when it sends the prompt. Every item
fits in one event (`items.split_text` and `cut`), and no item or log line
carries the API key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from agent_client.workers.base import WorkerHost
from agent_client.workers.items import cut, split_text, summary
from orchestra.codec import now_iso

__all__ = ["GeminiItems", "TurnOutput"]


@dataclass
class TurnOutput:
    """What one turn has said so far."""

    text: list[str] = field(default_factory=list)  # the assistant message being streamed
    last_text: str = ""
    result_seen: bool = False
    error: str | None = None  # the message of an error result
    session_id: str | None = None  # from the `init` event
    usage: dict[str, int] = field(
        default_factory=lambda: {"inputTokens": 0, "outputTokens": 0, "cacheReadTokens": 0}
    )


class GeminiItems:
    """One worker's items and log lines, to its host: cut to size, the key redacted."""

    def __init__(self, host: WorkerHost, limit: int, secret: str, mode: str) -> None:
        self._host = host
        self._limit = limit
        self._secret = secret
        self._mode = mode
        self._message_ids = itertools.count(1)

    def on_event(self, turn: TurnOutput, event: dict[str, Any]) -> bool:
        """One stream-json event as output items; False for what is not one."""
        kind = event.get("type")
        if kind == "message":
            if event.get("role") == "assistant":
                turn.text.append(str(event.get("content") or ""))
                if not event.get("delta"):
                    self.flush_text(turn)
            return True  # the user's message went out when the adapter sent it
        if kind not in ("init", "tool_use", "tool_result", "error", "result"):
            return False
        self.flush_text(turn)
        if kind == "init":
            session, model = event.get("session_id"), event.get("model")
            if isinstance(session, str) and session:
                turn.session_id = session
            details = {"workerSessionId": session, "model": model, "approvalMode": self._mode}
            self.emit("system", f"session {session} started (model {model})", details)
        elif kind == "tool_use":
            name, args = str(event.get("tool_name") or ""), event.get("parameters") or {}
            shown, truncated = cut(args, self._limit)
            details = {"toolUseId": event.get("tool_id"), "name": name, "input": shown}
            details |= {"truncated": True} if truncated else {}
            self.emit("tool", summary(name, args), details)
        elif kind == "tool_result":
            error, output = _dict(event.get("error")), event.get("output")
            content = output if isinstance(output, str) and output else error.get("message")
            failed = event.get("status") != "success"
            details = {"toolUseId": event.get("tool_id"), "isError": failed}
            if error.get("type"):
                details["errorType"] = error["type"]
            self.emit_cut("tool-result", str(content or ""), details)
        elif kind == "error":
            severity = str(event.get("severity") or "error")
            details = {"severity": severity, "isError": severity == "error"}
            self.emit("system", str(event.get("message") or ""), details)
        else:
            self._on_result(turn, event)
        return True

    def _on_result(self, turn: TurnOutput, event: dict[str, Any]) -> None:
        stats, error = _dict(event.get("stats")), _dict(event.get("error"))
        cached = _int(stats.get("cached"))
        fresh = (
            _int(stats["input"]) if "input" in stats else _int(stats.get("input_tokens")) - cached
        )
        usage = {"inputTokens": max(0, fresh), "outputTokens": _int(stats.get("output_tokens")),
                 "cacheReadTokens": cached}  # fmt: skip
        for key, value in usage.items():
            turn.usage[key] += value
        is_error = event.get("status") != "success"
        turn.result_seen = True
        turn.error = str(error.get("message") or "gemini reported an error") if is_error else None
        details: dict[str, Any] = {"isError": is_error, "status": event.get("status")}
        if error.get("type"):
            details["errorType"] = error["type"]
        run = {"durationMs": _int(stats.get("duration_ms")), "turns": 1,
               "toolCalls": _int(stats.get("tool_calls"))}  # fmt: skip
        self.emit_cut("result", turn.error or turn.last_text, details, usage=usage, stats=run)

    def flush_text(self, turn: TurnOutput) -> None:
        """The assistant message streamed so far, as an item (none when there is none)."""
        text = "".join(turn.text)
        turn.text.clear()
        if text:
            turn.last_text = text
            self.emit_text("assistant", text, {"messageId": f"msg-{next(self._message_ids)}"})

    def emit_text(self, kind: str, text: str, details: dict[str, Any]) -> None:
        """A whole message; one longer than the chunk limit in parts (`part`, `parts`)."""
        for piece, more in split_text(text, self._limit):
            self.emit(kind, piece, details | more)

    def emit_cut(self, kind: str, text: str, details: dict[str, Any], **extra: Any) -> None:
        """A result: cut to the chunk limit, with `truncated` when it was."""
        content, truncated = cut(text, self._limit)
        self.emit(kind, content, details | ({"truncated": True} if truncated else {}), **extra)

    def emit(self, kind: str, content: str, details: dict[str, Any], **extra: Any) -> None:
        item = {"type": kind, "content": content, "details": details, **extra}
        self._host.output("worker:output", self.redact(item) | {"timestamp": now_iso()})

    def log(self, kind: str, text: str) -> None:
        """A `task:stream` line (`log`, `stderr`), in pieces of at most the chunk limit."""
        for piece, _ in split_text(self.redact(text), self._limit):
            self._host.output("task:stream", {"type": kind, "data": piece, "timestamp": now_iso()})

    def redact(self, value: Any) -> Any:
        """The API key never leaves in an item or a log line, whatever a tool printed."""
        if len(self._secret) < 8:  # no real key is shorter; a short one would maul text
            return value
        if isinstance(value, str):
            return value.replace(self._secret, "[redacted]")
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        return [self.redact(v) for v in value] if isinstance(value, list) else value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
