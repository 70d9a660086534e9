"""Facts about the real Claude Code CLI in stream-json mode, with only the model faked.

Each test starts the installed `claude` (see `tests.support.tools.tool_path`) against the
fake Anthropic API, HOME in a temporary folder, every other connection sent to a proxy that
refuses it (and the test fails if the CLI tried one). They are skipped when the CLI is not
installed. `ORCHESTRA_RECORD_TRANSCRIPTS=<folder>` saves what each CLI printed and what the
host sent (see tests/fixtures/transcripts/record_claude.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fixtures.model_api import (
    Conversation,
    Reply,
    Stall,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
)
from tests.support.processes import wait_for
from tests.support.tools import (
    ClaudeRig,
    Line,
    allow_tool,
    claude_rig,
    control_request,
    deny_tool,
    tool_path,
    user_message,
)

CLAUDE = tool_path("claude")
pytestmark = pytest.mark.skipif(CLAUDE is None, reason="the claude CLI is not installed")

KEY = "sk-ant-api03-orchestra-fake-test-key-0000"
RECORD = os.environ.get("ORCHESTRA_RECORD_TRANSCRIPTS")


def is_type(kind: str, subtype: str | None = None) -> Callable[[Line], bool]:
    """`type` is kind and, if given, `subtype` (or the control request's subtype) too."""

    def fits(line: Line) -> bool:
        sub = line.get("subtype") or (line.get("request") or {}).get("subtype")
        return line.get("type") == kind and subtype in (None, sub)

    return fits


def after_tool(conversation: Conversation) -> ToolResult | None:
    """The tool result the last turn carries, if it carries one."""
    last = conversation.last_message
    found = [b for b in last.blocks if isinstance(b, ToolResult)] if last else []
    return found[-1] if found else None


def bash_then_echo(command: str) -> Callable[[Conversation], Reply]:
    """The model runs `command` with Bash, then repeats the tool result."""

    def script(conversation: Conversation) -> Reply:
        result = after_tool(conversation)
        if result is not None:
            return Reply.text(f"tool said: {result.content}")
        return Reply.tool("Bash", {"command": command, "description": "test command"})

    return script


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ClaudeRig]:
    assert CLAUDE is not None
    record = Path(RECORD) if RECORD else None
    async with claude_rig(CLAUDE, tmp_path, KEY, record_to=record) as rig:
        yield rig


async def test_initialize_and_plain_answer(rig: ClaudeRig) -> None:
    cli = await rig.claude()
    init_response = cli.lines[0]["response"]
    assert init_response["subtype"] == "success" and init_response["request_id"] == "req_init"
    assert {"commands", "models", "pid", "current_permission_mode"} <= set(
        init_response["response"]
    )
    cli.send(user_message("say hello"))
    init = await cli.expect(is_type("system", "init"))
    assert init["tools"] and "Bash" in init["tools"] and init["permissionMode"] == "default"
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY" and init["claude_code_version"]
    text = await cli.expect(is_type("assistant"))
    assert text["message"]["content"] == [{"type": "text", "text": "hello from the fake model"}]
    assert text["session_id"] == init["session_id"]
    result = await cli.expect(is_type("result"))
    assert (result["subtype"], result["is_error"], result["num_turns"]) == ("success", False, 1)
    assert result["result"] == "hello from the fake model"
    assert result["usage"]["input_tokens"] == 11 and result["usage"]["output_tokens"] == 7
    assert result["total_cost_usd"] > 0 and result["duration_ms"] >= 0
    per_turn = result["model_usage_since_last_result"][init["model"]]["costUSD"]
    assert per_turn == result["total_cost_usd"]
    assert result["session_id"] == init["session_id"]
    # One model request, nothing else: no probe, no side request (title, quota, ...).
    assert [(r.method, r.path) for r in rig.server.requests] == [("POST", "/v1/messages")]
    request = rig.server.requests[-1]
    assert request.headers.get("x-api-key") == KEY and request.body["model"] == init["model"]
    assert request.headers["X-Claude-Code-Session-Id"] == init["session_id"]
    assert request.body["stream"] is True and request.body["tools"]
    assert rig.last_conversation().mentions("say hello")
    assert await cli.close(name="plain") == 0


async def test_bash_allowed_with_updated_input_runs_for_real(rig: ClaudeRig) -> None:
    call = ToolCall("Bash", {"command": "echo hi > out.txt", "description": "write hi"})

    def script(conversation: Conversation) -> Reply:
        result = after_tool(conversation)
        if result is not None:
            return Reply.text(f"tool said: {result.content}")
        return Reply((Thinking("I should write the file"), Text("Writing it."), call))

    rig.server.script = script
    cli = await rig.claude()
    cli.send(user_message("write hi to out.txt"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    request = ask["request"]
    assert request["tool_name"] == "Bash" and request["display_name"] == "Bash"
    assert request["input"] == call.input and request["tool_use_id"] == call.id
    assert request["description"] == "write hi"
    assert request["blocked_path"] == str(rig.cwd / "out.txt")
    kinds = {s["type"] for s in request["permission_suggestions"]}
    assert kinds == {"addRules", "addDirectories"}
    cli.send(allow_tool(ask, {"command": "echo allowed > out.txt", "description": "write"}))
    tool_result = await cli.expect(is_type("user"))
    block = tool_result["message"]["content"][0]
    assert block["tool_use_id"] == call.id and block["is_error"] is False
    result = await cli.expect(is_type("result"))
    assert result["subtype"] == "success" and result["num_turns"] == 2
    assert (rig.cwd / "out.txt").read_text() == "allowed\n"
    seen = rig.last_conversation().tool_results
    assert seen == [ToolResult(call.id, "(Bash completed with no output)", False)]
    kinds_printed = cli.types(1)
    assert kinds_printed.count("assistant") == 4  # one line per content block, then the answer
    assert "system/thinking_tokens" in kinds_printed
    assert await cli.close(name="permission_allow") == 0


async def test_deny_gives_the_model_an_error_result_with_the_message(rig: ClaudeRig) -> None:
    rig.server.script = bash_then_echo("echo hi > out.txt")
    cli = await rig.claude()
    cli.send(user_message("write hi"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    cli.send(deny_tool(ask, "not today"))
    tool_result = await cli.expect(is_type("user"))
    block = tool_result["message"]["content"][0]
    assert (block["content"], block["is_error"]) == ("not today", True)
    result = await cli.expect(is_type("result"))
    assert result["subtype"] == "success" and result["result"] == "tool said: not today"
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"]
    assert rig.last_conversation().tool_results[-1].is_error
    assert not (rig.cwd / "out.txt").exists()
    # With interrupt: true the turn stops there, as an error result.
    cli.send(user_message("write hi again"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    cli.send(deny_tool(ask, "stop now", interrupt=True))
    note = await cli.expect(lambda line: line["type"] == "user" and "text" in str(line))
    assert note["message"]["content"][0]["text"] == "[Request interrupted by user for tool use]"
    result = await cli.expect(is_type("result"))
    assert (result["subtype"], result["is_error"]) == ("error_during_execution", True)
    assert result["terminal_reason"] == "aborted_tools"
    assert await cli.close(name="permission_deny") == 1  # the last result was an error


async def test_interrupt_mid_stream_and_the_next_message(rig: ClaudeRig) -> None:
    def script(conversation: Conversation) -> Reply:
        if "next" in conversation.last_user_text:
            return Reply.text("after the interrupt")
        return Reply((Text("a whole block"), Stall("partial answer")))

    rig.server.script = script
    cli = await rig.claude()
    cli.send(user_message("please stall"))
    await cli.expect(is_type("assistant"), what="the block before the stall")
    await wait_for(lambda: rig.server.gate.stalled == 1, what="the held stream")
    cli.send(control_request("req_int", "interrupt"))
    answer = await cli.expect(is_type("control_response"))
    assert answer["response"] == {
        "subtype": "success", "request_id": "req_int", "response": {"still_queued": []}
    }  # fmt: skip
    partial = await cli.expect(is_type("assistant"))
    assert partial["aborted"] is True
    assert partial["message"]["content"] == [{"type": "text", "text": "partial answer"}]
    note = await cli.expect(is_type("user"))
    assert note["message"]["content"] == [{"type": "text", "text": "[Request interrupted by user]"}]
    result = await cli.expect(is_type("result"))
    assert (result["subtype"], result["is_error"]) == ("error_during_execution", True)
    assert result["terminal_reason"] == "aborted_streaming"
    cli.send(user_message("next message"))
    await cli.expect(is_type("system", "init"))
    result = await cli.expect(is_type("result"))
    assert (result["subtype"], result["result"]) == ("success", "after the interrupt")
    assert rig.last_conversation().mentions("[Request interrupted by user]")
    assert await cli.close(name="interrupt") == 0


async def test_interrupt_while_permission_pending_cancels_the_request(rig: ClaudeRig) -> None:
    rig.server.script = bash_then_echo('python3 -c "print(6*7)"')
    cli = await rig.claude()
    cli.send(user_message("compute"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    cli.send(control_request("req_int", "interrupt"))
    cancel = await cli.expect(is_type("control_cancel_request"))
    assert cancel == {"type": "control_cancel_request", "request_id": ask["request_id"]}
    await cli.expect(is_type("control_response"))  # the interrupt's answer comes after
    block = (await cli.expect(is_type("user")))["message"]["content"][0]
    assert block["is_error"] is True and "doesn't want to proceed" in block["content"]
    result = await cli.expect(is_type("result"))
    assert result["terminal_reason"] == "aborted_tools" and result["is_error"] is True
    cli.send(allow_tool(ask))  # too late: ignored without a word
    cli.send(user_message("next"))
    result = await cli.expect(is_type("result"))
    assert result["subtype"] == "success" and "doesn't want to proceed" in result["result"]
    assert [t for t in cli.types() if t == "control_request/can_use_tool"] == [
        "control_request/can_use_tool"
    ]
    assert await cli.close(name="cancel") == 0


async def test_not_logged_in_without_a_key(rig: ClaudeRig) -> None:
    cli = await rig.claude(key=False, api=False)
    for text in ("hello", "hello again"):
        cli.send(user_message(text))
        await cli.expect(is_type("system", "init"))
        message = await cli.expect(is_type("assistant"))
        assert message["error"] == "authentication_failed" and message["is_api_error_message"]
        assert message["message"]["model"] == "<synthetic>"
        result = await cli.expect(is_type("result"))
        assert (result["subtype"], result["is_error"]) == ("success", True)
        assert result["result"] == "Not logged in · Please run /login"
        assert result["terminal_reason"] == "api_error" and result["total_cost_usd"] == 0
    assert cli.process.returncode is None  # alive while stdin is open
    assert await cli.close(name="not_logged_in") == 1
    assert rig.server.requests == []


async def test_resume_sends_the_earlier_conversation(rig: ClaudeRig) -> None:
    rig.server.script = lambda c: Reply.text(f"I see {len(c.user_texts)} user messages")
    first = await rig.claude()
    first.send(user_message("remember the word pineapple"))
    result = await first.expect(is_type("result"))
    session_id, cost = result["session_id"], result["total_cost_usd"]
    assert await first.close(name="resume_first") == 0
    transcripts = list((rig.home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
    assert len(transcripts) == 1
    second = await rig.claude(f"--resume={session_id}")
    second.send(user_message("what was the word?"))
    init = await second.expect(is_type("system", "init"))
    assert init["session_id"] == session_id
    result = await second.expect(is_type("result"))
    assert result["session_id"] == session_id and result["result"] == "I see 2 user messages"
    assert result["total_cost_usd"] == pytest.approx(2 * cost)  # the running total goes on
    conversation = rig.last_conversation()
    assert conversation.mentions("pineapple") and conversation.mentions("what was the word?")
    assert [m.role for m in conversation.messages] == ["system", "user", "assistant", "user"]
    second.process.kill()  # right after a result: the conversation survives, the cost not
    await second.close(name="resume_second")
    third = await rig.claude(f"--resume={session_id}")
    third.send(user_message("and now?"))
    result = await third.expect(is_type("result"))
    assert result["result"] == "I see 3 user messages"
    # The running cost is saved at a normal exit only: the killed process's turn is lost.
    assert result["total_cost_usd"] == pytest.approx(2 * cost)
    assert await third.close(name="resume_third") == 0
    unknown = await rig.claude("--resume=00000000-0000-4000-8000-000000000000", initialize=False)
    await unknown.expect(is_type("result", "error_during_execution"))
    assert await unknown.wait_exit() == 1  # at once, without waiting for stdin
    await unknown.close(name="resume_unknown")
    assert unknown.types() == ["result/error_during_execution"]
    assert b"No conversation found with session ID" in unknown.stderr


async def test_updated_permissions_for_the_session_stop_the_asking(rig: ClaudeRig) -> None:
    command = {"now": 'python3 -c "print(6*7)"'}
    rig.server.script = lambda c: bash_then_echo(command["now"])(c)
    cli = await rig.claude()
    cli.send(user_message("compute"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    suggestions = ask["request"]["permission_suggestions"]
    assert suggestions == [{
        "type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": command["now"]}],
        "behavior": "allow", "destination": "localSettings",
    }]  # fmt: skip
    session_only = [s | {"destination": "session"} for s in suggestions]
    cli.send(allow_tool(ask, updatedPermissions=session_only))
    await cli.expect(is_type("result"))
    mark = len(cli.lines)
    cli.send(user_message("compute again"))
    ran = await cli.expect(is_type("user"))
    decision = ran["tool_result_meta"][0]["permission_decision"]
    assert decision["source"] == "config" and ran["message"]["content"][0]["content"] == "42"
    assert (await cli.expect(is_type("result")))["result"] == "tool said: 42"
    assert "control_request/can_use_tool" not in cli.types(mark)  # not asked again
    assert not (rig.cwd / ".claude" / "settings.local.json").exists()
    # The suggestion as given (localSettings) writes the rule into the project's settings.
    command["now"] = 'python3 -c "print(7*8)"'
    cli.send(user_message("compute something else"))
    ask = await cli.expect(is_type("control_request", "can_use_tool"))
    cli.send(allow_tool(ask, updatedPermissions=ask["request"]["permission_suggestions"]))
    await cli.expect(is_type("result"))
    settings = json.loads((rig.cwd / ".claude" / "settings.local.json").read_text())
    assert settings["permissions"]["allow"] == ['Bash(python3 -c "print\\(7*8\\)")']
    assert await cli.close(name="permission_session") == 0


@pytest.mark.parametrize(
    ("mode", "shown"),
    [("default", "default"), ("acceptEdits", "acceptEdits"), ("plan", "plan"),
     ("dontAsk", "dontAsk"), ("auto", "default")],
)  # fmt: skip
async def test_permission_modes_and_model(rig: ClaudeRig, mode: str, shown: str) -> None:
    rig.server.script = bash_then_echo('python3 -c "print(6*7)"')
    cli = await rig.claude("--permission-mode", mode, "--model", "claude-sonnet-4-5")
    cli.send(user_message("compute"))
    init = await cli.expect(is_type("system", "init"))
    assert (init["permissionMode"], init["model"]) == (shown, "claude-sonnet-4-5")
    line = await cli.expect(lambda x: x["type"] in ("control_request", "result"))
    assert rig.model_requests()[-1]["model"] == "claude-sonnet-4-5"
    if mode == "dontAsk":  # denies whatever would need asking
        assert "don't ask mode" in line["result"]
    else:
        assert line["request"]["tool_name"] == "Bash"
        cli.send(allow_tool(line))
        await cli.expect(is_type("result"))


async def test_bad_modes_bypass_and_allowed_tools(rig: ClaudeRig) -> None:
    bogus = await rig.claude("--permission-mode", "bogus", initialize=False)
    assert await bogus.wait_exit() == 1
    await bogus.close()
    assert bogus.lines == [] and b"Allowed choices are acceptEdits, auto" in bogus.stderr
    if os.geteuid() == 0:  # refused as root, unless IS_SANDBOX=1
        root = await rig.claude("--permission-mode", "bypassPermissions", initialize=False)
        assert await root.wait_exit() == 1
        await root.close()
        assert b"cannot be used with root/sudo privileges" in root.stderr
    rig.server.script = bash_then_echo('python3 -c "print(6*7)"')
    sandboxed = await rig.claude("--permission-mode", "bypassPermissions", IS_SANDBOX="1")
    trusting = await rig.claude("--allowedTools", "Read,Bash(python3:*)")
    for cli in (sandboxed, trusting):  # neither asks
        cli.send(user_message("compute"))
        assert (await cli.expect(is_type("result")))["result"] == "tool said: 42"
        assert "control_request/can_use_tool" not in cli.types()
    assert await trusting.close(name="allowed_tools") == 0


async def test_messages_sent_during_a_turn_are_merged_into_one_turn(rig: ClaudeRig) -> None:
    rig.server.script = lambda c: Reply.text(f"answer to {c.last_user_text.split('>')[-1]!r}")
    cli = await rig.claude()
    for text in ("first", "second", "third"):
        cli.send(user_message(text))
    first = await cli.expect(is_type("result"))
    second = await cli.expect(is_type("result"))
    assert (first["result"], second["result"]) == (
        "answer to '\\n\\nfirst'", "answer to 'second\\nthird'"
    )  # fmt: skip
    assert len(rig.model_requests()) == 2
    assert await cli.close(name="queued") == 0


async def test_control_requests_and_stdin_closing_while_asked(rig: ClaudeRig) -> None:
    rig.server.script = bash_then_echo('python3 -c "print(6*7)"')
    cli = await rig.claude()
    cli.send(control_request("req_idle", "interrupt"))
    cli.send(control_request("req_mode", "set_permission_mode", mode="acceptEdits"))
    cli.send(control_request("req_bad_mode", "set_permission_mode", mode="bogus"))
    cli.send(control_request("req_unknown", "no_such_thing"))
    answers = [(await cli.expect(is_type("control_response")))["response"] for _ in range(4)]
    assert answers[0]["response"] == {"still_queued": []}
    assert answers[1]["response"] == {"mode": "acceptEdits"}
    assert (answers[2]["subtype"], answers[2]["error_code"]) == ("error", "invalid_mode")
    assert (answers[3]["subtype"], answers[3]["error_code"]) == ("error", "unsupported_request")
    assert answers[3]["error"] == "Unsupported control request subtype: no_such_thing"
    status = next(x for x in cli.lines if x.get("subtype") == "status")
    assert status["permissionMode"] == "acceptEdits"
    cli.send(user_message("compute"))
    await cli.expect(is_type("control_request", "can_use_tool"))
    cli.close_stdin()  # the request fails, the turn still ends with a result
    block = (await cli.expect(is_type("user")))["message"]["content"][0]
    assert block["is_error"] and "Tool permission stream closed" in block["content"]
    await cli.expect(is_type("result"))
    assert await cli.close(name="controls") == 0
