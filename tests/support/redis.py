"""Test helpers for a private Redis server (see `orchestra.redis_server`).

`tests/conftest.py` builds its session-scoped fixture on `redis_server`; tests that
kill and restart Redis (chaos tests) start their own with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from orchestra.redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port", "redis_server"]


@asynccontextmanager
async def redis_server(tmp_dir: Path, **options: Any) -> AsyncIterator[RedisServer]:
    """Start a Redis server with its data in *tmp_dir*/redis, stop it at the end.

    *options* are passed to `RedisServer` (``port``, ``appendonly``, ``appendfsync``,
    ``executable``, ...). The server is stopped even when the body raises, and also
    when the body killed it (stopping a dead server does nothing).
    """
    server = RedisServer(data_dir=Path(tmp_dir) / "redis", **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
