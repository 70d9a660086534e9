"""JSON-RPC 2.0 with `codex app-server`: one message a line on its stdin and stdout.

`CodexRpc` numbers our requests and hands each reply to its callback; what Codex sends
of its own goes to the worker: a request (it has an `id`: an approval, answered with
`send`), a notification, or noise (any other line it prints, for the task's log). Once
the process has gone (`close`), nothing more is written and no reply is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from agent_client.workers.process import ChildProcess, read_lines

__all__ = ["MAX_LINE_BYTES", "CodexRpc", "Reply"]

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024 * 1024  # one JSON-RPC line may carry megabytes

Reply = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]
"""Called with (result, error) when Codex answers one of our requests."""


class CodexRpc:
    """The JSON-RPC connection to one app-server process."""

    def __init__(
        self,
        proc: ChildProcess,
        task_id: str,
        on_request: Callable[[Any, str, dict[str, Any]], None],
        on_notification: Callable[[str, dict[str, Any]], None],
        on_noise: Callable[[str], None],
    ) -> None:
        self._proc = proc
        self._task_id = task_id
        self._on_request = on_request
        self._on_notification = on_notification
        self._on_noise = on_noise
        self._ids = itertools.count(1)
        self._replies: dict[int, Reply] = {}  # our requests awaiting Codex's answer
        self._closed = False

    def send(self, message: dict[str, Any]) -> None:
        """One message (a notification, or an answer to a request of Codex)."""
        if not self._closed:
            self._proc.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())

    def request(self, method: str, params: dict[str, Any], reply: Reply | None = None) -> None:
        """A request; `reply` gets the answer (without one, a refusal is logged)."""
        request_id = next(self._ids)
        self._replies[request_id] = reply or self._log_refusal(method)
        self.send({"id": request_id, "method": method, "params": params})

    def close(self) -> None:
        """The process has gone: write nothing more, forget the replies awaited."""
        self._closed = True
        self._replies.clear()

    async def read(self, stream: asyncio.StreamReader) -> None:
        """Dispatch what Codex prints on `stream` until it ends (or the task is cancelled)."""
        with contextlib.suppress(asyncio.CancelledError):
            async for line, complete in read_lines(stream, MAX_LINE_BYTES):
                text = line.decode("utf-8", errors="replace")
                message = _json_object(text) if complete else None
                if message is None:  # noise: whatever else Codex printed
                    self._on_noise(text)
                    continue
                try:
                    self._dispatch(message)
                except Exception:  # one odd message must not end the worker
                    log.exception("task %s: cannot handle a codex message", self._task_id)

    def _dispatch(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        if isinstance(method, str) and "id" in message:
            self._on_request(message["id"], method, params)
        elif isinstance(method, str):
            self._on_notification(method, params)
        elif isinstance(message.get("id"), int) and message["id"] in self._replies:
            self._replies.pop(message["id"])(message.get("result"), message.get("error"))

    def _log_refusal(self, method: str) -> Reply:
        def reply(_result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
            if error is not None:
                log.info("task %s: codex refused %s: %s", self._task_id, method, error)

        return reply


def _json_object(text: str) -> dict[str, Any] | None:
    """A JSON-RPC message, or None for anything else Codex printed."""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
