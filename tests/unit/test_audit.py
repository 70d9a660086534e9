"""`gateway.audit`: what an entry holds, and that writing one never fails a request."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.audit import audit, permission_decided
from orchestra.db.store import StoreError


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[dict[str, Any]] = []

    async def add_audit(self, action: str, **fields: Any) -> None:
        if self.fail:
            raise StoreError("OperationalError: the database is gone")
        self.written.append({"action": action, **fields})


def node_with(store: FakeStore) -> Any:
    return SimpleNamespace(store=store)


async def test_an_entry_is_written_without_anything_that_looks_like_a_credential() -> None:
    store = FakeStore()
    await audit(
        node_with(store),
        "user.created",
        actor_id="root",
        target_type="user",
        target_id="bob",
        ip="127.0.0.1",
        username="bob",
        password="hunter2!!",
        newPassword="x",
        agentSecret="s",
        accessToken="t",
        apiKey="k",
    )
    assert store.written == [
        {
            "action": "user.created",
            "actor_id": "root",
            "target_type": "user",
            "target_id": "bob",
            "ip": "127.0.0.1",
            "details": {"username": "bob"},
        }
    ]


async def test_a_failure_to_write_is_one_warning_line_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        await audit(
            node_with(FakeStore(fail=True)),
            "auth.login",
            actor_id="u",
            target_type="user",
            target_id="u",
        )
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "audit entry auth.login not written: StoreError"


def _answered(by: str) -> dict[str, Any]:
    return {"status": "allowed", "reason": "answered", "decidedBy": by, "decision": "allow"}


@pytest.mark.parametrize(
    ("view", "decision", "won"),
    [
        (_answered("me"), "allow", True),
        (_answered("other"), "allow", False),  # another answer came first
        (_answered("me"), "deny", False),  # this user's earlier answer came first
        ({"status": "timeout", "reason": "timeout", "decision": "deny"}, "deny", False),
        ({"status": "cancelled", "reason": "worker-ended", "decision": "deny"}, "deny", False),
    ],
)
async def test_a_permission_decision_says_whether_it_won(
    view: dict[str, Any], decision: str, won: bool
) -> None:
    store = FakeStore()
    sent = {"taskId": "t1", "permissionId": "p1", "decision": decision, "message": "because"}
    await permission_decided(node_with(store), "me", sent, {"resolved": view})
    [entry] = store.written
    assert (entry["action"], entry["actor_id"], entry["target_type"], entry["target_id"]) == (
        "permission.decided",
        "me",
        "task",
        "t1",
    )
    assert entry["details"] == {
        "taskId": "t1",
        "permissionId": "p1",
        "decision": decision,
        "scope": "once",
        "won": won,
        "outcome": view["status"],
    }
