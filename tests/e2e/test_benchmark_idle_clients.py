"""The idle-connection benchmark's hand-written Engine.IO 4 / Socket.IO 5 client
(benchmarks/_idle_clients.py) against the bare python-socketio server it is compared
with (benchmarks/_relay.py): it connects `/web`, the server counts it, and closing it
disconnects it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from benchmarks._idle_clients import open_many
from orchestra.redis_server import free_port
from tests.support.processes import http, wait_for


async def counts(url: str, expected: int) -> bool:
    """Whether the relay answers and counts `expected` `/web` sockets."""
    try:
        status, body = await asyncio.to_thread(http, "GET", url + "/health")
    except OSError:
        return False
    return status == 200 and body.get("web") == expected


async def test_idle_clients_connect_to_the_bare_server_and_close(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "relay.log", "ab") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._relay", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_for(lambda: counts(url, 0), what="the relay", timeout_s=60)
        connections, report = await open_many(url, [], 20, in_flight=5)
        assert (report["connected"], report["failed"]) == (20, 0), report["errors"]
        assert len(report["tookMs"]) == 20
        assert all(c.open for c in connections)
        await wait_for(lambda: counts(url, 20), what="20 sockets counted")
        await asyncio.gather(*(c.close() for c in connections))
        await wait_for(lambda: counts(url, 0), what="the sockets gone")
    finally:
        relay.terminate()
        relay.wait(timeout=15)
