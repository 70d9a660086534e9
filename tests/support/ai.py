"""End-to-end help for AI workers: start one from a web client, read what the tool got.

The agent daemons of these tests have `tests/fixtures/bin` first on their PATH (the
`FAKE_TOOLS` marker), so `claude`, `codex` and `gemini` are our fakes, which speak the real
protocols and record what they were sent. Each task gets its own HOME (the fakes and the
real CLIs keep their sessions there) through the task's `env`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import FAKE_BIN
from tests.support.web import WebClient

__all__ = ["FAKE_TOOLS", "Recording", "answer_request", "start_ai", "turn_text"]

FAKE_TOOLS = pytest.mark.orchestra_env(PATH=f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
"""Agents find our fake tools before any real one."""


_KEY_VARIABLES = {"claude": "ANTHROPIC_API_KEY"}


class Recording:
    """What a fake tool recorded of one run (FAKE_<TOOL>_RECORD): argv, the names of its
    environment variables, each line it read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def received(self) -> list[dict[str, Any]]:
        """The lines the tool read on its stdin, parsed."""
        lines = []
        for entry in self.entries():
            raw = entry.get("stdin")
            if isinstance(raw, str):
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines

    def answers_to(self, request_id: str) -> list[dict[str, Any]]:
        """Every control_response the tool got for one of its requests."""
        return [
            line["response"]
            for line in self.received()
            if line.get("type") == "control_response"
            and line.get("response", {}).get("request_id") == request_id
        ]


async def start_ai(
    client: WebClient,
    agent_id: str,
    workdir: Path,
    prompt: str | None,
    *,
    tool: str = "claude",
    join: bool = True,
    **fields: Any,
) -> tuple[dict[str, Any], Recording]:
    """Start `tool` on the agent in `workdir` (its files and HOME there) and join its
    session; the task, and what the fake tool will record of its run."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    record = workdir / f"{tool}-record.jsonl"
    env = {"HOME": str(home), f"FAKE_{tool.upper()}_RECORD": str(record)}
    if tool in _KEY_VARIABLES:  # logged in (an AI config's key is the other way in)
        env[_KEY_VARIABLES[tool]] = "sk-test-not-a-secret"
    env.update(fields.pop("env", {}))
    request: dict[str, Any] = {
        "agentId": agent_id,
        "tool": tool,
        "workingDirectory": str(workdir),
        "env": env,
        **fields,
    }
    if prompt is not None:
        request["initialPrompt"] = prompt
    started = await client.ok("worker:start", request)
    if join:
        await client.ok("session:join", {"sessionId": started["sessionId"]})
    return started, Recording(record)


def turn_text(client: WebClient, session_id: str, kind: str) -> list[str]:
    """The content of every `worker:output` item of one type, in order."""
    return [
        str(data.get("content"))
        for name, data in client.session_events(session_id)
        if name == "worker:output" and data.get("type") == kind
    ]


async def answer_request(
    client: WebClient,
    started: dict[str, Any],
    asked: dict[str, Any],
    decision: str,
    **fields: Any,
) -> dict[str, Any]:
    """`client` answers the permission request `asked` of the task `started`; the ack."""
    answer = {"taskId": started["taskId"], "permissionId": asked["permissionId"]}
    return await client.ok("worker:permission", answer | {"decision": decision, **fields})
