"""Qwen Code, Codex and Gemini CLI, the real ones, driven through Orchestra with only the
model faked: each through its own OpenAI-compatible (or Gemini) base URL, set in an AI
config together with the API key that the agent receives sealed.

Qwen Code and Codex ask before a shell command: the request reaches the watcher, the
answer reaches the tool, the command runs in the task's folder. Gemini CLI cannot ask when
headless: the watcher is told so, and its approval mode decides.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.fixtures.model_api import (
    Conversation,
    FakeModelServer,
    Reply,
    Script,
    openai_chat,
    openai_responses,
)
from tests.fixtures.model_api import gemini as gemini_api
from tests.support.ai import start_ai
from tests.support.processes import http
from tests.support.running import Running
from tests.support.tools import DEFAULT_TOOLS_BIN, tool_path

SECRET = "sk-orchestra-test-9a8b7c6d5e4f"
_BIN = Path(os.environ.get("ORCHESTRA_TEST_TOOLS_BIN") or DEFAULT_TOOLS_BIN)

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(PATH=f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"),
]


def _needs(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        tool_path(name) is None, reason=f"the {name} CLI is not installed (.ci/run does)"
    )


def _shell_script(tool: str, argument: str) -> Script:
    """A model that runs `echo hi > out.txt` with `tool`, then says what came back."""

    def script(conversation: Conversation) -> Reply:
        if conversation.tool_results:
            return Reply.text("done")
        if conversation.mentions("write the file"):
            return Reply.tool(tool, {argument: "echo hi > out.txt"})
        return Reply.text("hello from the model")

    return script


def _model_api(script: Script, dialect: ModuleType) -> FakeModelServer:
    server = FakeModelServer(script)
    dialect.install(server)
    return server


def _keys_sent(server: FakeModelServer, header: str) -> set[str | None]:
    """What the CLI sent in `header` (its API key) with each request to the model API."""
    return {r.headers.get(header) for r in server.requests if r.method == "POST"}


async def _ai_config(running: Running, tool: str, base_url: str, **settings: Any) -> str:
    body = {
        "name": f"fake {tool}",
        "tool": tool,
        "model": "fake-model",
        "apiKey": SECRET,
        "settings": {"baseUrl": base_url, **settings},
    }
    status, answer = await asyncio.to_thread(
        http, "POST", f"{running.gateway.url}/api/ai-configs", body, running.token
    )
    assert status == 201, answer
    return str(answer["aiConfig"]["id"])


def _home(tmp_path: Path, folder: str, settings: dict[str, Any]) -> Path:
    """A HOME for the CLI with its settings file."""
    home = tmp_path / "home"
    (home / folder).mkdir(parents=True, exist_ok=True)
    (home / folder / "settings.json").write_text(json.dumps(settings))
    return home


async def _ask_allow_finish(
    running: Running, tmp_path: Path, tool: str, config: str, env: dict[str, str]
) -> dict[str, Any]:
    """Start `tool` asking to write the file, allow the command, end the input; the last
    turn's result item."""
    client = await running.client()
    try:
        started, _ = await start_ai(
            client, running.agent_id, tmp_path, "please write the file",
            tool=tool, aiConfigId=config, env=env,
        )  # fmt: skip
        asked = await client.wait_for_event("worker:permission", timeout_s=120)
        assert "echo hi > out.txt" in json.dumps(asked["input"])
        await client.ok(
            "worker:permission",
            {"taskId": started["taskId"], "permissionId": asked["permissionId"],
             "decision": "allow"},
        )  # fmt: skip
        result = await client.wait_for_event(
            "worker:output", lambda d: d["type"] == "result", timeout_s=120
        )
        assert (tmp_path / "out.txt").read_text() == "hi\n"  # the tool really ran it
        await client.ok("worker:input", {"taskId": started["taskId"], "eof": True})
        done = await client.wait_for_event("task:result", timeout_s=120)
        assert done["success"] is True, done
        task = await running.task(started["taskId"])
        assert task["status"] == "completed" and task["workerSessionId"]
        assert task["usage"]["inputTokens"] > 0
        return dict(result)
    finally:
        await client.close()


@_needs("qwen")
async def test_qwen_code_asks_and_runs_the_command(running: Running, tmp_path: Path) -> None:
    async with _model_api(_shell_script("run_shell_command", "command"), openai_chat) as server:
        config = await _ai_config(running, "qwcoder", f"{server.url}/v1")
        # Quiet settings for a test HOME: no memory agent, no telemetry, no update checks.
        settings = {
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"enableAutoUpdate": False},
            "memory": {"enableManagedAutoMemory": False, "enableManagedAutoDream": False},
        }
        home = _home(tmp_path, ".qwen", settings)
        result = await _ask_allow_finish(running, tmp_path, "qwcoder", config, {"HOME": str(home)})
        assert result["details"]["isError"] is False
        assert _keys_sent(server, "Authorization") == {f"Bearer {SECRET}"}


@_needs("codex")
async def test_codex_asks_and_runs_the_command(running: Running, tmp_path: Path) -> None:
    async with _model_api(_shell_script("exec_command", "cmd"), openai_responses) as server:
        config = await _ai_config(running, "codex", f"{server.url}/v1")
        home = tmp_path / "home"
        (home / ".codex").mkdir(parents=True)
        env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex")}
        result = await _ask_allow_finish(running, tmp_path, "codex", config, env)
        assert result["details"]["isError"] is False
        assert _keys_sent(server, "Authorization") == {f"Bearer {SECRET}"}


@_needs("gemini")
async def test_gemini_says_how_it_decides_and_answers(running: Running, tmp_path: Path) -> None:
    async with _model_api(lambda _c: Reply.text("hello from the model"), gemini_api) as server:
        config = await _ai_config(running, "gemini", server.url, permissionMode="auto_edit")
        home = _home(
            tmp_path, ".gemini", {"security": {"auth": {"selectedType": "gemini-api-key"}}}
        )
        client = await running.client()
        try:
            started, _ = await start_ai(
                client, running.agent_id, tmp_path, "say hello",
                tool="gemini", aiConfigId=config, env={"HOME": str(home)},
            )  # fmt: skip
            note = await client.wait_for_event(
                "worker:status", lambda d: d["status"] == "running" and d.get("message")
            )
            assert "cannot ask" in note["message"] and "auto_edit" in note["message"]
            result = await client.wait_for_event(
                "worker:output", lambda d: d["type"] == "result", timeout_s=120
            )
            assert result["details"]["isError"] is False
            texts = [
                d["content"]
                for n, d in client.session_events(started["sessionId"])
                if n == "worker:output" and d["type"] == "assistant"
            ]
            assert texts == ["hello from the model"]
            await client.ok("worker:input", {"taskId": started["taskId"], "eof": True})
            done = await client.wait_for_event("task:result", timeout_s=120)
            assert done["success"] is True, done
            assert _keys_sent(server, "x-goog-api-key") == {SECRET}
        finally:
            await client.close()
