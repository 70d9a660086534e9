"""Facts about the real Qwen Code CLI (0.24.4) in stream-json mode, only the model faked.

Each test runs `qwen --input-format stream-json --output-format stream-json
--approval-mode default` (the recipe: tests/fixtures/transcripts/record_qwen.py) against
the fake OpenAI chat completions API and checks one behaviour the agent daemon relies on;
with env `ORCHESTRA_RECORD_QWEN=<folder>` each also writes its transcript there.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.fixtures.model_api import (
    Conversation,
    FakeModelServer,
    Reply,
    Stall,
    Text,
    Thinking,
    openai_chat,
)
from tests.fixtures.transcripts.record_qwen import MODEL, SETTINGS, QwenRig, answer, control, user
from tests.support.tools import JsonLinesProcess, Line, tool_path

QWEN = tool_path("qwen")
pytestmark = [pytest.mark.skipif(QWEN is None, reason="qwen CLI not installed")]

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEADLINE_S = 60.0  # generous: the CLI takes about 3 s to start, a turn well under 1 s


def of_type(kind: str, subtype: str | None = None) -> Callable[[Line], bool]:
    def check(line: Line) -> bool:
        sub = line.get("subtype") or (line.get("request") or {}).get("subtype")
        return line.get("type") == kind and (subtype is None or sub == subtype)

    return check


def has_block(kind: str) -> Callable[[Line], bool]:
    return lambda line: any(b["type"] == kind for b in line["message"]["content"])


def shell(command: str) -> Reply:
    return Reply.tool("run_shell_command", {"command": command, "description": "a test command"})


async def until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[QwenRig]:
    server = FakeModelServer(lambda _c: Reply.text("unused"))
    openai_chat.install(server)
    home, cwd = tmp_path / "home", tmp_path / "work"
    (home / ".qwen").mkdir(parents=True)
    cwd.mkdir()
    (home / ".qwen" / "settings.json").write_text(json.dumps(SETTINGS))
    async with server:
        yield QwenRig(server, tmp_path, home, cwd)


async def started(rig: QwenRig, *args: str, **init: Any) -> tuple[JsonLinesProcess, Line]:
    """A qwen process that answered `initialize`; the answer's inner `response`."""
    qwen = await rig.start("--approval-mode", "default", *args)
    qwen.send(control("req_init", "initialize", hooks=None, **init))
    reply = await qwen.expect(of_type("control_response"), timeout_s=DEADLINE_S, what="init")
    assert reply["response"]["subtype"] == "success"
    assert reply["response"]["request_id"] == "req_init"
    return qwen, reply["response"]["response"]


async def test_initialize_and_a_plain_answer(rig: QwenRig) -> None:
    rig.script(lambda _c: Reply((Thinking("Let me think."), Text("Hello from the fake model."))))
    began = time.monotonic()
    qwen, init = await started(rig)
    startup_s = time.monotonic() - began
    assert UUID.match(init["session_id"]) and init["subtype"] == "initialize"
    assert init["capabilities"]["can_handle_can_use_tool"] is True

    began = time.monotonic()
    qwen.send(user("Say hello"))
    system = await qwen.expect(of_type("system"), what="system/init")
    assert system["subtype"] == "init"  # not `session_start` (that is the dual-output mode)
    assert system["session_id"] == system["uuid"] == init["session_id"]
    fields = ("cwd", "model", "permission_mode", "qwen_code_version")
    assert [system[f] for f in fields] == [str(rig.cwd), MODEL, "default", "0.24.4"]
    tools = {"run_shell_command", "write_file", "read_file", "edit", "glob", "grep_search"}
    assert tools <= set(system["tools"]) and "mcp_servers" in system
    thinking = await qwen.expect(of_type("assistant"), what="thinking")
    assert thinking["message"]["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""}
    ]
    text = await qwen.expect(of_type("assistant"), what="text")
    assert text["message"]["content"] == [{"type": "text", "text": "Hello from the fake model."}]
    assert text["message"]["usage"]["input_tokens"] == 11
    result = await qwen.expect(of_type("result"), what="result")
    turn_s = time.monotonic() - began
    assert (result["subtype"], result["is_error"], result["num_turns"]) == ("success", False, 1)
    assert result["result"] == "Hello from the fake model."
    assert result["session_id"] == init["session_id"]
    assert result["usage"] == {"input_tokens": 11, "output_tokens": 7,
                               "cache_read_input_tokens": 0, "total_tokens": 18}  # fmt: skip
    assert "total_cost_usd" not in result
    assert {"duration_ms", "duration_api_ms", "permission_denials", "uuid"} <= set(result)
    assert qwen.types() == ["control_response", "system/init", "stream_event", "assistant",
                            "assistant", "result/success"]  # fmt: skip

    # The request: streamed, with usage, the key as a bearer token, the user's text last.
    (body,) = rig.main_bodies()
    assert (body["model"], body["stream"], body["stream_options"]["include_usage"]) == (
        MODEL, True, True)  # fmt: skip
    assert body["messages"][-1]["content"][-1] == {"type": "text", "text": "Say hello"}
    assert rig.server.requests[0].headers["Authorization"] == "Bearer sk-fake-qwen"
    assert rig.server.seen.side == []

    # Every turn begins with system/init; a result's usage is the session's running total.
    rig.script(lambda _c: Reply.text("Again."))
    qwen.send(user("Once more"))
    await qwen.expect(of_type("system", "init"), what="the second system/init")
    second = await qwen.expect(of_type("result"), what="the second result")
    assert second["usage"]["input_tokens"] == 22 and second["usage"]["output_tokens"] == 14
    assert rig.seen[-1].messages[-2].text == "Hello from the fake model."
    assert await rig.finish(qwen, "plain_text") == 0
    print(f"qwen: initialize answered after {startup_s:.2f} s, first turn {turn_s:.2f} s")
    assert startup_s < DEADLINE_S and turn_s < DEADLINE_S


async def test_shell_permission_allowed(rig: QwenRig) -> None:
    def script(conversation: Conversation) -> Reply:
        done = len(conversation.tool_results)
        if done == 0:
            return shell("printf hi > made.txt && cat made.txt")
        return shell("printf more >> made.txt") if done == 1 else Reply.text("Done.")

    rig.script(script)
    qwen, _init = await started(rig)
    qwen.send(user("Make a file"))
    call = await qwen.expect(has_block("tool_use"), what="the tool_use")
    (tool_use,) = call["message"]["content"]
    ask = await qwen.expect(of_type("control_request", "can_use_tool"), what="can_use_tool")
    assert UUID.match(ask["request_id"])
    assert ask["request"] == {
        "subtype": "can_use_tool",
        "tool_name": "run_shell_command",
        "tool_use_id": tool_use["id"],
        "input": tool_use["input"],
        "permission_suggestions": [
            {"type": "allow", "label": "Allow Command",
             "description": "Execute: printf hi > made.txt && cat made.txt"},
            {"type": "deny", "label": "Deny", "description": "Block this command execution"},
        ],
        "blocked_path": None,
    }  # fmt: skip
    # Claude Code's "always allow" shape: Qwen Code ignores it (it reads only behavior,
    # updatedInput and message).
    rule = {"type": "addRules", "rules": [{"toolName": "run_shell_command"}],
            "behavior": "allow", "destination": "session"}  # fmt: skip
    allow = {"behavior": "allow", "updatedInput": ask["request"]["input"],
             "updatedPermissions": [rule]}  # fmt: skip
    qwen.send(answer(ask, allow))
    result_line = await qwen.expect(has_block("tool_result"), what="the tool result")
    assert result_line["type"] == "user"
    assert result_line["message"]["content"] == [
        {"type": "tool_result", "tool_use_id": tool_use["id"], "is_error": False, "content": "hi"}
    ]
    # The same tool asks again; and a changed updatedInput does not change what runs.
    again = await qwen.expect(of_type("control_request", "can_use_tool"), what="second ask")
    swapped = {"command": "printf swapped > swapped.txt", "description": "swapped"}
    qwen.send(answer(again, {"behavior": "allow", "updatedInput": swapped}))
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["subtype"] == "success" and result["num_turns"] == 3
    assert (rig.cwd / "made.txt").read_text() == "himore"
    assert not (rig.cwd / "swapped.txt").exists()
    # The model got the real tool's output, in Qwen Code's own words.
    first = rig.seen[1].tool_results[-1]
    assert first.call_id == tool_use["id"]
    assert first.content.startswith("Command: printf hi > made.txt && cat made.txt\n")
    assert "Output: hi\n" in first.content and "Exit Code: 0" in first.content
    assert await rig.finish(qwen, "permission_allow") == 0


async def test_shell_permission_denied(rig: QwenRig) -> None:
    rig.script(lambda c: Reply.text("Understood.") if c.tool_results else shell("touch no.txt"))
    qwen, _init = await started(rig)
    qwen.send(user("Make a file"))
    ask = await qwen.expect(of_type("control_request", "can_use_tool"), what="can_use_tool")
    qwen.send(answer(ask, {"behavior": "deny", "message": "Not today, thanks"}))
    denied = await qwen.expect(has_block("tool_result"), what="the tool result")
    (block,) = denied["message"]["content"]
    assert block["is_error"] is True
    assert block["content"] == "[Operation Cancelled] Reason: Not today, thanks"
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["permission_denials"] == []  # a host's deny is not listed there
    assert not (rig.cwd / "no.txt").exists()
    assert rig.seen[-1].tool_results[-1].content == block["content"]
    assert await rig.finish(qwen, "permission_deny") == 0


async def test_interrupt_mid_turn(rig: QwenRig) -> None:
    rig.script(lambda c: Reply.text("Second.") if c.mentions("second") else Reply((Stall("Part"),)))
    qwen, _init = await started(rig)
    qwen.send(user("first"))
    await until(lambda: rig.server.gate.stalled == 1, "the held stream")
    qwen.send(control("req_int", "interrupt"))
    ack = await qwen.expect(of_type("control_response"), what="the interrupt's answer")
    assert ack["response"] == {"subtype": "success", "request_id": "req_int",
                               "response": {"subtype": "interrupt"}}  # fmt: skip
    partial = await qwen.expect(of_type("assistant"), what="the partial text")
    assert partial["message"]["content"] == [{"type": "text", "text": "Part"}]
    assert "aborted" not in partial
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["subtype"] == "error_during_execution" and result["is_error"] is True
    assert result["error"] == {"message": "Operation cancelled."}
    assert "result" not in result and "terminal_reason" not in result
    await until(lambda: len(rig.server.seen.dropped) == 1, "a dropped stream")
    # Still alive: the next message is a normal turn, with the partial text in its history.
    qwen.send(user("second"))
    after = await qwen.expect(of_type("result"), what="the next result")
    assert after["subtype"] == "success" and after["result"] == "Second."
    assert [m.text for m in rig.seen[-1].messages if m.role == "assistant"] == ["Part"]
    assert await rig.finish(qwen, "interrupt") == 0


async def test_interrupt_while_asking(rig: QwenRig) -> None:
    rig.script(lambda c: Reply.text("Noted.") if c.mentions("next") else shell("touch x.txt"))
    qwen, _init = await started(rig)
    qwen.send(user("Make a file"))
    ask = await qwen.expect(of_type("control_request", "can_use_tool"), what="can_use_tool")
    qwen.send(control("req_int", "interrupt"))
    cancelled = await qwen.expect(has_block("tool_result"), what="the cancelled tool")
    (block,) = cancelled["message"]["content"]
    assert block["is_error"] is True
    assert block["content"] == "[Operation Cancelled] Reason: Error: Request aborted"
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["subtype"] == "error_during_execution"
    # A late answer is ignored without a word; Qwen Code never sends control_cancel_request.
    qwen.send(answer(ask, {"behavior": "allow", "updatedInput": ask["request"]["input"]}))
    qwen.send(user("next"))
    await qwen.expect(of_type("result"), what="the next result")
    assert not (rig.cwd / "x.txt").exists()
    assert "control_cancel_request" not in qwen.types()
    assert (
        rig.seen[-1].tool_results[-1].content.startswith("Tool execution result was not recorded")
    )
    assert await rig.finish(qwen, "interrupt_permission") == 0


@pytest.mark.parametrize("configured", [True, False], ids=["settings", "no-settings"])
async def test_without_api_key(rig: QwenRig, configured: bool) -> None:
    if not configured:
        (rig.home / ".qwen" / "settings.json").unlink()
    began = time.monotonic()
    qwen = await rig.start("--approval-mode", "default", key=False)
    qwen.send(control("req_init", "initialize", hooks=None))
    result = await qwen.expect(lambda _line: True, timeout_s=DEADLINE_S, what="the first line")
    assert result["type"] == "result" and result["subtype"] == "error_during_execution"
    assert result["is_error"] is True and result["num_turns"] == 0
    expected = (
        "Missing API key for OpenAI-compatible auth. Set settings.security.auth.apiKey, "
        "or set the 'OPENAI_API_KEY' environment variable."
        if configured
        else "No auth type is selected. Please configure an auth type (e.g. via settings or "
        "`--auth-type`) before running in non-interactive mode."
    )
    assert result["error"] == {"message": expected}
    # It exits by itself, stdin still open, without answering initialize or asking the model.
    assert await qwen.wait_exit(DEADLINE_S) == 1
    print(f"qwen without a key: exit 1 after {time.monotonic() - began:.2f} s")
    assert qwen.types() == ["result/error_during_execution"]
    assert rig.server.requests == []
    await rig.finish(qwen, "no_key" if configured else "no_auth")


@pytest.mark.parametrize("flag", ["--resume", "--continue"])
async def test_resume(rig: QwenRig, flag: str) -> None:
    rig.script(lambda c: Reply.text("Answered: " + c.last_user_text.splitlines()[-1]))
    qwen, init = await started(rig)
    qwen.send(user("Remember PAPAYA"))
    first = await qwen.expect(of_type("result"), what="the first result")
    assert await rig.finish(qwen, f"{flag[2:]}_before") == 0
    session_id = first["session_id"]
    assert session_id == init["session_id"]
    chats = list((rig.home / ".qwen" / "projects").glob(f"*/chats/{session_id}.jsonl"))
    assert len(chats) == 1  # ~/.qwen/projects/<cwd with / as ->/chats/<session id>.jsonl

    args = [flag, session_id] if flag == "--resume" else [flag]
    qwen, init = await started(rig, *args)
    assert init["session_id"] == session_id
    qwen.send(user("What was the word?"))
    system = await qwen.expect(of_type("system", "init"), what="system/init")
    assert system["session_id"] == session_id
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["session_id"] == session_id
    assert result["usage"]["input_tokens"] == 22  # the running total survives the restart
    texts = [m.text.splitlines()[-1] for m in rig.seen[-1].messages if m.role != "system"]
    assert texts == ["Remember PAPAYA", "Answered: Remember PAPAYA", "What was the word?"]
    assert await rig.finish(qwen, flag[2:]) == 0


async def test_can_use_tool_timeout(rig: QwenRig) -> None:
    rig.script(lambda c: Reply.text("Gave up.") if c.tool_results else shell("touch late.txt"))
    qwen, _init = await started(rig, timeout={"canUseTool": 2000})
    qwen.send(user("Make a file"))
    ask = await qwen.expect(of_type("control_request", "can_use_tool"), what="can_use_tool")
    asked = time.monotonic()
    gave_up = await qwen.expect(lambda _line: True, what="what follows the silence")
    waited_s = time.monotonic() - asked
    assert gave_up["type"] == "user"  # no control_cancel_request
    (block,) = gave_up["message"]["content"]
    assert block["is_error"] is True
    assert block["content"] == "[Operation Cancelled] Reason: Error: Control request timeout"
    assert 1.5 < waited_s < 30, waited_s
    result = await qwen.expect(of_type("result"), what="the result")
    assert result["subtype"] == "success" and result["result"] == "Gave up."
    # A late answer changes nothing and gets no reply; the process takes the next message.
    qwen.send(answer(ask, {"behavior": "allow", "updatedInput": ask["request"]["input"]}))
    qwen.send(user("Still there?"))
    await qwen.expect(of_type("result"), what="the next result")
    assert not (rig.cwd / "late.txt").exists()
    assert "control_response" not in qwen.types(since=2)
    assert await rig.finish(qwen, "permission_timeout") == 0


MODES = {  # name: (arguments, the tools that asked, the files made)
    "default": ("default", ["write_file", "run_shell_command"], ["s.txt", "w.txt"]),
    "auto_edit": ("auto-edit", ["run_shell_command"], ["s.txt", "w.txt"]),
    "yolo": ("yolo", [], ["s.txt", "w.txt"]),
    "plan": ("plan", [], []),
    "auto": ("auto", [], ["s.txt", "w.txt"]),  # the default: the shell goes to a classifier
    "allowed_tools": ("default --allowed-tools Bash --model other-model", ["write_file"],
                      ["s.txt", "w.txt"]),
}  # fmt: skip


def asks_or_ends(line: Line) -> bool:
    return line["type"] in ("control_request", "result")


@pytest.mark.parametrize("name", list(MODES))
async def test_approval_modes(rig: QwenRig, name: str) -> None:
    def script(conversation: Conversation) -> Reply:
        done = len(conversation.tool_results)
        if done == 0:
            return Reply.tool("write_file", {"file_path": str(rig.cwd / "w.txt"), "content": "w"})
        return shell("printf s > s.txt") if done == 1 else Reply.text("Both tried.")

    rig.script(script)
    mode, *more = MODES[name][0].split()
    qwen = await rig.start("--approval-mode", mode, *more)
    qwen.send(control("req_init", "initialize", hooks=None))
    qwen.send(user("Write, then run"))
    asked = []
    while (line := await qwen.expect(asks_or_ends))["type"] == "control_request":
        asked.append(line["request"]["tool_name"])
        qwen.send(answer(line, {"behavior": "allow", "updatedInput": line["request"]["input"]}))
    assert (asked, sorted(p.name for p in rig.cwd.iterdir())) == MODES[name][1:]
    system = next(x for x in qwen.lines if x.get("subtype") == "init")
    model = "other-model" if "--model" in more else MODEL
    assert (system["permission_mode"], system["model"]) == (mode, model)
    assert {body["model"] for body in rig.main_bodies()} == {model}
    side = rig.server.seen.side
    if mode == "auto":  # the shell command was put to the model-side classifier first
        (index,) = side
        body = rig.server.requests[index].body
        assert [t["function"]["name"] for t in body["tools"]] == ["respond_in_schema"]
        assert "security classifier" in body["messages"][0]["content"]
    else:
        assert side == []
    if mode == "plan":
        assert rig.seen[-1].tool_results[0].content.startswith("Tool blocked by plan mode")
    assert await rig.finish(qwen, f"mode_{name}") == 0


async def test_other_control_requests(rig: QwenRig) -> None:
    rig.script(lambda c: Reply.text("Ran.") if c.tool_results else shell("touch y.txt"))
    qwen, init = await started(rig, "--session-id", "123e4567-e89b-42d3-a456-426614174000")
    assert init["session_id"] == "123e4567-e89b-42d3-a456-426614174000"
    qwen.send(control("req_bad_mode", "set_permission_mode", mode="bogus"))
    qwen.send(control("req_unknown", "no_such_request"))
    answers = [await qwen.expect(of_type("control_response")) for _ in range(2)]
    by_id = {a["response"]["request_id"]: a["response"] for a in answers}
    assert by_id["req_bad_mode"] == {"subtype": "error", "request_id": "req_bad_mode",
        "error": "Invalid permission mode: bogus. Valid values are: plan, default, "
                 "auto-edit, auto, yolo"}  # fmt: skip
    assert by_id["req_unknown"]["error"] == "Unknown control request subtype: no_such_request"
    qwen.send(control("req_yolo", "set_permission_mode", mode="yolo"))
    switched = await qwen.expect(of_type("control_response"))
    assert switched["response"]["response"] == {"status": "updated", "mode": "yolo"}
    qwen.send(user("Make a file"))
    system = await qwen.expect(of_type("system", "init"))
    assert system["permission_mode"] == "yolo"
    await qwen.expect(of_type("result"))
    assert (rig.cwd / "y.txt").exists() and "control_request/can_use_tool" not in qwen.types()
    assert await rig.finish(qwen, "set_permission_mode") == 0


async def test_bad_arguments_exit_at_once(rig: QwenRig) -> None:
    qwen = await rig.start("--approval-mode", "bogus")
    assert await qwen.wait_exit(DEADLINE_S) == 1
    await qwen.close()
    assert 'Argument: approval-mode, Given: "bogus"' in qwen.stderr.decode()
    qwen = await rig.start("--session-id", "not-a-uuid")
    assert await qwen.wait_exit(DEADLINE_S) == 1
    await qwen.close()
    assert 'Invalid --session-id: "not-a-uuid". Must be a valid UUID' in qwen.stderr.decode()
