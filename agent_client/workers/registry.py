"""Which tools this agent can run: the built-in adapters, those other packages add, and
which of them are installed on this machine.

Another package adds a tool by naming its `Worker` subclass in an entry point of the group
`orchestra.workers`, e.g. in its pyproject.toml:

    [project.entry-points."orchestra.workers"]
    aider = "orchestra_aider:AiderWorker"

The entry point's name is the tool's name on the wire. A built-in tool of the same name
wins, so a package cannot replace one by accident.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import os
import shutil
from collections.abc import Mapping

from agent_client.workers.base import ToolInfo, Worker

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "discover", "load_workers"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "orchestra.workers"
BUILTIN: dict[str, str] = {
    "custom": "agent_client.workers.custom:CustomWorker",
    "claude": "agent_client.workers.claude:ClaudeWorker",
    "qwcoder": "agent_client.workers.qwcoder:QwenWorker",
    "codex": "agent_client.workers.codex:CodexWorker",
    "gemini": "agent_client.workers.gemini:GeminiWorker",
}
_VERSION_TIMEOUT_S = 20.0


def _load(target: str) -> type[Worker]:
    module_name, _, attribute = target.partition(":")
    worker = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(worker, type) and issubclass(worker, Worker)):
        raise TypeError(f"{target} is not a Worker")
    return worker


def load_workers() -> dict[str, type[Worker]]:
    """Every worker class by tool name: the built-in ones, then the entry points'."""
    workers = {name: _load(target) for name, target in BUILTIN.items()}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in workers:
            log.warning("tool %r from %s ignored: built in", entry.name, entry.value)
            continue
        try:
            workers[entry.name] = _load(entry.value)
        except Exception as exc:  # a broken plug-in must not stop the agent
            log.error("tool %r from %s cannot be loaded: %s", entry.name, entry.value, exc)
    return workers


async def discover(
    workers: Mapping[str, type[Worker]], env: Mapping[str, str] | None = None
) -> list[ToolInfo]:
    """The tools installed here, with their versions (`<executable> --version`)."""
    path = (env if env is not None else os.environ).get("PATH")
    found = await asyncio.gather(
        *(_find(name, worker, path) for name, worker in sorted(workers.items()))
    )
    return [tool for tool in found if tool is not None]


async def _find(name: str, worker: type[Worker], path: str | None) -> ToolInfo | None:
    if worker.executable_name is None:
        return ToolInfo(name)
    executable = shutil.which(worker.executable_name, path=path)
    if executable is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            executable,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), _VERSION_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        log.warning("found %s at %s, but `--version` failed: %s", name, executable, exc)
        return ToolInfo(name, None, executable)
    version = (
        worker.version_of(output.decode(errors="replace")) if process.returncode == 0 else None
    )
    return ToolInfo(name, version, executable)
