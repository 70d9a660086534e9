"""The custom worker: lines in order with gap-free seqs, stdin and its end, exit codes,
interrupt and kill, a pseudo-terminal, the environment, a timeout, resource usage."""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_client.spool import Spool
from agent_client.workers import WorkerSpec, WorkerStartError
from agent_client.workers.base import Refused
from agent_client.workers.custom import CustomWorker

from .conftest import eventually, group_gone

ECHO = textwrap.dedent(
    """
    import sys
    print("hello", flush=True)
    print("warning", file=sys.stderr, flush=True)
    for line in sys.stdin:
        line = line.rstrip("\\n")
        if line == "quit":
            break
        print("echo:" + line, flush=True)
    print("bye", flush=True)
    sys.exit(3)
    """
)
SLEEPER = "import time; [time.sleep(0.05) for _ in iter(int, 1)]"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "print('ready', flush=True); [time.sleep(0.05) for _ in iter(int, 1)]"
)


_OPEN: list[Spool] = []


@pytest.fixture(autouse=True)
def _close_spools() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class SpoolHost:
    """The worker's host as the task manager gives it: output goes to a spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def output(self, event: str, fields: dict[str, Any]) -> None:
        self.spool.append(event, fields)

    def control(
        self, event: str, fields: dict[str, Any], on_refused: Refused | None = None
    ) -> None:
        raise AssertionError(f"the custom worker sent a control event: {event}")


def _worker(
    tmp_path: Path, command: Any, parameters: dict[str, Any] | None = None, **spec: Any
) -> tuple[CustomWorker, Spool]:
    spool = Spool.create(tmp_path / "spool", "t1")
    _OPEN.append(spool)
    values: dict[str, Any] = {
        "task_id": "t1",
        "tool": "custom",
        "parameters": {"command": command, **(parameters or {})},
        "working_directory": tmp_path,
        "stop_grace_s": 0.3,
    }
    values.update(spec)
    return CustomWorker(WorkerSpec(**values), SpoolHost(spool)), spool


def _lines(spool: Spool, kind: str) -> list[str]:
    return [i.payload["data"] for i in spool.pending() if i.payload["type"] == kind]


async def test_output_in_order_with_gap_free_seqs_stdin_and_exit_code(tmp_path: Path) -> None:
    worker, spool = _worker(tmp_path, [sys.executable, "-c", ECHO])
    await worker.start()
    await eventually(lambda: "hello" in _lines(spool, "stdout"), what="first line")
    await worker.send_input("one")
    await worker.send_input("two\n")
    await eventually(lambda: "echo:two" in _lines(spool, "stdout"), what="echoed input")
    await worker.send_input("quit")
    ended = await worker.wait()

    assert ended.exit_code == 3 and not ended.stopped
    assert _lines(spool, "stdout") == ["hello", "echo:one", "echo:two", "bye"]
    assert _lines(spool, "stderr") == ["warning"]
    items = spool.pending()
    assert [i.seq for i in items] == list(range(1, len(items) + 1))
    assert all(i.event == "task:stream" and i.payload["timestamp"] for i in items)


async def test_string_command_runs_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("found\n")
    worker, spool = _worker(tmp_path, "cat marker.txt; printf 'no newline'; exit 0")
    await worker.start()
    ended = await worker.wait()
    assert ended.exit_code == 0
    assert _lines(spool, "stdout") == ["found", "no newline"]


async def test_worker_environment_hides_orchestra_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_AGENT_SECRET", "do-not-leak")
    worker, spool = _worker(tmp_path, 'echo "[$ORCHESTRA_AGENT_SECRET][$ORCHESTRA_TASK_ID]"')
    await worker.start()
    await worker.wait()
    assert _lines(spool, "stdout") == ["[][t1]"]


async def test_long_lines_are_split_without_breaking_characters(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('é' * 3000 + '\\n')"
    worker, spool = _worker(tmp_path, [sys.executable, "-c", script], max_chunk_bytes=1001)
    await worker.start()
    await worker.wait()
    pieces = _lines(spool, "stdout")
    assert len(pieces) > 1 and "".join(pieces) == "é" * 3000
    assert all(len(p.encode()) <= 1001 for p in pieces)


async def test_interrupt_stops_a_sleeping_process_and_its_group(tmp_path: Path) -> None:
    command = f"{sys.executable} -c '{SLEEPER}' & {sys.executable} -c '{SLEEPER}'; wait"
    worker, _ = _worker(tmp_path, command)
    await worker.start()
    assert worker.pid is not None
    await worker.interrupt()
    ended = await worker.wait()
    assert ended.stopped
    assert ended.exit_code != 0
    await eventually(lambda: group_gone(worker.pid or 0), deadline_s=5, what="process group gone")


async def test_interrupt_escalates_when_sigint_is_ignored(tmp_path: Path) -> None:
    worker, spool = _worker(tmp_path, [sys.executable, "-c", STUBBORN])
    await worker.start()
    await eventually(lambda: "ready" in _lines(spool, "stdout"), what="handler installed")
    await worker.interrupt()
    ended = await worker.wait()
    assert ended.stopped and ended.exit_code == -signal.SIGTERM
    assert group_gone(worker.pid or 0)


async def test_kill_stops_at_once(tmp_path: Path) -> None:
    worker, spool = _worker(tmp_path, [sys.executable, "-c", STUBBORN], stop_grace_s=60)
    await worker.start()
    await eventually(lambda: "ready" in _lines(spool, "stdout"), what="handler installed")
    await worker.stop("kill")
    ended = await worker.wait()
    assert ended.stopped and ended.exit_code == -signal.SIGKILL
    assert group_gone(worker.pid or 0)


async def test_input_to_a_process_that_never_reads_does_not_block(tmp_path: Path) -> None:
    worker, _ = _worker(tmp_path, [sys.executable, "-c", SLEEPER])
    await worker.start()
    for _ in range(200):  # far more than a pipe holds
        await worker.send_input("x" * 4096)
    await worker.stop("kill")
    assert (await worker.wait()).stopped


async def test_a_missing_executable_cannot_start(tmp_path: Path) -> None:
    worker, _ = _worker(tmp_path, ["/nonexistent/program"])
    with pytest.raises(WorkerStartError):
        await worker.start()


def test_check_rejects_a_missing_command() -> None:
    assert CustomWorker.check({}) is not None
    assert CustomWorker.check({"command": []}) is not None
    assert CustomWorker.check({"command": [1, 2]}) is not None
    assert CustomWorker.check({"command": "echo hi"}) is None
    assert CustomWorker.check({"command": ["echo", "hi"]}) is None


async def test_eof_closes_stdin_and_the_result_carries_resource_usage(tmp_path: Path) -> None:
    program = "import sys; data = sys.stdin.read(); x = bytearray(60 * 2**20); print(len(data))"
    worker, spool = _worker(tmp_path, [sys.executable, "-c", program])
    await worker.start()
    await worker.send_input("abc\n")
    await worker.send_input("de", eof=True)  # the last piece, without a newline
    ended = await worker.wait()
    assert ended.exit_code == 0
    assert _lines(spool, "stdout") == ["6"]
    usage = ended.resource_usage
    assert usage is not None
    assert usage["maxRssBytes"] > 60 * 2**20  # the 60 MiB the program held, at least
    assert usage["cpuTimeS"] > 0
    assert usage["cpuTimeS"] == pytest.approx(usage["cpuUserS"] + usage["cpuSystemS"], abs=0.002)


async def test_a_pseudo_terminal_when_asked(tmp_path: Path) -> None:
    program = (
        "import os, sys; print('tty' if os.isatty(0) and os.isatty(1) else 'pipe'); "
        "print('\\x1b[31mred\\x1b[0m'); print('typed:', input())"
    )
    worker, spool = _worker(tmp_path, [sys.executable, "-c", program], {"pty": True})
    await worker.start()
    await eventually(lambda: "tty" in _lines(spool, "stdout"), what="the first line")
    await worker.send_input("hello")
    ended = await worker.wait()
    assert ended.exit_code == 0
    lines = _lines(spool, "stdout")
    assert "\x1b[31mred\x1b[0m" in lines  # colours come through as the program wrote them
    assert "typed: hello" in lines
    assert _lines(spool, "stderr") == []  # a terminal has one output


async def test_the_task_environment_reaches_the_command(tmp_path: Path) -> None:
    parameters = {"env": {"GREETING": "hi there", "ORCHESTRA_AGENT_SECRET": "no"}}
    worker, spool = _worker(tmp_path, 'echo "$GREETING|$ORCHESTRA_AGENT_SECRET"', parameters)
    await worker.start()
    await worker.wait()
    assert _lines(spool, "stdout") == ["hi there|"]


async def test_a_command_over_its_timeout_ends_as_an_error(tmp_path: Path) -> None:
    worker, _ = _worker(tmp_path, [sys.executable, "-c", SLEEPER], {"timeoutS": 0.5})
    await worker.start()
    ended = await worker.wait()
    assert ended.error is not None and "timed out after 0.5 s" in ended.error
    assert ended.exit_code == -signal.SIGTERM
    assert not ended.stopped  # not a stop on request: the task ends error, not cancelled


def test_check_rejects_a_bad_timeout() -> None:
    assert CustomWorker.check({"command": "true", "timeoutS": -1}) is not None
    assert CustomWorker.check({"command": "true", "timeoutS": "soon"}) is not None
    assert CustomWorker.check({"command": "true", "timeoutS": 2.5}) is None
