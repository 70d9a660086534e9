"""Claude Code workers end to end: a web client starts one through the gateway, the agent
runs it, and the watcher sees typed output, permission prompts that resolve once, turn
results with usage and cost, interrupts, follow-ups and resumed conversations.

The `claude` here is our fake (`tests/fixtures/bin/claude`): it speaks the real CLI's
protocol, replays the shapes of recorded real sessions, refuses any host line the real
one would not take (so adapter mistakes fail these tests), and records what it was sent.
`test_claude_cli.py` drives the real CLI through the same path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.client import Client
from tests.support.ai import FAKE_TOOLS, start_ai, turn_text
from tests.support.running import PASSWORD, Running

pytestmark = [pytest.mark.sqlite_only, FAKE_TOOLS]


async def test_a_plain_answer_reaches_the_watcher_typed_with_usage_and_cost(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        agents = (await client.ok("agents:list", {}))["agents"]
        tools = {t["name"]: t.get("version") for t in agents[0]["tools"]}
        assert tools["claude"] == "2.1.332" and "custom" in tools
        started, record = await start_ai(client, running.agent_id, tmp_path, "scenario: plain")
        sid = started["sessionId"]
        result = await client.wait_for_event(
            "worker:output", lambda d: d["type"] == "result" and d["sessionId"] == sid
        )
        assert result["details"]["isError"] is False
        assert result["usage"]["inputTokens"] > 0 and result["usage"]["costUsd"] > 0
        assert result["stats"]["durationMs"] >= 0 and result["stats"]["turns"] >= 1
        types = [d["type"] for n, d in client.session_events(sid) if n == "worker:output"]
        assert types == ["user", "system", "assistant", "result"]
        assert turn_text(client, sid, "assistant") == ["Hello from the fake Claude."]
        system = next(
            d
            for n, d in client.session_events(sid)
            if n == "worker:output" and d["type"] == "system"
        )
        session_id = system["details"]["workerSessionId"]
        assert session_id and system["details"]["model"]

        # A follow-up is the next turn of the same worker.
        await client.ok("worker:input", {"taskId": started["taskId"], "input": "and again"})
        await client.wait_for_event(
            "worker:output", lambda d: d["type"] == "result" and "and again" in d["content"]
        )
        task = await running.task(started["taskId"])
        assert task["status"] == "running" and task["workerSessionId"] == session_id
        results = [
            d
            for n, d in client.session_events(sid)
            if n == "worker:output" and d["type"] == "result"
        ]
        assert task["usage"]["inputTokens"] == sum(r["usage"]["inputTokens"] for r in results)
        assert task["usage"]["costUsd"] == pytest.approx(
            sum(r["usage"]["costUsd"] for r in results)
        )

        # End of input: the CLI finishes and the task completes.
        await client.ok("worker:input", {"taskId": started["taskId"], "eof": True})
        status = await client.wait_for_event(
            "worker:status", lambda d: d["sessionId"] == sid and d["status"] == "completed"
        )
        assert status["taskId"] == started["taskId"]
        done = await client.wait_for_event("task:result", lambda d: d["sessionId"] == sid)
        assert done["success"] is True and done["result"]["workerSessionId"] == session_id
        assert done["resourceUsage"]["maxRssBytes"] > 0
        # The host's first line was initialize, then the prompt, exactly as the CLI wants.
        received = record.received()
        assert received[0]["request"]["subtype"] == "initialize"
        assert received[1]["message"]["content"] == "scenario: plain"
    finally:
        await client.close()


async def test_several_tool_uses_and_their_results(running: Running, tmp_path: Path) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: tools")
        sid = started["sessionId"]
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        events = [d for n, d in client.session_events(sid) if n == "worker:output"]
        calls = [d for d in events if d["type"] == "tool"]
        results = [d for d in events if d["type"] == "tool-result"]
        assert [c["details"]["input"]["command"] for c in calls] == ["pwd", "ls -a"]
        assert [c["content"] for c in calls] == ["Bash: pwd", "Bash: ls -a"]
        assert [r["details"]["toolUseId"] for r in results] == [
            c["details"]["toolUseId"] for c in calls
        ]
        assert results[0]["content"] == str(tmp_path) and not results[0]["details"]["isError"]
    finally:
        await client.close()


async def test_an_error_result_ends_the_task_with_the_tools_own_message(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: error")
        sid = started["sessionId"]
        result = await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        assert result["details"]["isError"] is True
        assert result["content"] == "Not logged in · Please run /login"
        status = await client.wait_for_event(
            "worker:status", lambda d: d["sessionId"] == sid and d["status"] == "error"
        )
        assert status["message"] == "Not logged in · Please run /login"
        task = await running.task(started["taskId"])
        assert task["status"] == "error" and task["error"] == "Not logged in · Please run /login"
    finally:
        await client.close()


async def test_a_crash_mid_turn_ends_the_task_as_an_error(running: Running, tmp_path: Path) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: crash")
        sid = started["sessionId"]
        status = await client.wait_for_event(
            "worker:status", lambda d: d["sessionId"] == sid and d["status"] == "error"
        )
        assert "middle of a turn" in status["message"] and "code 2" in status["message"]
        assert turn_text(client, sid, "assistant") == ["Starting on it"]
        stderr = [d["data"] for n, d in client.session_events(sid) if n == "task:stream"]
        assert "fake claude: crashing mid-turn on purpose" in stderr
    finally:
        await client.close()


async def test_a_line_over_one_mebibyte_arrives_whole_in_parts(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: big")
        sid = started["sessionId"]
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        parts = [
            d
            for n, d in client.session_events(sid)
            if n == "worker:output" and d["type"] == "assistant"
        ]
        assert len(parts) > 1
        assert [p["details"]["part"] for p in parts] == list(range(1, len(parts) + 1))
        assert "".join(p["content"] for p in parts) == "big:" + "0123456789abcdef" * 80 * 1024
        result = next(
            d
            for n, d in client.session_events(sid)
            if n == "worker:output" and d["type"] == "result"
        )
        assert len(result["content"].encode()) <= 64 * 1024  # the result's copy is cut
    finally:
        await client.close()


async def test_noise_lines_do_not_stop_the_worker(running: Running, tmp_path: Path) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: noise")
        sid = started["sessionId"]
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        logs = [d["data"] for n, d in client.session_events(sid) if n == "task:stream"]
        assert "[fake claude] some log noise that is not JSON" in logs
        assert "{not json either" in logs
        assert turn_text(client, sid, "assistant") == ["Answer among the noise."]
    finally:
        await client.close()


async def test_interrupt_ends_the_turn_and_a_follow_up_continues(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: slow")
        sid, task_id = started["sessionId"], started["taskId"]
        await client.wait_for_event("worker:output", lambda d: d["content"] == "chunk 2 ")
        await client.ok("worker:stop", {"taskId": task_id, "mode": "interrupt"})
        result = await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        assert result["details"]["interrupted"] is True
        await client.ok("worker:input", {"taskId": task_id, "input": "carry on"})
        after = await client.wait_for_event(
            "worker:output", lambda d: d["type"] == "result" and "carry on" in d["content"]
        )
        assert after["details"]["isError"] is False
        assert (await running.task(task_id))["status"] == "running"
        await client.ok("worker:stop", {"taskId": task_id, "mode": "kill"})
        await client.wait_for_event(
            "worker:status", lambda d: d["sessionId"] == sid and d["status"] == "cancelled"
        )
    finally:
        await client.close()


async def test_a_new_task_resumes_the_conversation_by_worker_session_id(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        first, _ = await start_ai(
            client, running.agent_id, tmp_path, "remember the word lighthouse"
        )
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        await client.ok("worker:input", {"taskId": first["taskId"], "eof": True})
        await client.wait_for_event("task:result", lambda d: d["taskId"] == first["taskId"])
        session_id = (await running.task(first["taskId"]))["workerSessionId"]
        assert session_id

        second, record = await start_ai(
            client, running.agent_id, tmp_path, "what was the word?",
            sessionId=first["sessionId"], workerSessionId=session_id,
        )  # fmt: skip
        answer = await client.wait_for_event(
            "worker:output", lambda d: d["type"] == "result" and d["taskId"] == second["taskId"]
        )
        assert "I remember 1 earlier user messages" in answer["content"]
        runs = [e["argv"] for e in record.entries() if "argv" in e]
        assert len(runs) == 2 and f"--resume={session_id}" in runs[1]
        assert (await running.task(second["taskId"]))["workerSessionId"] == session_id
    finally:
        await client.close()


async def test_the_python_client_drives_a_worker_as_the_readme_shows(
    running: Running, tmp_path: Path
) -> None:
    seen: list[str] = []
    async with await Client.login(running.gateway.url, "alice", PASSWORD) as client:
        started = await client.start(
            tool="claude", agent_id=running.agent_id, working_directory=str(tmp_path),
            initial_prompt="scenario: permission",
            env={"HOME": str(tmp_path), "ANTHROPIC_API_KEY": "sk-test-not-a-secret"},
        )  # fmt: skip
        await client.join(started["sessionId"])
        async for event, data in client.events():
            if event == "worker:output":
                seen.append(data["type"])
            elif event == "worker:permission":
                resolved = await client.answer(started["taskId"], data["permissionId"], "allow")
                assert resolved["status"] == "allowed"
            if event == "worker:output" and data["type"] == "result":
                await client.send_input(started["taskId"], "", eof=True)
            elif event == "task:result":
                assert data["success"] is True
                break
    assert seen == ["user", "system", "tool", "tool-result", "assistant", "result"]
