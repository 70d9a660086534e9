"""Facts about the real Codex CLI's `codex app-server` (0.171.0), with only the model faked.

Each test starts the installed `codex` (`tests.support.tools.tool_path`) with HOME in a
temporary folder, its model provider pointed at the fake OpenAI Responses API and every
other connection sent to a proxy that refuses it (the test fails if Codex tried one). They
are skipped when the CLI is not installed. What they establish, and the worker relies on:

- JSON-RPC 2.0 lines on stdio; ids of our requests and of Codex's requests are separate
  (Codex numbers its own from 0). `initialize {clientInfo, capabilities}` answers
  `{userAgent, codexHome, platformFamily, platformOs}`; `thread/start {cwd, approvalPolicy,
  sandbox, model}` answers `{thread: {id, ...}, model, modelProvider, approvalPolicy,
  sandbox: {type}}` and is followed by `thread/started`; `turn/start {threadId, input}`
  answers `{turn: {id, status: inProgress}}`, then come `turn/started`, `item/started` /
  `item/completed` (userMessage, agentMessage with `item/agentMessage/delta`s,
  commandExecution, ...), `thread/tokenUsage/updated {turnId, tokenUsage: {total, last}}`
  once per model call, and `turn/completed {turn: {status, error, durationMs}}`.
- Endpoint and key: only a model provider of our own works (`-c model_provider=...` and
  `-c model_providers.<id>={base_url, env_key, wire_api = "responses"}`): the built-in
  `openai` provider ignores `OPENAI_API_KEY` (no Authorization header) and tries a
  WebSocket first; `OPENAI_BASE_URL` in the environment is ignored.
- Approvals under `approvalPolicy: "untrusted"`: every command (even `ls`) is asked with
  `item/commandExecution/requestApproval {itemId, command, cwd, commandActions,
  proposedExecpolicyAmendment, availableDecisions}`; `accept` runs it, `decline` makes it
  `declined` and the model is told "rejected by user", `acceptForSession` is not asked again
  for the same command, `cancel` declines it and ends the turn `interrupted`. After an
  answer comes `serverRequest/resolved {requestId}`.
- `turn/interrupt {threadId, turnId}` answers `{}` and ends the turn `interrupted` (a
  partial agent message never gets its `item/completed`); an approval pending then is
  withdrawn with `serverRequest/resolved` after `turn/completed`, and a late answer to it
  is ignored; a second `turn/interrupt` answers error -32600 "no active turn to interrupt".
  The next request to the model carries a `<turn_aborted>` user message.
- A `turn/start` during a turn adds its input to the running turn (same turn id, no
  `turn/started` of its own): Codex drops the model's stream at once and asks again with the
  new input, and only one `turn/completed` comes for both.
- Without the key: each turn fails (`error {willRetry: false}`, `turn/completed` failed,
  "Missing environment variable: `OPENAI_API_KEY`.", `codexErrorInfo: "other"`) and the
  process stays up. A wrong key (401) is retried 5 times, then fails with
  `codexErrorInfo: {httpConnectionFailed: {httpStatusCode: 401}}`.
- `thread/resume {threadId}` in a new process continues the thread (the model gets the
  earlier messages); an unknown id answers error -32600 "no rollout found for thread id".
- Closing stdin ends the process with code 0.
- Offline: with `features.plugins=false` it makes no connection but to the model provider
  (without it, the plugin marketplace sync reaches github.com and chatgpt.com at startup).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent_client.workers import codex_events as ev
from agent_client.workers.codex import CodexWorker
from tests.fixtures.model_api import (
    Conversation,
    FakeModelServer,
    Reply,
    Stall,
    ToolResult,
    openai_responses,
)
from tests.support.processes import wait_for
from tests.support.tools import JsonLinesProcess, OutboundSink, tool_path

CODEX = tool_path("codex")
pytestmark = pytest.mark.skipif(CODEX is None, reason="the codex CLI is not installed")

KEY = "sk-proj-orchestra-fake-codex-key-0000"
MODEL = "fake-model"  # an unknown model gets Codex's classic tools (exec_command, ...)
Line = dict[str, Any]


def argv(url: str | None) -> list[str]:
    """The worker's own command line (`codex_events.command_line`): with a URL, our model
    provider; without, Codex's built-in one. Either way `features.plugins=false`: without
    it Codex connects to github.com, api.github.com and chatgpt.com at startup (the plugin
    marketplace), whatever the model provider."""
    assert CODEX is not None
    if url is None:
        return [str(CODEX), "app-server", *(a for s in ev.QUIET for a in ("-c", s))]
    return ev.command_line(str(CODEX), f"{url}/v1", with_key=True)


def method(name: str) -> Callable[[Line], bool]:
    return lambda line: line.get("method") == name


def tool_output(conversation: Conversation) -> str | None:
    results = conversation.tool_results
    return results[-1].content if results else None


class AppServer:
    """A JSON-RPC client over a `JsonLinesProcess`."""

    def __init__(self, cli: JsonLinesProcess) -> None:
        self.cli = cli
        self.ids = itertools.count(1)

    def send(self, line: Line) -> None:
        self.cli.send({"jsonrpc": "2.0", **line})

    async def call(self, name: str, params: dict[str, Any], timeout_s: float = 30) -> Line:
        request_id = next(self.ids)
        self.send({"id": request_id, "method": name, "params": params})
        found = await self.seen(
            lambda m: m.get("id") == request_id and "method" not in m,
            timeout_s=timeout_s,
            what=f"the answer to {name}",
        )
        return found[0]

    async def seen(
        self,
        predicate: Callable[[Line], Any],
        *,
        count: int = 1,
        timeout_s: float = 30,
        what: str = "lines",
    ) -> list[Line]:
        """Every line so far that fits, once there are at least `count` of them."""

        def found() -> list[Line] | None:
            lines = [line for line in self.cli.lines if predicate(line)]
            if len(lines) >= count:
                return lines
            if self.cli.process.returncode is not None:
                raise AssertionError(f"codex ended before {what}: {self.cli.stderr[-800:]!r}")
            return None

        lines: list[Line] = await wait_for(found, timeout_s=timeout_s, what=what)
        return lines

    async def initialize(self) -> Line:
        client = {"name": "orchestra-tests", "title": None, "version": "1"}
        answer = await self.call("initialize", {"clientInfo": client, "capabilities": None})
        self.send({"method": "initialized"})
        return answer

    async def start_thread(self, cwd: Path, policy: str = "untrusted") -> Line:
        params = {
            "cwd": str(cwd),
            "approvalPolicy": policy,
            "sandbox": "workspace-write",
            "model": MODEL,
        }
        return (await self.call("thread/start", params))["result"]

    async def turn(self, thread_id: str, text: str) -> str:
        params = {
            "threadId": thread_id,
            "input": [{"type": "text", "text": text, "text_elements": []}],
        }
        return str((await self.call("turn/start", params))["result"]["turn"]["id"])

    async def completed(self, turn_id: str, timeout_s: float = 30) -> Line:
        lines = await self.seen(
            lambda m: m.get("method") == "turn/completed" and m["params"]["turn"]["id"] == turn_id,
            timeout_s=timeout_s,
            what=f"turn {turn_id} to complete",
        )
        return dict(lines[0]["params"]["turn"])


@dataclass
class Rig:
    server: FakeModelServer
    sink: OutboundSink
    home: Path
    cwd: Path
    started: list[JsonLinesProcess] = field(default_factory=list)

    def env(self, key: str | None = KEY, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
        env |= {"HOME": str(self.home)} | self.sink.env() | extra
        return env | ({"OPENAI_API_KEY": key} if key else {})

    async def codex(
        self, *args: str, key: str | None = KEY, own_provider: bool = True, **env: str
    ) -> AppServer:
        assert CODEX is not None
        command = [*argv(self.server.url if own_provider else None), *args]
        cli = await JsonLinesProcess.start(command, env=self.env(key, **env), cwd=self.cwd)
        self.started.append(cli)
        app = AppServer(cli)
        await app.initialize()
        return app

    def responses(self) -> list[Any]:
        return [r for r in self.server.requests if r.path == "/v1/responses"]

    def conversation(self, index: int = -1) -> Conversation:
        posts = [r for r in self.responses() if r.method == "POST"]
        return openai_responses.parse_conversation(posts[index].body)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server = FakeModelServer(lambda _c: Reply.text("hello from the fake model"))
    openai_responses.install(server)
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    async with server, OutboundSink() as sink:
        rig = Rig(server, sink, tmp_path / "home", tmp_path / "work")
        try:
            yield rig
        finally:
            for cli in rig.started:
                await cli.close(grace_s=10)
                assert not any(KEY in raw for raw in cli.raw), "the API key leaked to stdout"
                assert KEY.encode() not in cli.stderr, "the API key leaked to stderr"
        assert sink.attempts == [], f"codex tried to reach the internet: {sink.attempts}"


def results_since_asked(conversation: Conversation) -> int | None:
    """How many tool results came since the last user message saying "please run"."""
    count = 0
    for message in reversed(conversation.messages):
        if message.role == "user" and "please run" in message.text:
            return count
        count += sum(isinstance(block, ToolResult) for block in message.blocks)
    return None


def run_command(command: str, repeat: int = 1) -> Callable[[Conversation], Reply]:
    """Asked to "please run", the model runs `command` with exec_command `repeat` times,
    then repeats the last output."""

    def script(conversation: Conversation) -> Reply:
        done = results_since_asked(conversation)
        if done is not None and done < repeat:
            return Reply.tool("exec_command", {"cmd": command})
        return Reply.text(f"tool said: {tool_output(conversation)}")

    return script


def test_version_is_what_the_worker_parses() -> None:
    assert CODEX is not None
    out = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "codex-cli 0.171.0"
    assert CodexWorker.version_of(out.stdout) == "0.171.0"


async def test_initialize_thread_and_plain_answer(rig: Rig) -> None:
    app = await rig.codex()
    init = app.cli.lines[0]["result"]
    assert init["codexHome"] == str(rig.home / ".codex") and init["platformOs"] == "linux"
    assert init["userAgent"].startswith("orchestra-tests/0.171.0")
    started = await app.start_thread(rig.cwd)
    thread = started["thread"]
    assert (started["model"], started["modelProvider"]) == (MODEL, "orchestra")
    assert started["approvalPolicy"] == "untrusted"
    assert started["sandbox"]["type"] == "workspaceWrite"
    assert thread["cwd"] == str(rig.cwd) and thread["status"] == {"type": "idle"}
    await app.seen(method("thread/started"))
    turn_id = await app.turn(thread["id"], "say hello")
    turn = await app.completed(turn_id)
    assert turn["status"] == "completed" and turn["error"] is None and turn["durationMs"] >= 0
    names = [line.get("method") for line in app.cli.lines]
    assert names.index("turn/started") < names.index("turn/completed")
    items = [m["params"]["item"] for m in await app.seen(method("item/completed"), count=2)]
    assert [i["type"] for i in items] == ["userMessage", "agentMessage"]
    assert items[0]["content"][0]["text"] == "say hello"
    assert items[1]["text"] == "hello from the fake model"
    deltas = [m["params"]["delta"] for m in app.cli.lines if m.get("method", "").endswith("/delta")]
    assert "".join(deltas) == "hello from the fake model"
    usage = (await app.seen(method("thread/tokenUsage/updated")))[0]["params"]
    assert usage["turnId"] == turn_id
    assert (
        usage["tokenUsage"]["last"]["inputTokens"],
        usage["tokenUsage"]["last"]["outputTokens"],
    ) == (11, 7)
    posts = rig.responses()
    assert [r.method for r in posts] == ["POST"]  # our own provider: no WebSocket attempt
    assert posts[0].headers["Authorization"] == f"Bearer {KEY}"
    assert posts[0].body["stream"] is True and posts[0].body["model"] == MODEL
    tools = {t.get("name") for t in posts[0].body["tools"]}
    assert "exec_command" in tools
    assert rig.conversation().last_user_text == "say hello"
    app.cli.close_stdin()
    assert await app.cli.wait_exit(15) == 0


async def test_every_command_is_asked_and_accept_runs_it_in_the_cwd(rig: Rig) -> None:
    rig.server.script = run_command("ls && touch made.txt")
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "please run it")
    ask = (await app.seen(method("item/commandExecution/requestApproval")))[0]
    params = ask["params"]
    assert isinstance(ask["id"], int) and ask["id"] == 0
    assert params["command"] == "/bin/bash -lc 'ls && touch made.txt'"
    assert params["cwd"] == str(rig.cwd) and params["turnId"] == turn_id
    assert "accept" in params["availableDecisions"] and "cancel" in params["availableDecisions"]
    started = (await app.seen(method("item/started"), count=2))[-1]["params"]["item"]
    assert started["type"] == "commandExecution" and started["id"] == params["itemId"]
    assert not (rig.cwd / "made.txt").exists()
    app.send({"id": ask["id"], "result": {"decision": "accept"}})
    resolved = (await app.seen(method("serverRequest/resolved")))[0]["params"]
    assert resolved["requestId"] == ask["id"]
    assert (await app.completed(turn_id))["status"] == "completed"
    done = [m["params"]["item"] for m in app.cli.lines if m.get("method") == "item/completed"]
    command = next(i for i in done if i["type"] == "commandExecution")
    assert command["status"] == "completed" and command["exitCode"] == 0
    assert (rig.cwd / "made.txt").exists()
    assert "Process exited with code 0" in (tool_output(rig.conversation()) or "")


async def test_decline_and_cancel(rig: Rig) -> None:
    rig.server.script = run_command("touch declined.txt")
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "please run it")
    ask = (await app.seen(method("item/commandExecution/requestApproval")))[0]
    app.send({"id": ask["id"], "result": {"decision": "decline"}})
    assert (await app.completed(turn_id))["status"] == "completed"
    done = [m["params"]["item"] for m in app.cli.lines if m.get("method") == "item/completed"]
    assert next(i for i in done if i["type"] == "commandExecution")["status"] == "declined"
    assert "rejected by user" in (tool_output(rig.conversation()) or "")
    assert not (rig.cwd / "declined.txt").exists()
    turn_id = await app.turn(thread_id, "please run it again")
    ask = (await app.seen(method("item/commandExecution/requestApproval"), count=2))[-1]
    app.send({"id": ask["id"], "result": {"decision": "cancel"}})
    assert (await app.completed(turn_id))["status"] == "interrupted"
    assert not (rig.cwd / "declined.txt").exists()


async def test_accept_for_session_is_not_asked_again(rig: Rig) -> None:
    rig.server.script = run_command("echo hi >> log.txt", repeat=2)
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "please run it twice")
    ask = (await app.seen(method("item/commandExecution/requestApproval")))[0]
    app.send({"id": ask["id"], "result": {"decision": "acceptForSession"}})
    assert (await app.completed(turn_id))["status"] == "completed"
    assert (rig.cwd / "log.txt").read_text() == "hi\nhi\n"
    asks = [m for m in app.cli.lines if m.get("method", "").endswith("requestApproval")]
    assert len(asks) == 1


def stall_on(text: str) -> Callable[[Conversation], Reply]:
    """The model stalls (streams a little, then holds the stream) when the last user text is
    `text`, else says how many user texts it saw."""

    def script(conversation: Conversation) -> Reply:
        if conversation.last_user_text == text:
            return Reply((Stall("working on it"),))
        return Reply.text(f"seen: {conversation.last_user_text}")

    return script


async def test_interrupt_a_streaming_turn_and_go_on(rig: Rig) -> None:
    rig.server.script = stall_on("take your time")
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "take your time")
    await wait_for(lambda: rig.server.gate.stalled == 1, what="the stalled stream")
    await app.seen(method("item/agentMessage/delta"))
    answer = await app.call("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
    assert answer["result"] == {}
    turn = await app.completed(turn_id)
    assert turn["status"] == "interrupted" and turn["error"] is None
    done = [
        m["params"]["item"]["type"] for m in app.cli.lines if m.get("method") == "item/completed"
    ]
    assert done == ["userMessage"]  # the partial agent message is never completed
    await wait_for(lambda: rig.server.seen.dropped, what="the dropped stream")
    late = await app.call("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
    assert late["error"] == {"code": -32600, "message": "no active turn to interrupt"}
    next_turn = await app.turn(thread_id, "and now?")
    assert (await app.completed(next_turn))["status"] == "completed"
    texts = rig.conversation().user_texts
    assert texts[-3] == "take your time" and texts[-1] == "and now?"
    assert texts[-2].startswith("<turn_aborted>")


async def test_a_turn_start_during_a_turn_joins_the_running_turn(rig: Rig) -> None:
    """Why the worker queues input during a turn instead: steered input gets no turn (nor
    result) of its own, and it preempts the model's stream (a new request at once)."""
    rig.server.script = stall_on("take your time")
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "take your time")
    await wait_for(lambda: rig.server.gate.stalled == 1, what="the stalled stream")
    assert await app.turn(thread_id, "added while running") == turn_id
    turn = await app.completed(turn_id)
    assert turn["status"] == "completed"
    assert len([m for m in app.cli.lines if m.get("method") == "turn/started"]) == 1
    texts = rig.conversation().user_texts
    assert texts[-2:] == ["take your time", "added while running"]
    answers = [
        m["params"]["item"].get("text")
        for m in app.cli.lines
        if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "agentMessage"
    ]
    assert answers[-1] == "seen: added while running"


async def test_interrupt_withdraws_a_pending_approval(rig: Rig) -> None:
    rig.server.script = run_command("touch never.txt")
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn_id = await app.turn(thread_id, "please run it")
    ask = (await app.seen(method("item/commandExecution/requestApproval")))[0]
    await app.call("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
    assert (await app.completed(turn_id))["status"] == "interrupted"
    resolved = (await app.seen(method("serverRequest/resolved")))[0]
    assert resolved["params"]["requestId"] == ask["id"]
    names = [m.get("method") for m in app.cli.lines]
    assert names.index("turn/completed") < names.index("serverRequest/resolved")
    app.send({"id": ask["id"], "result": {"decision": "accept"}})  # late: ignored
    rig.server.script = lambda _c: Reply.text("still here")
    next_turn = await app.turn(thread_id, "are you there?")
    assert (await app.completed(next_turn))["status"] == "completed"
    assert not (rig.cwd / "never.txt").exists()


async def test_no_key_fails_every_turn_and_stays_up(rig: Rig) -> None:
    app = await rig.codex(key=None)
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    for n in (1, 2):
        turn = await app.completed(await app.turn(thread_id, f"hello {n}"))
        assert turn["status"] == "failed"
        assert turn["error"]["message"] == "Missing environment variable: `OPENAI_API_KEY`."
        assert turn["error"]["codexErrorInfo"] == "other"
        errors = await app.seen(method("error"), count=n)
        assert errors[-1]["params"]["willRetry"] is False
    assert rig.responses() == []
    app.cli.close_stdin()
    assert await app.cli.wait_exit(15) == 0


async def test_a_wrong_key_is_retried_then_fails_with_401(rig: Rig) -> None:
    rig.server.api_key = "sk-the-right-one"
    app = await rig.codex()
    thread_id = (await app.start_thread(rig.cwd))["thread"]["id"]
    turn = await app.completed(await app.turn(thread_id, "hello"), timeout_s=60)
    assert turn["status"] == "failed"
    assert turn["error"]["codexErrorInfo"] == {"httpConnectionFailed": {"httpStatusCode": 401}}
    retries = [m for m in app.cli.lines if m.get("method") == "error" and m["params"]["willRetry"]]
    assert len(retries) == 5 and len(rig.responses()) == 6


async def test_resume_by_thread_id_in_a_new_process(rig: Rig) -> None:
    rig.server.script = lambda c: Reply.text(f"I have seen: {' | '.join(c.user_texts[-3:])}")
    first = await rig.codex()
    thread_id = (await first.start_thread(rig.cwd))["thread"]["id"]
    await first.completed(await first.turn(thread_id, "my colour is blue"))
    first.cli.close_stdin()
    assert await first.cli.wait_exit(15) == 0
    second = await rig.codex()
    resumed = (await second.call("thread/resume", {"threadId": thread_id}))["result"]
    assert resumed["thread"]["id"] == thread_id and resumed["model"] == MODEL
    assert not any(line.get("method") == "thread/started" for line in second.cli.lines)
    await second.completed(await second.turn(thread_id, "what is my colour?"))
    assert rig.conversation().mentions("my colour is blue")
    missing = await second.call(
        "thread/resume", {"threadId": "01a223e1-0000-7000-8000-000000000000"}
    )
    assert missing["error"]["code"] == -32600
    assert missing["error"]["message"].startswith("no rollout found for thread id")


async def test_the_builtin_provider_ignores_the_openai_environment(rig: Rig) -> None:
    """Why the worker defines a provider of its own: with `openai_base_url` and
    OPENAI_API_KEY, the built-in provider tries a WebSocket first and sends no key."""
    app = await rig.codex(
        "-c",
        f'openai_base_url="{rig.server.url}/v1"',
        "-c",
        f'model="{MODEL}"',
        own_provider=False,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    thread = (await app.call("thread/start", {"cwd": str(rig.cwd)}))["result"]
    assert thread["modelProvider"] == "openai"
    await app.completed(await app.turn(thread["thread"]["id"], "hello"), timeout_s=60)
    methods = [r.method for r in rig.responses()]
    assert methods[0] == "GET" and methods[-1] == "POST"  # WebSocket attempts, then HTTPS
    assert "Authorization" not in rig.responses()[-1].headers
