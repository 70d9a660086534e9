"""The real Claude Code CLI driven through Orchestra, with only the model faked.

A web client starts `claude` with an AI config (its API key, and a base URL pointing at
the fake Messages API these tests serve), the agent runs the real CLI, and the watcher
sees its typed output, its permission request, the real Bash tool's result and the turn's
usage and cost. The key set in the AI config reaches the CLI (the fake API sees it) and
nothing else: not Redis, not SQL, not a log, not an event.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestra import redis_client
from tests.fixtures.model_api import Conversation, FakeModelServer, Reply, anthropic
from tests.support.ai import start_ai, turn_text
from tests.support.processes import http
from tests.support.running import Running
from tests.support.tools import CLAUDE_QUIET_ENV, tool_path
from tests.support.web import WebClient

CLAUDE = tool_path("claude")
SECRET = "sk-ant-orchestra-test-1f2e3d4c5b6a"

pytestmark = [
    pytest.mark.skipif(CLAUDE is None, reason="the claude CLI is not installed (.ci/run does)"),
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(
        PATH=f"{CLAUDE.parent if CLAUDE else ''}{os.pathsep}{os.environ.get('PATH', '')}"
    ),
]


def _script(conversation: Conversation) -> Reply:
    if conversation.tool_results:
        return Reply.text(f"done: {conversation.tool_results[-1].content}")
    if conversation.mentions("write the file"):
        return Reply.tool("Bash", {"command": "echo hi > out.txt", "description": "write hi"})
    if conversation.mentions("what was the word"):
        remembered = conversation.mentions("lighthouse")
        return Reply.text("lighthouse" if remembered else "I do not know")
    return Reply.text("hello from the model")


def _model_api() -> FakeModelServer:
    server = FakeModelServer(_script)
    anthropic.install(server)
    return server


async def _ai_config(running: Running, **fields: Any) -> str:
    body = {"name": "fake claude", "tool": "claude", **fields}
    status, answer = await asyncio.to_thread(
        http, "POST", f"{running.gateway.url}/api/ai-configs", body, running.token
    )
    assert status == 201, answer
    return str(answer["aiConfig"]["id"])


async def _start(
    client: WebClient, running: Running, tmp_path: Path, prompt: str, config: str, **fields: Any
) -> dict[str, Any]:
    """Start the real CLI (quiet) with the AI config `config` and join its session."""
    env = CLAUDE_QUIET_ENV | fields.pop("env", {})
    started, _ = await start_ai(
        client, running.agent_id, tmp_path, prompt, aiConfigId=config, env=env, **fields
    )
    return started


async def test_the_real_cli_asks_runs_the_tool_and_reports_usage_and_its_key_stays_secret(
    running: Running, tmp_path: Path
) -> None:
    async with _model_api() as server:
        config = await _ai_config(running, apiKey=SECRET, settings={"baseUrl": server.url})
        client = await running.client()
        try:
            started = await _start(client, running, tmp_path, "please write the file", config)
            sid = started["sessionId"]
            asked = await client.wait_for_event("worker:permission")
            assert asked["tool"] == "Bash" and asked["input"]["command"] == "echo hi > out.txt"
            await client.ok(
                "worker:permission",
                {"taskId": started["taskId"], "permissionId": asked["permissionId"],
                 "decision": "allow"},
            )  # fmt: skip
            result = await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
            assert result["details"]["isError"] is False
            assert result["content"] == "done: (Bash completed with no output)"
            assert (tmp_path / "out.txt").read_text() == "hi\n"  # the real Bash tool ran
            assert result["usage"]["inputTokens"] > 0 and result["usage"]["costUsd"] > 0
            types = [d["type"] for n, d in client.session_events(sid) if n == "worker:output"]
            assert types[:2] == ["user", "system"] and "tool" in types and "tool-result" in types
            await client.ok("worker:input", {"taskId": started["taskId"], "eof": True})
            done = await client.wait_for_event("task:result")
            assert done["success"] is True
            task = await running.task(started["taskId"])
            assert task["status"] == "completed" and task["workerSessionId"]
            assert task["usage"]["costUsd"] == pytest.approx(result["usage"]["costUsd"])

            # The worker had the key: the CLI sent it to the model API.
            sent = {r.headers.get("x-api-key") for r in server.requests if r.method == "POST"}
            assert sent == {SECRET}
            # And nothing else ever held it in the clear.
            assert SECRET not in json.dumps(client.events)
            await _nowhere_in_redis(running, SECRET)
            for path in running.deployment.root.rglob("*"):
                if path.is_file() and not path.is_relative_to(tmp_path / "home"):
                    assert SECRET.encode() not in path.read_bytes(), f"the key is in {path}"
        finally:
            await client.close()


async def test_without_a_key_the_task_ends_with_the_clis_own_error(
    running: Running, tmp_path: Path
) -> None:
    async with _model_api() as server:
        config = await _ai_config(running, settings={"baseUrl": server.url})
        client = await running.client()
        try:
            await _start(client, running, tmp_path, "hello", config, env={"ANTHROPIC_API_KEY": ""})
            result = await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
            assert result["details"]["isError"] is True
            assert result["content"] == "Not logged in · Please run /login"
            status = await client.wait_for_event("worker:status", lambda d: d["status"] == "error")
            assert status["message"] == "Not logged in · Please run /login"
            assert [r for r in server.requests if r.method == "POST"] == []
        finally:
            await client.close()


async def test_a_new_task_resumes_the_real_conversation(running: Running, tmp_path: Path) -> None:
    async with _model_api() as server:
        config = await _ai_config(running, apiKey=SECRET, settings={"baseUrl": server.url})
        client = await running.client()
        try:
            first = await _start(client, running, tmp_path, "the word is lighthouse", config)
            await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
            await client.ok("worker:input", {"taskId": first["taskId"], "eof": True})
            await client.wait_for_event("task:result")
            session_id = (await running.task(first["taskId"]))["workerSessionId"]
            second = await _start(
                client, running, tmp_path, "what was the word?", config,
                sessionId=first["sessionId"], workerSessionId=session_id,
            )  # fmt: skip
            answer = await client.wait_for_event(
                "worker:output", lambda d: d["type"] == "result" and d["taskId"] == second["taskId"]
            )
            assert answer["content"] == "lighthouse"
            assert turn_text(client, first["sessionId"], "system")  # the session announced
            assert (await running.task(second["taskId"]))["workerSessionId"] == session_id
        finally:
            await client.close()


async def _nowhere_in_redis(running: Running, secret: str) -> None:
    """Every value of every key of the deployment's Redis, searched for `secret`."""
    redis = redis_client.connect(running.deployment.redis_url)
    try:
        async for key in redis.scan_iter(count=1000):
            kind = await redis.type(key)
            if kind == "string":
                values: Any = await redis.get(key)
            elif kind == "hash":
                values = await redis.hgetall(key)
            elif kind == "stream":
                values = await redis.xrange(key)
            elif kind == "list":
                values = await redis.lrange(key, 0, -1)
            elif kind == "set":
                values = await redis.smembers(key)
            else:
                values = await redis.zrange(key, 0, -1, withscores=True)
            assert secret not in f"{key} {values}", f"the key is in Redis at {key}"
    finally:
        await redis.aclose()
