"""Where a task may run: working directories confined to the roots the agent allows.

The roots are `AGENT_ALLOWED_ROOTS` (`:`-separated), or the home directory of the user the
agent runs as when none are set; the agent's own work folder (the default when a task
names none) is always allowed. A requested directory is resolved on this machine, links
and `..` included, before it is compared, so a link inside a root that points outside it
is refused like the outside path itself.
"""

from __future__ import annotations

from pathlib import Path

from orchestra.settings import Settings

__all__ = ["WorkdirRefused", "allowed_roots", "working_directory"]


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
