"""`orchestra run` and `orchestra watch`: a worker's session in a terminal, over
`orchestra.client`, so a dropped connection or a gateway restart costs nothing.

`run` starts a worker, prints its output as it comes (its stdout to ours, its stderr to
ours), types each line of our stdin into it, stops it on Ctrl-C (a second Ctrl-C kills
it) and exits with its exit code. `watch` prints a session's events from its start, then
live, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from orchestra.client import Client
from orchestra.errors import OrchestraError

__all__ = ["run_worker", "watch_session"]

# Exit codes of `orchestra run` where the worker gave none.
EXIT_FAILED = 1
EXIT_STOPPED = 130


async def run_worker(
    urls: Sequence[str],
    username: str,
    password: str,
    command: Sequence[str],
    *,
    agent_id: str | None = None,
    session_id: str | None = None,
    working_directory: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run `command` on an agent; the worker's exit code (130 when stopped)."""
    async with await Client.login(urls, username, password) as client:
        started = await client.start(
            tool="custom",
            command=list(command),
            agent_id=agent_id,
            session_id=session_id,
            working_directory=working_directory,
        )
        task_id = started["taskId"]
        where = f"on agent {started['agentId']}" if started.get("agentId") else "queued"
        print(
            f"[orchestra] task {task_id} in session {started['sessionId']}, {where}",
            file=err,
            flush=True,
        )
        await client.join(started["sessionId"])
        stops = _StopOnInterrupt(client, task_id, err)
        typing = asyncio.create_task(_type_stdin(client, task_id))
        try:
            async for event, data in client.events():
                if data.get("taskId") != task_id:
                    continue
                _print_event(event, data, out, err, quiet_running=True)
                if event == "task:result":
                    return _exit_code(data)
        finally:
            stops.remove()
            typing.cancel()
    return EXIT_FAILED


async def watch_session(
    urls: Sequence[str], username: str, password: str, session_id: str, *, out: TextIO = sys.stdout
) -> int:
    """Print a session's events, from its start and then live, until Ctrl-C (130)."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    async with await Client.login(urls, username, password) as client:
        await client.join(session_id)

        async def follow() -> None:
            async for event, data in client.events():
                if data.get("sessionId") == session_id:
                    _print_event(event, data, out, out, quiet_running=False)

        following = asyncio.create_task(follow())
        await interrupted.wait()
        following.cancel()
    return EXIT_STOPPED


def _print_event(
    event: str, data: dict[str, Any], out: TextIO, err: TextIO, *, quiet_running: bool
) -> None:
    if event == "task:stream":
        print(data.get("data", ""), file=err if data.get("type") == "stderr" else out, flush=True)
    elif event == "worker:output":
        print(data.get("content", ""), file=out, flush=True)
    elif event == "worker:status":
        if quiet_running and data.get("status") in ("starting", "running"):
            return
        message = f": {data['message']}" if data.get("message") else ""
        print(f"[orchestra] {data.get('status')}{message}", file=err, flush=True)
    elif event == "worker:permission":
        print(f"[orchestra] the worker asks to use {data.get('tool')}", file=err, flush=True)
    elif event == "session:resync":
        print("[orchestra] catching up from the session's history", file=err, flush=True)


def _exit_code(result: dict[str, Any]) -> int:
    outcome = result.get("result")
    code = outcome.get("exitCode") if isinstance(outcome, dict) else None
    if isinstance(code, int) and code >= 0:
        return code
    if result.get("success"):
        return 0
    return EXIT_STOPPED if isinstance(code, int) else EXIT_FAILED


async def _type_stdin(client: Client, task_id: str) -> None:
    """Each line of our stdin goes to the worker as input, in order."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:  # a thread: stdin has no portable non-blocking read
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="orchestra-stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        try:
            await client.send_input(task_id, line)
        except OrchestraError as exc:
            print(f"[orchestra] input not delivered: {exc}", file=sys.stderr, flush=True)
            return


class _StopOnInterrupt:
    """Ctrl-C stops the worker (SIGINT to it); a second Ctrl-C kills it."""

    def __init__(self, client: Client, task_id: str, err: TextIO) -> None:
        self._client, self._task_id, self._err = client, task_id, err
        self._presses = 0
        self._installed = False
        self._pending: set[asyncio.Task[None]] = set()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._pressed)
            self._installed = True

    def _pressed(self) -> None:
        self._presses += 1
        mode = "interrupt" if self._presses == 1 else "kill"
        print(f"[orchestra] stopping the worker ({mode})", file=self._err, flush=True)
        task = asyncio.create_task(self._stop(mode))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _stop(self, mode: str) -> None:
        try:
            await self._client.stop(self._task_id, mode)
        except OrchestraError as exc:
            print(f"[orchestra] could not stop the worker: {exc}", file=self._err, flush=True)

    def remove(self) -> None:
        if self._installed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
