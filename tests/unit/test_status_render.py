"""`orchestra status`'s text: the alerts firing as the alerts job keeps them, and a cluster
with a partition no node holds and no leader."""

from __future__ import annotations

from gateway.status import _alert, render


def test_firing_alerts_and_an_unheld_partition_are_shown() -> None:
    status = {
        "nodes": [{"id": "gw1", "partitions": [0, 1, 2, 4], "leader": False, "expiresInS": 3.2}],
        "leader": None,
        "partitions": {"total": 6, "unheld": [3, 5]},
        "agents": [
            {
                "id": "a1",
                "name": "box",
                "status": "offline",
                "healthy": False,
                "latencyMs": None,
                "running": 0,
                "max": 4,
                "lastHeartbeat": None,
            },
        ],
        "queue": {"depth": 2, "byPriority": {"high": 2, "normal": 0, "low": 0}, "oldestWaitS": 400},
        "alerts": [
            _alert(
                "agent_offline:a1",
                '{"rule": "agent_offline", "subject": "a1", "severity": "critical",'
                ' "since": "2025-01-01T00:00:00.000Z", "message": "agent box is offline"}',
            ),
            _alert("queued_too_long:x", "not JSON"),
        ],
    }
    lines = render(status).splitlines()
    assert lines[0] == "Nodes: 1 live, leader none, 6 partitions (3,5 held by no node)"
    assert lines[2].split() == ["gw1", "0-2,4", "3.2", "s"]
    assert "Agents: 1, 0 healthy" in lines
    assert next(line for line in lines if "a1" in line).split()[1:5] == [
        "box",
        "offline",
        "no",
        "-",
    ]
    assert "Dispatch queue: 2 waiting (high 2, normal 0, low 0), oldest 400 s" in lines
    assert "Alerts firing: 2" in lines
    offline = next(line for line in lines if line.strip().startswith("agent_offline"))
    assert offline.split()[1:3] == ["a1", "critical"] and "agent box is offline" in offline
    assert any("not JSON" in line for line in lines)
