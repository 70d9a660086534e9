"""Where a task may run: working directories confined to the roots the agent allows.

The roots are `AGENT_ALLOWED_ROOTS` (`:`-separated), or the home directory of the user the
agent runs as when none are set; the agent's own work folder (the default when a task
names none) is always allowed. A requested directory is resolved on this machine, links
and `..` included, before it is compared, so a link inside a root that points outside it
is refused like the outside path itself.

`RecentWorkdirs` remembers the directories tasks ran in, most recent first, in a small file
of the agent's state folder, so that a console can offer them (`metadata.recentWorkdirs`
of `agent:register` and `agent:heartbeat`, see docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from orchestra.settings import Settings

__all__ = [
    "RECENT_WORKDIRS_LIMIT",
    "RecentWorkdirs",
    "WorkdirRefused",
    "allowed_roots",
    "working_directory",
]

log = logging.getLogger(__name__)

RECENT_WORKDIRS_LIMIT = 10
"""How many recently used working directories an agent remembers and reports."""


class WorkdirRefused(Exception):
    """The requested working directory may not (or cannot) be used."""


def allowed_roots(settings: Settings) -> list[Path]:
    """The roots working directories must lie under, resolved."""
    roots = settings.agent_allowed_roots or (Path.home(),)
    return [Path(root).expanduser().resolve() for root in roots]


def working_directory(requested: object, settings: Settings, work_dir: Path) -> Path:
    """The directory a task runs in; `WorkdirRefused` says why it cannot be that one."""
    if requested is None or requested == "":
        work_dir.mkdir(parents=True, exist_ok=True)
        return work_dir.resolve()
    if not isinstance(requested, str):
        raise WorkdirRefused("workingDirectory must be a string")
    path = Path(requested).expanduser()
    if not path.is_absolute():
        path = work_dir / path
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise WorkdirRefused(f"working directory {requested} does not exist") from None
    roots = allowed_roots(settings)
    inside_own = work_dir.exists() and resolved.is_relative_to(work_dir.resolve())
    if not inside_own and not any(resolved.is_relative_to(root) for root in roots):
        raise WorkdirRefused(
            f"working directory {requested} is outside the roots this agent allows "
            f"({', '.join(str(r) for r in roots)})"
        )
    if not resolved.is_dir():
        raise WorkdirRefused(f"working directory {requested} is not a directory")
    return resolved


class RecentWorkdirs:
    """The working directories tasks ran in, most recent first, at most `limit` of them,
    kept in a JSON file (`path`) so that a restart of the daemon keeps them.

    `version` grows with each change and `changed` is set, for whoever reports them."""

    def __init__(self, path: Path, limit: int = RECENT_WORKDIRS_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.version = 0
        self.changed = asyncio.Event()
        self._items = self._load()

    def _load(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); starting an empty list", self.path, exc)
            return []
        if not isinstance(data, list):
            return []
        return [d for d in data if isinstance(d, str) and d][: self.limit]

    @property
    def items(self) -> list[str]:
        """The directories, most recent first."""
        return list(self._items)

    def add(self, directory: Path) -> None:
        """`directory` was just used: first in the list (once), the oldest dropped."""
        path = str(directory)
        if self._items[:1] == [path]:
            return
        self._items = [path, *(d for d in self._items if d != path)][: self.limit]
        self.version += 1
        self.changed.set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temp.write_text(json.dumps(self._items))
            os.replace(temp, self.path)
        except OSError as exc:  # the list is a convenience: a full disk must not stop a task
            log.warning("cannot keep the recent working directories in %s: %s", self.path, exc)
