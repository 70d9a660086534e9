"""Which tools an agent runs: the built-in adapters, those other packages add through the
`orchestra.workers` entry point, and which of them are installed here, with versions."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_client.workers import discover, load_workers
from agent_client.workers.custom import CustomWorker
from tests.support.tools import FAKE_BIN

PLUGIN = """
from agent_client.workers.custom import CustomWorker


class AiderWorker(CustomWorker):
    tool = "aider"
    executable_name = "aider"
"""


@pytest.fixture
def plugin_path(tmp_path: Path) -> Iterator[Path]:
    """A package installed on sys.path with entry points of the `orchestra.workers` group."""
    (tmp_path / "orchestra_aider.py").write_text(PLUGIN)
    dist = tmp_path / "orchestra_aider-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orchestra-aider\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[orchestra.workers]\n"
        "aider = orchestra_aider:AiderWorker\n"
        "custom = orchestra_aider:AiderWorker\n"  # may not replace a built-in tool
        "broken = orchestra_aider:NoSuchWorker\n"
    )
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("orchestra_aider", None)


def test_other_packages_add_tools_and_cannot_replace_built_in_ones(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workers = load_workers()
    assert {"claude", "qwcoder", "codex", "gemini", "custom", "aider"} <= set(workers)
    assert workers["aider"].__name__ == "AiderWorker"
    assert workers["custom"] is CustomWorker
    assert "broken" not in workers
    assert "cannot be loaded" in caplog.text  # said once, and the agent goes on


async def test_discovery_finds_what_is_installed_with_its_version(
    plugin_path: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    found = {t.name: t for t in await discover(load_workers(), {"PATH": str(FAKE_BIN)})}
    assert found["claude"].version == "2.1.332" and found["claude"].executable == str(
        FAKE_BIN / "claude"
    )
    assert found["codex"].version == "0.171.0" and found["gemini"].version == "0.61.0"
    assert found["custom"].version is None  # always there: it runs what it is given
    assert "qwcoder" not in found and "aider" not in found  # not on that PATH
    nothing = {t.name for t in await discover(load_workers(), {"PATH": str(empty)})}
    assert nothing == {"custom"}
