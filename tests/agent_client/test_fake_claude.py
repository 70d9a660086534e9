"""The fake `claude` (tests/fixtures/bin/claude) speaks like the real one and catches host bugs.

A minimal stream-json driver here runs it with plain python3; its lines are compared with the
real CLI's recorded transcripts (tests/fixtures/transcripts/claude/).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FAKE = Path(__file__).parents[1] / "fixtures" / "bin" / "claude"
TRANSCRIPTS = Path(__file__).parents[1] / "fixtures" / "transcripts" / "claude"
FLAGS = ["--output-format", "stream-json", "--verbose", "--input-format", "stream-json",
         "--permission-prompt-tool", "stdio"]  # fmt: skip
KEY = "sk-ant-fake-key-for-tests"
Line = dict[str, Any]


class Driver:
    """The fake on stdin/stdout: `send` a line, `expect` the next line that fits."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self._stderr: str | None = None

    @classmethod
    async def start(cls, home: Path, *args: str, env: dict[str, str] | None = None) -> Driver:
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "ANTHROPIC_API_KEY": KEY}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(FAKE), *FLAGS, *args, cwd=home,
            env=environment | (env or {}), limit=16 * 1024 * 1024,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    def send(self, line: Line | str) -> None:
        assert self.process.stdin is not None
        text = line if isinstance(line, str) else json.dumps(line)
        self.process.stdin.write(text.encode() + b"\n")

    async def expect(self, predicate: Callable[[Line], bool], timeout_s: float = 10.0) -> Line:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while raw := await self.process.stdout.readline():
                self.raw.append(raw.decode())
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                self.lines.append(line)
                if predicate(line):
                    return line
        raise AssertionError(f"stdout ended; stderr: {await self.stderr()}")

    async def stderr(self) -> str:
        """All it wrote to stderr (read once, after stdout ended)."""
        if self._stderr is None:
            assert self.process.stderr is not None
            self._stderr = (await self.process.stderr.read()).decode()
        return self._stderr

    async def close(self) -> int:
        """Close stdin, keep what it still prints, and give its exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        with contextlib.suppress(AssertionError):
            await self.expect(lambda _line: False)
        return await asyncio.wait_for(self.process.wait(), 10)

    async def initialize(self) -> Line:
        self.send({"type": "control_request", "request_id": "req_init",
                   "request": {"subtype": "initialize", "hooks": None}})  # fmt: skip
        return await self.expect(of("control_response"))

    async def turn(self, text: str) -> Line:
        self.send({"type": "user", "message": {"role": "user", "content": text},
                   "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
        return await self.expect(of("result"))


def of(kind: str, subtype: str | None = None) -> Callable[[Line], bool]:
    return lambda line: line.get("type") == kind and subtype in (None, line.get("subtype"))


def answer(request: Line, body: Line) -> Line:
    return {"type": "control_response", "response": {
        "subtype": "success", "request_id": request["request_id"], "response": body}}  # fmt: skip


def real(scenario: str, kind: str, subtype: str | None = None) -> Line:
    """The first line of `kind` the real CLI printed in a recorded scenario."""
    lines = [json.loads(x) for x in (TRANSCRIPTS / f"{scenario}.jsonl").read_text().splitlines()]
    return next(x for x in lines if of(kind, subtype)(x))


async def test_version_and_flags(tmp_path: Path) -> None:
    version = await asyncio.create_subprocess_exec(FAKE, "--version", stdout=-1)
    assert (await version.communicate())[0] == b"2.1.332 (Claude Code)\n"
    for args in (["--bogus"], ["--output-format", "json"]):
        fake = await Driver.start(tmp_path, *args)
        assert await fake.close() == 2
    bad_mode = await Driver.start(tmp_path, "--permission-mode", "bogus")
    assert await bad_mode.close() == 1


async def test_plain_turn_has_the_real_shapes(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path, "--model", "claude-sonnet-4-5")
    assert (await fake.initialize())["response"]["request_id"] == "req_init"
    result = await fake.turn("scenario: plain")
    init, text = fake.lines[1], fake.lines[2]
    assert init["model"] == "claude-sonnet-4-5" and init["session_id"] == result["session_id"]
    assert text["message"]["content"] == [{"type": "text", "text": "Hello from the fake Claude."}]
    assert result["usage"]["output_tokens"] == 7 and result["total_cost_usd"] > 0
    pairs = [
        (init, real("plain", "system", "init")),
        (text, real("plain", "assistant")),
        (result, real("plain", "result")),
        (fake.lines[0], real("plain", "control_response")),
    ]
    for mine, theirs in pairs:
        assert set(mine) <= set(theirs), set(mine) - set(theirs)
    assert set(result["usage"]) == set(real("plain", "result")["usage"])
    assert await fake.close() == 0


async def test_permission_allow_updated_input_and_session_rule(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path)
    await fake.initialize()
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: permission"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    ask = await fake.expect(of("control_request"))
    assert set(ask["request"]) == set(real("permission_allow", "control_request")["request"])
    rules = [{"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "echo bye"}],
              "behavior": "allow", "destination": "session"}]  # fmt: skip
    updated = {"command": "echo bye", "description": "x"}
    fake.send(answer(ask, {"behavior": "allow", "updatedInput": updated,
                           "updatedPermissions": rules}))  # fmt: skip
    tool_result = await fake.expect(of("user"))
    assert tool_result["message"]["content"][0]["content"] == "ran: echo bye"
    assert (await fake.expect(of("result")))["result"] == "tool said: ran: echo bye"
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: permission"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    await fake.expect(of("control_request"))  # `echo hi > out.txt` is not covered by the rule
    assert await fake.close() == 0


async def test_deny_and_allowed_tools(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path)
    await fake.initialize()
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: permission"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    ask = await fake.expect(of("control_request"))
    fake.send(answer(ask, {"behavior": "deny", "message": "not today", "interrupt": False}))
    block = (await fake.expect(of("user")))["message"]["content"][0]
    assert (block["content"], block["is_error"]) == ("not today", True)
    result = await fake.expect(of("result"))
    assert result["permission_denials"][0]["tool_name"] == "Bash"
    assert await fake.close() == 0
    trusting = await Driver.start(tmp_path, "--allowedTools", "Read,Bash")
    await trusting.initialize()
    assert (await trusting.turn("scenario: permission"))["result"].startswith("tool said: ran")
    assert not any(line["type"] == "control_request" for line in trusting.lines)
    await trusting.close()


async def test_cancel_then_a_late_answer_is_a_host_bug(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path)
    await fake.initialize()
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: cancel"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    ask = await fake.expect(of("control_request"))
    cancel = await fake.expect(of("control_cancel_request"))
    assert cancel == {"type": "control_cancel_request", "request_id": ask["request_id"]}
    await fake.expect(of("result"))
    fake.send(answer(ask, {"behavior": "allow", "updatedInput": {}}))
    assert await fake.close() == 3
    assert "withdrawn by control_cancel_request" in await fake.stderr()


async def test_slow_interrupt_then_next_message(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path)
    await fake.initialize()
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: slow"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    await fake.expect(of("assistant"))
    fake.send(
        {"type": "control_request", "request_id": "req_int", "request": {"subtype": "interrupt"}}
    )
    response = await fake.expect(of("control_response"))
    assert response["response"]["response"] == {"still_queued": []}
    assert (await fake.expect(of("assistant")))["aborted"] is True
    note = await fake.expect(of("user"))
    assert note["message"]["content"][0]["text"] == "[Request interrupted by user]"
    result = await fake.expect(of("result"))
    assert (result["subtype"], result["terminal_reason"]) == (
        "error_during_execution",
        "aborted_streaming",
    )
    assert set(result) <= set(real("interrupt", "result", "error_during_execution"))
    assert (await fake.turn("hello"))["result"].startswith("you said: hello")
    assert await fake.close() == 0


async def test_not_logged_in_and_error(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path, env={"ANTHROPIC_API_KEY": ""})
    await fake.initialize()
    for _ in range(2):
        result = await fake.turn("hello")
        assert (result["is_error"], result["result"]) == (True, "Not logged in · Please run /login")
    assert fake.process.returncode is None
    assert await fake.close() == 1
    keyed = await Driver.start(tmp_path)
    await keyed.initialize()
    assert (await keyed.turn("scenario: error"))["terminal_reason"] == "api_error"
    assert await keyed.close() == 1


async def test_resume_remembers_and_record_keeps_no_secret(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    fake = await Driver.start(tmp_path, env={"FAKE_CLAUDE_RECORD": str(record)})
    await fake.initialize()
    first = await fake.turn("one")
    await fake.turn("two")
    assert await fake.close() == 0
    again = await Driver.start(tmp_path, f"--resume={first['session_id']}")
    await again.initialize()
    result = await again.turn("three")
    assert result["result"] == "you said: three (I remember 2 earlier user messages)"
    assert result["session_id"] == first["session_id"]
    await again.close()
    text = record.read_text()
    assert KEY not in text
    head, *inputs = [json.loads(x) for x in text.splitlines()]
    assert head["anthropic_api_key_sha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    assert "ANTHROPIC_API_KEY" in head["env"] and head["argv"][:2] == FLAGS[:2]
    assert len(inputs) == 3 and json.loads(inputs[1]["stdin"])["message"]["content"] == "one"
    unknown = await Driver.start(tmp_path, "--resume=00000000-0000-4000-8000-000000000000")
    assert await unknown.close() == 1


@pytest.mark.parametrize(
    "bad",
    ['{"type": "user", "message": {"role": "user", "content": "before initialize"}}',
     "not json", '{"type": "mystery"}',
     '{"type": "control_response", "response": {"subtype": "success", "request_id": "nope"}}'],
)  # fmt: skip
async def test_host_bugs_exit_3(tmp_path: Path, bad: str) -> None:
    fake = await Driver.start(tmp_path)
    if "before initialize" not in bad:
        await fake.initialize()
    fake.send(bad)
    assert await asyncio.wait_for(fake.process.wait(), 10) == 3
    assert "bad input from the host" in await fake.stderr()


async def test_crash_big_noise_and_closed_stdin(tmp_path: Path) -> None:
    fake = await Driver.start(tmp_path)
    await fake.initialize()
    big = await fake.turn("scenario: big")
    assert len(json.dumps(big)) > 1024 * 1024
    await fake.turn("scenario: noise")
    assert any(raw.startswith("[fake claude]") for raw in fake.raw)
    assert any(line["type"] == "fake_unknown_event" for line in fake.lines)
    fake.send({"type": "user", "message": {"role": "user", "content": "scenario: wait-permission"},
               "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    await fake.expect(of("control_request"))
    assert await fake.close() == 0  # the request fails as "stream closed", the turn ends
    assert "Tool permission stream closed" in fake.lines[-3]["message"]["content"][0]["content"]
    crash = await Driver.start(tmp_path)
    await crash.initialize()
    crash.send({"type": "user", "message": {"role": "user", "content": "scenario: crash"},
                "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    assert await asyncio.wait_for(crash.process.wait(), 10) == 2
