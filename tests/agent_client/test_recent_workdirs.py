"""The recent working directories an agent reports: most recent first, each once, at most
ten, kept across a restart of the daemon, and reported at registration."""

from __future__ import annotations

from pathlib import Path

from agent_client.daemon import AgentDaemon
from agent_client.workdirs import RECENT_WORKDIRS_LIMIT, RecentWorkdirs
from tests.agent_client.conftest import make_settings


def test_most_recent_first_each_once_bounded_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "recent-workdirs.json"
    recent = RecentWorkdirs(path)
    assert recent.items == [] and recent.version == 0 and not recent.changed.is_set()
    recent.add(tmp_path / "a")
    recent.add(tmp_path / "b")
    recent.add(tmp_path / "a")  # used again: first again, not twice
    assert recent.items == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert recent.version == 3 and recent.changed.is_set()
    recent.changed.clear()
    recent.add(tmp_path / "a")  # already first: nothing changes
    assert recent.version == 3 and not recent.changed.is_set()

    for n in range(RECENT_WORKDIRS_LIMIT + 5):
        recent.add(tmp_path / f"d{n}")
    expected = [str(tmp_path / f"d{n}") for n in reversed(range(RECENT_WORKDIRS_LIMIT + 5))]
    assert recent.items == expected[:RECENT_WORKDIRS_LIMIT]
    assert RecentWorkdirs(path).items == recent.items  # a restarted daemon reads them back
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_an_unreadable_file_starts_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "recent-workdirs.json"
    for text in ("not json", '{"a": 1}', '[1, "", null]'):
        path.write_text(text)
        assert RecentWorkdirs(path).items == []
    path.write_text('["/x", 3, "/y"]')
    assert RecentWorkdirs(path).items == ["/x", "/y"]


def test_the_registration_reports_the_roots_and_the_recent_directories(tmp_path: Path) -> None:
    roots = (tmp_path / "projects", tmp_path / "scratch")
    settings = make_settings(tmp_path / "state", agent_allowed_roots=roots)
    daemon = AgentDaemon(settings)
    assert daemon.registration()["metadata"] == {
        "allowedRoots": [str(r) for r in roots],
        "recentWorkdirs": [],
    }
    (tmp_path / "projects" / "one").mkdir(parents=True)
    daemon.tasks.recent.add(tmp_path / "projects" / "one")
    restarted = AgentDaemon(settings)
    metadata = restarted.registration()["metadata"]
    assert metadata["recentWorkdirs"] == [str(tmp_path / "projects" / "one")]
    # A heartbeat carries the list until the gateway has acknowledged it as it is.
    assert restarted._heartbeat()["metadata"] == {"recentWorkdirs": metadata["recentWorkdirs"]}
    restarted._heartbeat_ack({"success": True, "data": {}}, restarted.tasks.recent.version)
    assert "metadata" not in restarted._heartbeat()
