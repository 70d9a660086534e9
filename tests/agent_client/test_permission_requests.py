"""A worker's pending permission requests: each answered once, whatever ends it."""

from __future__ import annotations

from agent_client.workers.base import PermissionDecision
from agent_client.workers.permission_requests import NO_ANSWER, Asked, PendingRequests
from tests.support.worker_host import RecordingHost

from .conftest import eventually

BASH = Asked("Bash", {"command": "make test"})


def _requests(host: RecordingHost, **options: float) -> tuple[PendingRequests, list[tuple]]:
    answers: list[tuple] = []
    requests = PendingRequests(
        host,
        "t1",
        limit=1024,
        timeout_s=options.get("timeout_s", 60.0),
        grace_s=options.get("grace_s", 60.0),
        answer=lambda rid, asked, decision: answers.append((rid, asked.tool, decision)),
    )
    return requests, answers


async def test_a_request_is_reported_and_answered_once() -> None:
    host = RecordingHost()
    requests, answers = _requests(host)
    requests.ask("r1", BASH, title="Run make test", suggestions=[{"type": "addRules"}])
    [report] = host.controls("worker:permission")
    assert report == {"permissionId": "r1", "tool": "Bash", "input": BASH.input,
                      "title": "Run make test", "suggestions": [{"type": "addRules"}]}  # fmt: skip
    requests.decide(PermissionDecision("r1", "allow"))
    requests.decide(PermissionDecision("r1", "deny"))  # a second answer: dropped
    assert [(rid, d.decision) for rid, _, d in answers] == [("r1", "allow")]


async def test_a_withdrawn_request_is_reported_and_never_answered() -> None:
    host = RecordingHost()
    requests, answers = _requests(host)
    requests.ask("r1", BASH)
    requests.withdraw("r1", "the turn ended")
    requests.decide(PermissionDecision("r1", "allow"))
    assert answers == []
    assert host.controls("worker:permission:cancelled") == [
        {"permissionId": "r1", "reason": "the turn ended"}
    ]


async def test_allowed_for_the_session_the_tool_is_not_asked_about_again() -> None:
    host = RecordingHost()
    requests, answers = _requests(host)
    requests.ask("r1", BASH)
    requests.decide(PermissionDecision("r1", "allow", scope="session"))
    requests.ask("r2", Asked("Bash", {"command": "ls"}))
    requests.ask("r3", Asked("Write", {"file_path": "x"}))
    assert [(rid, tool, d.decision) for rid, tool, d in answers] == [
        ("r1", "Bash", "allow"), ("r2", "Bash", "allow"),
    ]  # fmt: skip
    assert [c["permissionId"] for c in host.controls("worker:permission")] == ["r1", "r3"]


async def test_a_request_the_gateway_refuses_is_denied_at_once() -> None:
    host = RecordingHost(refuse=lambda event, fields: ("RES_001", "payload over the limit"))
    requests, answers = _requests(host)
    requests.ask("r1", BASH)
    [(rid, _, decision)] = answers
    assert rid == "r1" and decision.decision == "deny" and "RES_001" in (decision.message or "")
    requests.decide(PermissionDecision("r1", "allow"))  # too late: dropped
    assert len(answers) == 1


async def test_a_request_no_answer_reaches_is_denied_by_the_agent_itself() -> None:
    host = RecordingHost()
    requests, answers = _requests(host, timeout_s=0.05, grace_s=0.05)
    requests.ask("r1", BASH)
    await eventually(lambda: answers, what="the agent's own deny")
    assert answers[0][2].decision == "deny" and answers[0][2].message == NO_ANSWER
    assert host.controls("worker:permission:cancelled") == [
        {"permissionId": "r1", "reason": NO_ANSWER}
    ]


async def test_a_large_input_is_shown_cut_and_answered_whole() -> None:
    host = RecordingHost()
    requests, answers = _requests(host)
    big = Asked("Write", {"file_path": "x", "content": "y" * 5000})
    requests.ask("r1", big)
    [report] = host.controls("worker:permission")
    assert report["inputTruncated"] is True and len(report["input"].encode()) <= 1024
    requests.decide(PermissionDecision("r1", "allow"))
    assert answers[0][1] == "Write"
