"""Facts about the real Gemini CLI (0.61.0) in headless stream-json mode, only the model faked.

Each test runs `gemini -o stream-json --skip-trust [...]` against the fake Gemini API
(tests/fixtures/model_api/gemini.py), the prompt on stdin, and checks one behaviour the
`gemini` worker adapter relies on. What they establish:

- Events, one JSON object a line: `init {session_id, model}`, `message {role: "user",
  content}` (the prompt as given), `message {role: "assistant", content, delta: true}` (text
  in pieces, no message id), `tool_use {tool_name, tool_id, parameters}` (tool_id is
  `<name>__<the model's call id>`), `tool_result {tool_id, status, output, error: {type,
  message}}`, `error {severity, message}`, `result {status, error?, stats: {total_tokens,
  input_tokens, output_tokens, cached, input, duration_ms, tool_calls, models}}`. Thoughts
  are not printed. Every event has a `timestamp`.
- Endpoint and key: `GOOGLE_GEMINI_BASE_URL` and `GEMINI_API_KEY` (sent as `x-goog-api-key`).
  With a base URL the CLI infers the auth type "gateway", which headless mode rejects:
  "Invalid auth method selected.", exit 41 (upstream gemini-cli#27550), unless settings.json
  pins `security.auth.selectedType: "gemini-api-key"`.
- No key: exit 41 with a line on stderr and nothing on stdout. A wrong key: `init`, then a
  `result` with status error and the API's message, exit 144 (HTTP 400 mod 256).
- Approval modes, headless: a tool that would need approval is not declared to the model;
  a call to it gets `tool_result` status error, error.type `tool_not_registered`, and the
  turn goes on (result success, exit 0). default: no shell, no edits; auto_edit: edits and
  web fetch, no shell; yolo: everything; plan: read-only plus plan files.
  `--allowed-tools run_shell_command` (deprecated, says stderr) declares the shell in
  default mode and runs plain commands; one it would ask about (a redirection, `;`) gets
  `tool_result` status error, type `unhandled_exception`, "Tool execution for "Shell"
  requires user confirmation, which is not supported in non-interactive mode."
- Trust: without `--skip-trust` (or GEMINI_CLI_TRUST_WORKSPACE=true), exit 55.
- Resume: `--resume <session_id>` keeps the id and sends the earlier conversation; an
  unknown id exits 42 (stderr only).
- SIGINT: exit 0 within a second, no `result`; the session keeps the prompt (not the partial
  answer). A running shell tool is in a session of its own and survives the CLI.
- Side requests: with the default model ("auto") a routing classifier call
  (`:generateContent` with a JSON schema) precedes each turn; `-m <model>` skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from tests.fixtures.model_api import Conversation, FakeModelServer, Reply, Text, Thinking, gemini
from tests.support.tools import JsonLinesProcess, Line, tool_path

GEMINI = tool_path("gemini")
pytestmark = [pytest.mark.skipif(GEMINI is None, reason="gemini CLI not installed")]

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEADLINE_S = 90.0  # generous: the CLI takes 3 to 9 s to start on a busy machine
KEY = "gk-facts-key-0123456789"
SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}}


@dataclass
class Rig:
    server: FakeModelServer
    home: Path
    work: Path

    @property
    def script(self) -> Callable[[Conversation], Any]:
        return self.server.script

    @script.setter
    def script(self, script: Callable[[Conversation], Any]) -> None:
        self.server.script = script

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "GEMINI_API_KEY": KEY,
               "GOOGLE_GEMINI_BASE_URL": self.server.url}  # fmt: skip
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    async def start(self, *args: str, prompt: str, **env: str) -> JsonLinesProcess:
        argv = [str(GEMINI), "-o", "stream-json", *args]
        cli = await JsonLinesProcess.start(argv, env=self.env(**env), cwd=self.work)
        assert cli.process.stdin is not None
        cli.process.stdin.write(prompt.encode())
        cli.close_stdin()
        return cli

    async def run(self, *args: str, prompt: str, **env: str) -> tuple[JsonLinesProcess, int]:
        cli = await self.start(*args, prompt=prompt, **env)
        code = await cli.wait_exit(DEADLINE_S)
        await cli.close()
        return cli, code

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        return [self.server.requests[i].body for i in self.server.seen.main]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server = FakeModelServer(lambda _c: Reply.text("unused"))
    gemini.install(server)
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    async with server:
        yield Rig(server, home, work)


def events(cli: JsonLinesProcess, kind: str) -> list[Line]:
    return [line for line in cli.lines if line.get("type") == kind]


def declared(body: dict[str, Any]) -> list[str]:
    return [f["name"] for t in body.get("tools", []) for f in t.get("functionDeclarations", [])]


async def test_a_plain_answer(rig: Rig) -> None:
    rig.script = lambda _c: Reply((Thinking("hmm"), Text("Hello there, from the fake model")))
    cli, code = await rig.run("--skip-trust", prompt="Say hello")

    assert code == 0
    assert [line["type"] for line in cli.lines] == ["init", "message", *["message"] * 2, "result"]
    init, user, *deltas, result = cli.lines
    assert set(init) == {"type", "timestamp", "session_id", "model"}
    assert UUID.match(init["session_id"]) and init["model"] == "auto"
    assert user == {"type": "message", "timestamp": user["timestamp"], "role": "user",
                    "content": "Say hello"}  # fmt: skip
    assert all(d["role"] == "assistant" and d["delta"] is True for d in deltas)
    assert "".join(d["content"] for d in deltas) == "Hello there, from the fake model"  # no thought
    assert result["status"] == "success" and "error" not in result
    assert {"input_tokens", "output_tokens", "cached", "input", "duration_ms", "tool_calls",
            "total_tokens", "models"} <= set(result["stats"])  # fmt: skip
    assert result["stats"]["output_tokens"] >= 7  # the turn's, side requests included
    seen = rig.server.seen
    side = [rig.server.requests[i] for i in seen.side]
    assert len(seen.main) == 1 and len(side) == 1  # "auto": a routing classifier first
    assert "complexity_score" in json.dumps(side[0].body)
    assert rig.server.requests[seen.main[0]].headers["x-goog-api-key"] == KEY


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        (["--approval-mode", "default"], False),
        (["--approval-mode", "auto_edit"], False),
        (["--approval-mode", "yolo"], True),
        (["--approval-mode", "plan"], False),
    ],
)
async def test_a_shell_call_under_each_approval_mode(rig: Rig, args: list[str], runs: bool) -> None:
    def script(conversation: Conversation) -> Reply:
        if conversation.tool_results:
            return Reply.text("done")
        return Reply.tool("run_shell_command", {"command": "echo ran > proof.txt; echo ran"})

    rig.script = script
    cli, code = await rig.run("--skip-trust", "-m", "gemini-2.5-flash", *args, prompt="go")

    assert code == 0  # refused or not, the turn ends well
    (use,) = events(cli, "tool_use")
    assert use["tool_name"] == "run_shell_command"
    assert use["tool_id"].startswith("run_shell_command__toolu_fake_")
    (result,) = events(cli, "tool_result")
    assert result["tool_id"] == use["tool_id"]
    assert events(cli, "result")[0]["status"] == "success"
    assert ("run_shell_command" in declared(rig.main_requests[0])) is runs
    if runs:
        assert result["status"] == "success" and result["output"] == "ran"
        assert (rig.work / "proof.txt").read_text() == "ran\n"
    else:
        assert result["status"] == "error"
        assert result["error"]["type"] == "tool_not_registered"
        assert result["error"]["message"].startswith('Tool "run_shell_command" not found')
        assert not (rig.work / "proof.txt").exists()
        answer = gemini.parse_conversation(rig.main_requests[1]).tool_results[0]
        assert answer.is_error and "not found" in answer.content  # the model is told


async def test_allowed_tools_run_only_plain_calls_headless(rig: Rig) -> None:
    def script(conversation: Conversation) -> Reply:
        commands = ["echo allowed", "echo ran > proof.txt; echo ran"]
        if len(conversation.tool_results) < len(commands):
            return Reply.tool(
                "run_shell_command", {"command": commands[len(conversation.tool_results)]}
            )
        return Reply.text("done")

    rig.script = script
    args = ["--skip-trust", "-m", "gemini-2.5-flash", "--allowed-tools", "run_shell_command"]
    cli, code = await rig.run(*args, prompt="go")
    assert code == 0
    plain, compound = events(cli, "tool_result")
    assert plain["status"] == "success" and plain["output"] == "allowed"
    assert compound["status"] == "error" and compound["error"]["type"] == "unhandled_exception"
    assert compound["error"]["message"] == (
        'Tool execution for "Shell" requires user confirmation, which is not supported in '
        "non-interactive mode."
    )
    assert not (rig.work / "proof.txt").exists()
    assert b"--allowed-tools cli argument and tools.allowed in settings.json are deprecated" in (
        cli.stderr
    )


async def test_resume_keeps_the_session_and_the_conversation(rig: Rig) -> None:
    rig.script = lambda c: Reply.text(f"seen {len(c.user_texts)}")
    first, code = await rig.run("--skip-trust", "-m", "gemini-2.5-flash", prompt="one")
    session = first.lines[0]["session_id"]
    second, code2 = await rig.run(
        "--skip-trust", "-m", "gemini-2.5-flash", "--resume", session, prompt="two"
    )
    assert code == code2 == 0
    assert second.lines[0]["session_id"] == session
    texts = ["".join(d["content"] for d in events(cli, "message")[1:]) for cli in (first, second)]
    assert texts == ["seen 1", "seen 2"]
    history = gemini.parse_conversation(rig.main_requests[1]).messages
    assert [m.role for m in history] == ["user", "assistant", "user"]
    assert history[1].text == "seen 1" and history[2].text == "two"

    unknown, code3 = await rig.run("--skip-trust", "--resume", "no-such-id", prompt="three")
    assert code3 == 42 and unknown.lines == []
    assert b'Invalid session identifier "no-such-id"' in unknown.stderr


async def test_without_a_key_or_with_a_wrong_one(rig: Rig) -> None:
    rig.script = lambda _c: Reply.text("never")
    missing, code = await rig.run("--skip-trust", prompt="hi", GEMINI_API_KEY="")
    assert code == 41 and missing.lines == []
    assert b"you must specify the GEMINI_API_KEY environment variable" in missing.stderr

    (rig.home / ".gemini" / "settings.json").write_text("{}")  # no auth type pinned
    gateway, code = await rig.run("--skip-trust", prompt="hi")
    assert code == 41 and gateway.lines == [] and b"Invalid auth method selected." in gateway.stderr

    (rig.home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    rig.server.api_key = "the-right-key"
    wrong, code = await rig.run("--skip-trust", "-m", "gemini-2.5-flash", prompt="hi")
    assert code == 400 % 256
    assert [line["type"] for line in wrong.lines] == ["init", "message", "result"]
    result = wrong.lines[-1]
    assert result["status"] == "error" and "API key not valid" in result["error"]["message"]


async def test_an_untrusted_folder_is_refused_headless(rig: Rig) -> None:
    cli, code = await rig.run(prompt="hi")
    assert code == 55 and cli.lines == []
    assert b"not running in a trusted directory" in cli.stderr


async def test_sigint_ends_the_turn_at_once_without_a_result(rig: Rig) -> None:
    go_on = asyncio.Event()

    async def slowly() -> AsyncIterator[Reply]:
        yield Reply.text("partial answer")
        await go_on.wait()
        yield Reply.text(" never sent")

    def script(conversation: Conversation) -> Any:
        last = conversation.last_message
        if last is not None and last.text.endswith("slow please"):
            return slowly()
        return Reply.text("after the interrupt")

    rig.script = script
    cli = await rig.start("--skip-trust", "-m", "gemini-2.5-flash", prompt="slow please")
    await cli.expect(lambda line: line.get("role") == "assistant", timeout_s=DEADLINE_S)
    began = time.monotonic()
    os.killpg(cli.process.pid, signal.SIGINT)
    code = await cli.wait_exit(DEADLINE_S)
    assert code == 0 and time.monotonic() - began < 10
    assert events(cli, "result") == []
    await cli.close()
    assert await _eventually(lambda: rig.server.seen.dropped == [0])
    session = cli.lines[0]["session_id"]

    _, code = await rig.run(
        "--skip-trust", "-m", "gemini-2.5-flash", "--resume", session, prompt="after"
    )
    assert code == 0
    history = gemini.parse_conversation(rig.main_requests[-1]).messages
    assert [m.role for m in history] == ["user"]  # the partial answer is gone
    assert history[0].text.endswith("slow please\nafter")


async def test_a_shell_tool_outlives_an_interrupted_cli(rig: Rig) -> None:
    marker = "45.6789"  # a sleep no one else runs
    rig.script = lambda _c: Reply.tool("run_shell_command", {"command": f"sleep {marker}"})
    cli = await rig.start("--skip-trust", "-m", "gemini-2.5-flash", "--approval-mode", "yolo",
                          prompt="sleep")  # fmt: skip
    await cli.expect(lambda line: line.get("type") == "tool_use", timeout_s=DEADLINE_S)
    assert await _eventually(lambda: _sleepers(marker))
    os.killpg(cli.process.pid, signal.SIGINT)
    assert await cli.wait_exit(DEADLINE_S) == 0
    await cli.close()
    try:
        left = _sleepers(marker)
        assert left, "the shell tool died with the CLI"
        assert all(os.getpgid(p.pid) != cli.process.pid for p in left)  # a group of its own
    finally:
        for process in _sleepers(marker):
            with contextlib.suppress(psutil.Error):
                process.kill()


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.info["cmdline"] == ["sleep", marker]:
                found.append(process)
    return found


async def _eventually(condition: Callable[[], Any], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
