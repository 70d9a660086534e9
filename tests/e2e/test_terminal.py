"""`orchestra run` and `orchestra watch`, as a user types them in a terminal."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.e2e.test_walking_skeleton import WORKER
from tests.support.processes import wait_for
from tests.support.running import PASSWORD, Running

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


def _env(running: Running) -> dict[str, str]:
    return running.deployment.env | {
        "ORCHESTRA_SERVER_URL": running.gateway.url,
        "ORCHESTRA_USER": "alice",
        "ORCHESTRA_PASSWORD": PASSWORD,
    }


async def _orchestra(running: Running, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestra", *args, env=_env(running),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_prints_the_output_types_stdin_and_exits_with_the_workers_code(
    running: Running, tmp_path: Path
) -> None:
    code, out, err = await _orchestra(
        running, "run", "--agent", running.agent_id, "--cwd", str(tmp_path),
        "--", sys.executable, str(WORKER), stdin=b"first\nsecond\n",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        "worker: started",
        "worker: waiting for 2 lines",
        "echo 1: first",
        "echo 2: second",
        "worker: bye",
    ]
    assert "worker: done" in err.splitlines()

    code, _, err = await _orchestra(
        running, "run", "--agent", running.agent_id, "--", "sh", "-c", "echo oops >&2; exit 3"
    )
    assert code == 3
    assert "oops" in err.splitlines()


async def test_watch_follows_a_session_from_its_start(running: Running, tmp_path: Path) -> None:
    code, _, err = await _orchestra(
        running, "run", "--agent", running.agent_id, "--", "sh", "-c", "echo one; echo two"
    )
    assert code == 0, err
    found = re.search(r"in session (\S+),", err)
    assert found, err
    log = tmp_path / "watch.out"
    with log.open("wb") as sink:
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestra", "watch", found.group(1), env=_env(running),
            stdout=sink, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        await wait_for(lambda: "[orchestra] completed" in log.read_text(), what="the watch")
        lines = log.read_text().splitlines()
        assert lines[lines.index("one") + 1] == "two"
    finally:
        watcher.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watcher.wait(), 30) == 130


async def test_ctrl_c_stops_the_worker_on_its_agent(running: Running, tmp_path: Path) -> None:
    log = tmp_path / "run.out"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestra", "run", "--agent", running.agent_id, "--",
            sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)",
            env=_env(running), stdin=asyncio.subprocess.DEVNULL, stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        await wait_for(lambda: "ready" in log.read_text().splitlines(), what="the worker")
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 60) == 130
        assert "[orchestra] cancelled: the worker was stopped on request" in log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
