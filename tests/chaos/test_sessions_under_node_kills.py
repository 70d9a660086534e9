"""Ten agents stream output to fifty watchers through three gateway nodes while a random
node is SIGKILLed every few seconds (issue 4, DESIGN.md §4): every watcher gets every line
once and in order, every input typed reaches its worker once, and every task ends.

`run_sessions_under_kills` is the whole scenario; other chaos tests run it with a disruption
of their own beside the node kills (test_sessions_under_master_kill.py kills Redis masters)."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestra.client import Client
from orchestra.codec import parse_event_id
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import login

AGENTS = 10
LINE_INTERVAL_S = 0.1  # each worker prints 10 lines a second until the kills are done
WATCHERS_PER_SESSION = 5
INPUT_EVERY_S = 1.0
KILL_EVERY_S = (3.0, 5.0)
MIN_KILLS = 3
TERMINAL = {"completed", "error", "cancelled", "lost"}

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


def chatty_worker(interval_s: float) -> list[str]:
    """Once it reads its first input line, prints `line 1`, `line 2`... at a steady rate
    until it reads `enough`, then `printed N`; answers each input line X with `got X`, and
    exits once it reads `quit`. (So it prints for as long as the test's kills take, however
    slow the setup and the restarts are on a busy machine.)"""
    program = (
        "import os, sys, threading, time\n"
        "lock = threading.Lock()\n"
        "started = threading.Event()\n"
        "enough = threading.Event()\n"
        "def say(text):\n"
        "    with lock:\n"
        "        sys.stdout.write(text + '\\n')\n"
        "        sys.stdout.flush()\n"
        "def answer():\n"
        "    for line in sys.stdin:\n"
        "        line = line.rstrip('\\n')\n"
        "        if line == 'quit':\n"
        "            say('bye')\n"
        "            os._exit(0)\n"
        "        say('got ' + line)\n"
        "        started.set()\n"
        "        if line == 'enough':\n"
        "            enough.set()\n"
        "threading.Thread(target=answer, daemon=True).start()\n"
        "started.wait()\n"
        "n = 0\n"
        "while not enough.is_set():\n"
        "    n += 1\n"
        "    say(f'line {n}')\n"
        f"    time.sleep({interval_s})\n"
        "say(f'printed {n}')\n"
        "threading.Event().wait()\n"
    )
    return [sys.executable, "-c", program]


@dataclass
class Watcher:
    client: Client
    session_id: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for event, data in self.client.events():
            if data.get("sessionId") == self.session_id:
                self.events.append((event, data))

    def lines(self) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == "task:stream"]

    def printed(self) -> int | None:
        """How many lines the worker printed, once it has said so."""
        for d in self.lines():
            if str(d.get("data", "")).startswith("printed "):
                return int(d["data"].removeprefix("printed "))
        return None

    def finished(self) -> bool:
        return any(e == "task:result" for e, _ in self.events)


@dataclass
class SessionsRun:
    """What a disruption running beside the node kills may look at: the gateways by name
    (replaced in place as they restart), each task's session, the gateways' urls."""

    deployment: Deployment
    nodes: dict[str, Gateway]
    tasks: dict[str, str]  # task -> session
    urls: list[str]


Disruption = Callable[[SessionsRun], Awaitable[None]]


async def test_every_watcher_gets_every_line_once_while_nodes_are_killed(
    deployment: Deployment, tmp_path: Path
) -> None:
    await run_sessions_under_kills(deployment, tmp_path)


async def run_sessions_under_kills(
    deployment: Deployment, tmp_path: Path, extra_disruption: Disruption | None = None
) -> SessionsRun:
    """The scenario and its checks; `extra_disruption` runs beside the node kills, and the
    workers print until both are done. What it ran on, returned for more checks."""
    deployment.extra_env["ORCHESTRA_LEASE_TTL_S"] = "3"
    await deployment.create_user("alice", PASSWORD)
    nodes: dict[str, Gateway] = {}
    for name in ("gw1", "gw2", "gw3"):
        nodes[name] = await deployment.start_gateway(name)
    urls = [gateway.url for gateway in nodes.values()]  # ports stay across restarts
    agents = [await deployment.create_agent(f"box{i}", owner="alice") for i in range(AGENTS)]
    for agent_id, secret_file in agents:
        deployment.start_agent(agent_id, secret_file, ",".join(urls))
    token = await login(urls[0], "alice", PASSWORD)
    rng = random.Random(4)

    async def connected(shuffled: list[str]) -> Client:
        client = Client(shuffled, token)
        await client.connect()
        return client

    driver = await connected(urls)
    clients = [driver]
    watchers: list[Watcher] = []
    try:

        async def all_online() -> bool:
            listed = (await driver.request("agents:list", {}))["agents"]
            return sum(a["status"] == "online" for a in listed) == AGENTS

        await wait_for(all_online, what=f"{AGENTS} agents online")
        tasks: dict[str, str] = {}  # task -> session
        for agent_id, _ in agents:
            started = await driver.start(
                tool="custom", agent_id=agent_id, command=chatty_worker(LINE_INTERVAL_S),
                working_directory=str(tmp_path),
            )  # fmt: skip
            tasks[started["taskId"]] = started["sessionId"]
        run = SessionsRun(deployment, nodes, tasks, urls)
        for session_id in tasks.values():
            for _ in range(WATCHERS_PER_SESSION):
                client = await connected(rng.sample(urls, len(urls)))
                clients.append(client)
                watcher = Watcher(client, session_id)
                watcher.reader = asyncio.create_task(watcher.read())
                await client.join(session_id)
                watchers.append(watcher)

        def printed_all() -> bool:
            return all(w.printed() is not None for w in watchers)

        sent: dict[str, list[str]] = {task_id: [] for task_id in tasks}
        for task_id in tasks:  # every worker starts printing now
            await driver.send_input(task_id, "start")
            sent[task_id].append("start")

        async def type_inputs(task_id: str) -> None:
            # One after another, as a person types: each is acknowledged before the next.
            k = 0
            while not printed_all():
                k += 1
                text = f"in-{task_id[:8]}-{k}"
                await driver.send_input(task_id, text)
                sent[task_id].append(text)
                await asyncio.sleep(INPUT_EVERY_S)

        async def node_kills() -> None:
            for _ in range(MIN_KILLS):
                await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
                name = rng.choice(sorted(nodes))
                victim = nodes[name]
                victim.kill()  # SIGKILL: no goodbye to anyone
                nodes[name] = await deployment.start_gateway(name, port=victim.port)

        async def killer() -> None:
            extra = [] if extra_disruption is None else [extra_disruption(run)]
            await asyncio.gather(node_kills(), *extra)
            # A little more output after the last restart, then the workers stop printing.
            await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
            for task_id in tasks:
                await driver.send_input(task_id, "enough")
                sent[task_id].append("enough")

        try:
            await asyncio.wait_for(
                asyncio.gather(killer(), *(type_inputs(t) for t in tasks)), timeout=240
            )
        except TimeoutError as exc:
            exc.add_note("watchers still waiting for `printed`:\n" + _waiting(watchers))
            raise
        for task_id in tasks:
            await driver.send_input(task_id, "quit")
        await wait_for(
            lambda: all(w.finished() for w in watchers), what="every watcher to see its result",
            timeout_s=120, interval_s=0.2,
        )  # fmt: skip

        for task_id, session_id in tasks.items():
            status, body = await asyncio.to_thread(
                http, "GET", f"{urls[0]}/api/tasks/{task_id}", None, token
            )
            assert status == 200, body
            assert body["task"]["status"] in TERMINAL, body
            assert body["task"]["status"] == "completed", body
            session_watchers = [w for w in watchers if w.session_id == session_id]
            reference = [(d["seq"], d["data"]) for d in session_watchers[0].lines()]
            for watcher in session_watchers:
                _check_watcher(watcher, task_id, sent[task_id])
                # Every watcher of a session saw the very same output.
                assert [(d["seq"], d["data"]) for d in watcher.lines()] == reference
    finally:
        for watcher in watchers:
            if watcher.reader is not None:
                watcher.reader.cancel()
        for client in clients:
            await client.close()
    return run


def _waiting(watchers: list[Watcher]) -> str:
    """Who has not seen its worker's `printed` yet: its session, gateway, state, last line."""
    return "\n".join(
        f"session {w.session_id[:8]} on {w.client.url} ({w.client.state}): "
        f"{len(w.lines())} lines, the last {(w.lines() or [{}])[-1].get('seq')}"
        for w in watchers
        if w.printed() is None
    )


def _check_watcher(watcher: Watcher, task_id: str, typed: list[str]) -> None:
    lines = [d for d in watcher.lines() if d["taskId"] == task_id]
    seqs = [d["seq"] for d in lines]
    assert seqs == list(range(1, len(seqs) + 1)), f"seqs not 1..n once each: {seqs}"
    event_ids = [parse_event_id(d["eventId"]) for _, d in watcher.events if "eventId" in d]
    assert all(a < b for a, b in itertools.pairwise(event_ids)), "eventIds not increasing"
    texts = [d["data"] for d in lines]
    printed = watcher.printed()
    assert printed is not None and printed > 0
    assert [t for t in texts if t.startswith("line ")] == [
        f"line {n}" for n in range(1, printed + 1)
    ]
    answers = Counter(t.removeprefix("got ") for t in texts if t.startswith("got "))
    assert set(answers) == set(typed), f"inputs lost or invented: {set(typed) ^ set(answers)}"
    twice = {text: n for text, n in answers.items() if n != 1}
    assert not twice, f"inputs that reached the worker more than once: {twice}"
    assert texts[-1] == "bye"
