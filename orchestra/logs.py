"""Logging set-up for the command line entry points (one line per record, to stderr)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
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
