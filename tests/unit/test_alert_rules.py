"""The alert rules' thresholds and the alert settings (no processes: the rules are pure
functions; tests/e2e/test_alerts.py runs them in a cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.alerts.rules import (
    AgentFacts,
    QueuedTask,
    RequestCounts,
    WaitingPermission,
    agent_offline,
    high_error_rate,
    high_latency,
    permission_waiting,
    task_queued,
)
from orchestra.settings import Settings, SettingsError


def agent(aid: str, status: str = "online", latency_ms: float | None = None) -> AgentFacts:
    return AgentFacts(aid, f"name-{aid}", status, latency_ms, None)


def test_agents_offline_and_their_average_latency() -> None:
    agents = [agent("a", "offline", 9000.0), agent("b", "busy", 7000.0), agent("c", "online", 4000)]
    assert [c.key for c in agent_offline(agents)] == ["agent_offline:a"]
    # The offline agent's last figure does not count: (7000 + 4000) / 2 = 5500.
    (slow,) = high_latency(agents, 5000.0)
    assert (slow.key, slow.severity, slow.details["slowestAgentId"]) == (
        "high_latency:agents",
        "warning",
        "b",
    )
    assert high_latency(agents, 5500.0) == []
    assert high_latency([agent("d")], 1.0) == []  # no latency measured yet


def test_the_error_rate_needs_enough_requests() -> None:
    assert high_error_rate(RequestCounts(ok=5, error=5), 0.1, 20, 300) == []
    assert high_error_rate(RequestCounts(ok=90, error=10), 0.1, 20, 300) == []  # not over
    (fired,) = high_error_rate(RequestCounts(ok=80, error=20), 0.1, 20, 300)
    assert fired.key == "high_error_rate:requests" and "20% of 100 requests" in fired.message


def test_waits_past_their_thresholds_one_alert_per_task_and_per_tool() -> None:
    waiting = [
        WaitingPermission("s1", "t1", "p1", "Bash", 700.0),
        WaitingPermission("s1", "t1", "p2", "Edit", 601.0),
        WaitingPermission("s2", "t2", "p3", "Bash", 599.0),
    ]
    (fired,) = permission_waiting(waiting, 600.0)
    assert fired.key == "permission_waiting:t1"
    assert fired.details["permissionIds"] == ["p1", "p2"] and "Bash" in fired.message
    queued = [
        QueuedTask("s1", "t1", "claude", 400.0, "no agent is online"),
        QueuedTask("s2", "t2", "claude", 301.0, None),
        QueuedTask("s3", "t3", "codex", 10.0, None),
    ]
    (fired,) = task_queued(queued, 300.0)
    assert (fired.key, fired.details["tasks"], fired.details["oldestTaskId"]) == (
        "task_queued:claude",
        2,
        "t1",
    )
    assert "no agent is online" in fired.message


def test_alert_webhooks_must_be_urls_and_signed(tmp_path: Path) -> None:
    env = {"ORCHESTRA_DATA_DIR": str(tmp_path)}
    hooks = "https://alerts.example.com/a?token=tok-123, http://10.0.0.2:9000/b"
    settings = Settings.load(
        env | {"ORCHESTRA_ALERT_WEBHOOKS": hooks, "ORCHESTRA_ALERT_WEBHOOK_SECRET": "s" * 20}
    )
    assert settings.alert_webhooks == (
        "https://alerts.example.com/a?token=tok-123",
        "http://10.0.0.2:9000/b",
    )
    assert "tok-123" not in repr(settings) and "s" * 20 not in repr(settings)
    with pytest.raises(SettingsError, match="ORCHESTRA_ALERT_WEBHOOK_SECRET") as unsigned:
        Settings.load(env | {"ORCHESTRA_ALERT_WEBHOOKS": hooks})
    with pytest.raises(SettingsError, match="ORCHESTRA_ALERT_WEBHOOKS") as bad:
        Settings.load(
            env
            | {
                "ORCHESTRA_ALERT_WEBHOOKS": "ftp://x.example.com/?token=tok-123",
                "ORCHESTRA_ALERT_WEBHOOK_SECRET": "s" * 20,
            }
        )
    assert "tok-123" not in str(unsigned.value) + str(bad.value)
