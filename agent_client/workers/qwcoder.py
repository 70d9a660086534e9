"""The `qwcoder` worker: Qwen Code through stream-json and its stdio control protocol.

    qwen --input-format stream-json --output-format stream-json
         --approval-mode M [--resume <id>] [--model m] [--allowed-tools A,B]

The same shapes and control protocol as Claude Code (see `stream_json`), in its own dialect
(checked against 0.24.4, `tests/e2e/test_qwen_cli_facts.py`):

- the approval mode is always given: Qwen Code's own default, `auto`, never asks the
  user about shell commands but a model-side classifier;
- the key and a base URL go to its OpenAI-compatible settings (`OPENAI_API_KEY`,
  `OPENAI_BASE_URL`, and `OPENAI_MODEL` for the model);
- `initialize` says how long a permission request may wait, or Qwen Code gives up on it
  after 60 s (and never tells the host: the end of the turn resolves it here);
- a `result` carries the session's running token total, so a turn's usage is summed
  from its model calls; there is no cost;
- it ignores `updatedInput` (the original input would run), so an answer that edits the
  input is turned into a deny saying so; and it ignores `updatedPermissions`, so "allow
  for the session" is kept by the worker alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_client.workers.base import PermissionDecision
from agent_client.workers.claude import check_common
from agent_client.workers.permission_requests import Asked
from agent_client.workers.stream_json import StreamJsonWorker

__all__ = ["QwenWorker"]

APPROVAL_MODES = frozenset({"default", "plan", "auto-edit", "auto", "yolo"})
# Claude Code's names for the same modes, so one AI config reads alike for both.
_FROM_CLAUDE = {"acceptEdits": "auto-edit", "bypassPermissions": "yolo"}
# Beyond the gateway's own deadline, so that the gateway's answer (deny, on its timeout)
# is what ends a request, not Qwen Code's own clock; Qwen Code takes at most 10 minutes.
_MARGIN_S = 60.0
_MAX_WAIT_MS = 600_000


class QwenWorker(StreamJsonWorker):
    tool = "qwcoder"
    executable_name = "qwen"
    usage_from_calls = True

    @classmethod
    def check(cls, parameters: Mapping[str, Any]) -> str | None:
        return check_common(parameters, APPROVAL_MODES | frozenset(_FROM_CLAUDE))

    def command(self, executable: str) -> list[str]:
        params = self.spec.parameters
        argv = [executable, "--input-format", "stream-json", "--output-format", "stream-json"]
        mode = str(params.get("permissionMode") or "default")
        argv += ["--approval-mode", _FROM_CLAUDE.get(mode, mode)]
        if params.get("workerSessionId"):
            argv += ["--resume", str(params["workerSessionId"])]
        if params.get("model"):
            argv += ["--model", str(params["model"])]
        if params.get("allowedTools"):
            argv += ["--allowed-tools", ",".join(map(str, params["allowedTools"]))]
        return argv

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.spec.secrets.get("apiKey"):
            env["OPENAI_API_KEY"] = self.spec.secrets["apiKey"]
        if self.spec.parameters.get("baseUrl"):
            env["OPENAI_BASE_URL"] = str(self.spec.parameters["baseUrl"])
        if self.spec.parameters.get("model"):
            env["OPENAI_MODEL"] = str(self.spec.parameters["model"])
        return env

    def initialize_request(self) -> dict[str, Any]:
        wait_ms = min(_MAX_WAIT_MS, int((self.spec.permission_timeout_s + _MARGIN_S) * 1000))
        return super().initialize_request() | {"timeout": {"canUseTool": wait_ms}}

    def session_rule(self, tool: str) -> list[dict[str, Any]] | None:
        return None  # not understood: the worker allows the tool itself from now on

    def edited_input_refusal(self, asked: Asked, decision: PermissionDecision) -> str | None:
        if decision.updated_input is None or decision.updated_input == asked.input:
            return None
        return (
            "Qwen Code cannot run an edited input (it would run the original one): "
            "ask again with the change instead"
        )
