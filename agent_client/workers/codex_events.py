"""`codex app-server` as the codex worker drives it: its command line, a thread's
parameters for a task's, its approval requests as `worker:permission` fields, and which of
its errors end a task. Pure functions, no I/O; how thread items and turns become output
items is `codex_items`, the JSON-RPC plumbing `codex_rpc`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "API_KEY_ENV",
    "APPROVALS",
    "MODES",
    "QUIET",
    "command_line",
    "is_fatal",
    "permission_fields",
    "thread_params",
]

API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
APPROVALS = ("item/commandExecution/requestApproval", "item/fileChange/requestApproval")
# permissionMode -> (approvalPolicy, sandbox). `untrusted` asks before every command that
# is not known to be harmless (here: every command, `ls` included) and every file change.
MODES: dict[str, tuple[str, str]] = {
    "default": ("untrusted", "workspace-write"),
    "acceptEdits": ("on-request", "workspace-write"),
    "plan": ("untrusted", "read-only"),
    "bypassPermissions": ("never", "danger-full-access"),
    "untrusted": ("untrusted", "workspace-write"),
    "on-request": ("on-request", "workspace-write"),
    "never": ("never", "workspace-write"),
}
# Off: update checks, analytics, feedback, and plugins (whose marketplace sync reaches
# github.com and chatgpt.com at startup, whatever the model provider).
QUIET = (
    "check_for_update_on_startup=false",
    "analytics.enabled=false",
    "feedback.enabled=false",
    "features.plugins=false",
)
_TITLE_CHARS = 200


def command_line(executable: str, base_url: str | None, with_key: bool) -> list[str]:
    """`codex app-server` with its config overrides; never a secret on it. With a key or
    a base URL, a model provider of our own reads the key from `API_KEY_ENV`."""
    argv = [executable, "app-server"]
    for setting in QUIET:
        argv += ["-c", setting]
    if base_url or with_key:
        url = json.dumps(base_url or DEFAULT_BASE_URL)  # a JSON string is a TOML string
        provider = f'name = "Orchestra", base_url = {url}, env_key = "{API_KEY_ENV}"'
        argv += ["-c", 'model_provider="orchestra"']
        argv += ["-c", f'model_providers.orchestra={{{provider}, wire_api = "responses"}}']
    return argv


def thread_params(parameters: Mapping[str, Any], cwd: str) -> dict[str, Any]:
    """`thread/start` (and `thread/resume`) parameters for a task's parameters."""
    policy, sandbox = MODES[parameters.get("permissionMode") or "default"]
    params: dict[str, Any] = {"cwd": cwd, "approvalPolicy": policy, "sandbox": sandbox}
    if parameters.get("model"):
        params["model"] = parameters["model"]
    if parameters.get("workerSessionId"):
        params["threadId"] = parameters["workerSessionId"]
    return params


def permission_fields(
    method: str, params: dict[str, Any], started: dict[str, Any] | None
) -> tuple[str, dict[str, Any], str]:
    """A Codex approval request as `worker:permission`'s (tool, input, title). `started` is
    the thread item the request is about, when Codex announced it (a file change's diff)."""
    reason = params.get("reason")
    if method == "item/commandExecution/requestApproval":
        command = str(params.get("command") or (started or {}).get("command") or "")
        tool_input = {
            "command": command,
            "cwd": params.get("cwd"),
            "reason": reason,
            "commandActions": params.get("commandActions"),
            "proposedExecpolicyAmendment": params.get("proposedExecpolicyAmendment"),
        }
        title = f"Run {command}" if command else "Run a command"
        tool = "commandExecution"
    else:
        changes = (started or {}).get("changes") or []
        paths = [str(c.get("path")) for c in changes if isinstance(c, dict)]
        tool_input = {"changes": changes, "reason": reason, "grantRoot": params.get("grantRoot")}
        title = f"Change {', '.join(paths)}" if paths else "Change files"
        tool = "fileChange"
    tool_input = {k: v for k, v in tool_input.items() if v is not None}
    tool_input["itemId"] = params.get("itemId")
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1] + "…"
    return tool, tool_input, title


def is_fatal(error: dict[str, Any] | None) -> bool:
    """Whether a turn's error means no later turn can work: an authentication failure
    (a 401/403, `unauthorized`, or the provider's key variable missing)."""
    if not isinstance(error, dict):
        return False
    info = error.get("codexErrorInfo")
    if info == "unauthorized":
        return True
    if isinstance(info, dict):
        for value in info.values():
            if isinstance(value, dict) and value.get("httpStatusCode") in (401, 403):
                return True
    message = str(error.get("message", ""))
    return message.startswith("Missing environment variable") or "401 Unauthorized" in message
