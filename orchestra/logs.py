"""Logging set-up for the command line entry points (one line per record, to stderr).

Two formats, one sanitiser (`orchestra/sanitise.py`) under both:

- `json`: one JSON object a line, `{timestamp (ISO-8601 UTC, ms), level, logger,
  message, traceId, nodeId (a gateway) | agentId (an agent), userId, sessionId, taskId,
  agentId, event}`, the context fields from `orchestra/trace.py` (null where unbound),
  then any `extra` fields, and `exc` (the exception's text) or `stack` when there is one;
- `text`: `time LEVEL logger: message [traceId=... taskId=...]` for a terminal.

`auto` (the default of `log_format`) is text when stderr is a terminal, JSON otherwise;
`orchestra up` runs its gateway and agent with text unless told otherwise. In JSON mode
nothing else reaches the stream: warnings, uncaught exceptions and Sanic's own loggers
come through the same handler.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

from orchestra import trace
from orchestra.sanitise import sanitise_record, sanitise_text

FORMATS = ("auto", "json", "text")

# LogRecord attributes that are no `extra` field (computed once).
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "_orchestra_sanitised"}
)


def resolve_format(log_format: str, stream: TextIO | None = None) -> str:
    """`json` or `text` for `log_format` (`auto`: text on a terminal, else JSON)."""
    if log_format in ("json", "text"):
        return log_format
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def _context() -> dict[str, str]:
    """The bound context fields, through the sanitiser too (a REST path is the caller's)."""
    return {name: sanitise_text(value) for name, value in trace.current().items()}


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = min(999, int((created - seconds) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One sanitised JSON object a line. `static`: fields of the process, the same on
    every line (`nodeId` of a gateway, `agentId` of an agent daemon)."""

    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        sanitise_record(record)
        context = _context()
        out: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in self.static.items():
            out[name] = context.get(name) or value
        for name in trace.FIELDS:
            out.setdefault(name, context.get(name))
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = value
        if record.exc_text:  # set by the sanitiser from `exc_info`
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then the context fields that are bound; sanitised."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        sanitise_record(record)
        line = super().format(record)
        context = _context()
        bound = " ".join(f"{n}={context[n]}" for n in trace.FIELDS if context.get(n))
        if not bound:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{bound}]{newline}{rest}"


def configure(
    level: str = "INFO", log_format: str = "text", static: Mapping[str, str] | None = None
) -> None:
    """Log to stderr in `log_format` (`json`, `text` or `auto`), at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = resolve_format(log_format) == "json"
    handler.setFormatter(JsonFormatter(static) if as_json else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
    if as_json:
        _route_uncaught()
    # Engine.IO and Socket.IO log every packet at INFO: too much, and payloads may hold
    # user input. Their servers' warnings are all about what a client sent (a rejected
    # connection, an unknown session, an ack nobody waits for), which anyone can cause
    # as often as they like: the gateway says what matters itself, throttled.
    for noisy in ("engineio.client", "socketio.client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for server in ("engineio.server", "socketio.server"):
        logging.getLogger(server).setLevel(logging.ERROR)
    logging.getLogger("sanic.access").setLevel(logging.WARNING)
    for chatty in ("redis", "aiosqlite", "asyncio", "sqlalchemy"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


class Throttled:
    """At most one line per `interval_s` through `logger`, saying how many were left out:
    for what a peer can cause as often as it likes (malformed frames, refused requests)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last = -interval_s
        self._skipped = 0

    def log(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._skipped += 1
            return
        skipped, self._skipped, self._last = self._skipped, 0, now
        suffix = f" ({skipped} more like it since the last)" if skipped else ""
        self.logger.log(level, message + suffix, *args)


def _route_uncaught() -> None:
    """Uncaught exceptions (main thread, other threads, unraisable ones) as log lines,
    not as bare tracebacks on stderr."""
    uncaught = logging.getLogger("orchestra.uncaught")

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        uncaught.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        uncaught.error(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        )

    def unraisablehook(unraisable: Any) -> None:
        value = unraisable.exc_value
        info = (unraisable.exc_type, value, unraisable.exc_traceback) if value else None
        uncaught.warning(
            "%s: %r", unraisable.err_msg or "exception ignored in", unraisable.object, exc_info=info
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook
