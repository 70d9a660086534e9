"""Logging set-up for the command line entry points (one line per record, to stderr)."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Engine.IO and Socket.IO log every packet at INFO: too much, and payloads may hold
    # user input.
    for noisy in ("engineio.server", "socketio.server", "engineio.client", "socketio.client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("sanic.access").setLevel(logging.WARNING)
    for chatty in ("redis", "aiosqlite", "asyncio", "sqlalchemy"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
