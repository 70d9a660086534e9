"""The `claude` worker: Claude Code through stream-json and its stdio control protocol.

    claude --output-format stream-json --verbose --input-format stream-json
           --permission-prompt-tool stdio [--permission-mode M] [--resume=<id>]
           [--model m] [--allowedTools A,B]

The AI config's key reaches it as `ANTHROPIC_API_KEY` and a base URL (a proxy, a
self-hosted endpoint) as `ANTHROPIC_BASE_URL`. See `stream_json` for the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_client.workers.stream_json import StreamJsonWorker

__all__ = ["ClaudeWorker"]

PERMISSION_MODES = frozenset({"default", "acceptEdits", "bypassPermissions", "plan"})


class ClaudeWorker(StreamJsonWorker):
    tool = "claude"
    executable_name = "claude"

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        return check_common(parameters, PERMISSION_MODES)

    def command(self, executable: str) -> list[str]:
        params = self.spec.parameters
        argv = [
            executable,
            "--output-format", "stream-json",
            "--verbose",  # without it, stream-json output exits 1
            "--input-format", "stream-json",
            "--permission-prompt-tool", "stdio",
        ]  # fmt: skip
        if params.get("permissionMode"):
            argv += ["--permission-mode", str(params["permissionMode"])]
        if params.get("workerSessionId"):
            argv.append(
                f"--resume={params['workerSessionId']}"
            )  # the `=` form: ids may start with -
        if params.get("model"):
            argv += ["--model", str(params["model"])]
        if params.get("allowedTools"):
            argv += ["--allowedTools", ",".join(map(str, params["allowedTools"]))]
        return argv

    def environment(self) -> dict[str, str]:
        env = {"DISABLE_AUTOUPDATER": "1"}  # a worker must not replace the CLI under itself
        if self.spec.secrets.get("apiKey"):
            env["ANTHROPIC_API_KEY"] = self.spec.secrets["apiKey"]
        if self.spec.parameters.get("baseUrl"):
            env["ANTHROPIC_BASE_URL"] = str(self.spec.parameters["baseUrl"])
        return env


def check_common(parameters: Mapping[str, Any], modes: frozenset[str]) -> str | None:
    """What the stream-json tools' parameters must be."""
    mode = parameters.get("permissionMode")
    if mode is not None and mode not in modes:
        return f"permissionMode must be one of {', '.join(sorted(modes))}"
    tools = parameters.get("allowedTools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools)
    ):
        return "allowedTools must be a list of tool names"
    prompt = parameters.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "the prompt must be text"
    return None
