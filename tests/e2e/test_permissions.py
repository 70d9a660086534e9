"""Permission requests end to end: every watcher sees a request while it is pending and
its resolution once it is not; exactly one decision reaches the tool, whatever resolves
it (an answer, the tool withdrawing it, the deadline); a late answer learns what happened.

The `claude` here is our fake, which asks for Bash in `scenario: permission` and refuses
an answer to a request it has withdrawn or already had answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ai import FAKE_TOOLS, answer_request, start_ai, turn_text
from tests.support.processes import wait_for
from tests.support.running import Running
from tests.support.web import WebClient

pytestmark = [pytest.mark.sqlite_only, FAKE_TOOLS]


async def _asked(client: WebClient, session_id: str) -> dict:
    request: dict = await client.wait_for_event(
        "worker:permission", lambda d: d["sessionId"] == session_id
    )
    return request


async def test_an_allowed_request_runs_the_tool_with_the_edited_input(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        sid = started["sessionId"]
        asked = await _asked(client, sid)
        assert asked["tool"] == "Bash" and asked["input"]["command"] == "echo hi > out.txt"
        assert asked["title"] == "Write hi to out.txt" and asked["expiresAt"]
        assert asked["suggestions"][0]["type"] == "addRules"
        edited = {"command": "echo allowed > out.txt", "description": "edited"}
        answer = await answer_request(client, started, asked, "allow", updatedInput=edited)
        view = answer["resolved"]
        assert (view["status"], view["decision"], view["reason"]) == (
            "allowed",
            "allow",
            "answered",
        )
        resolved = await client.wait_for_event("worker:permission:resolved")
        assert resolved["permissionId"] == asked["permissionId"]
        assert (resolved["decision"], resolved["reason"], resolved["scope"]) == (
            "allow", "answered", "once",
        )  # fmt: skip
        assert resolved["by"] == view["decidedBy"] and resolved["by"]
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        assert turn_text(client, sid, "tool-result") == ["ran: echo allowed > out.txt"]
        answers = record.answers_to(asked["permissionId"])
        assert len(answers) == 1 and answers[0]["response"]["updatedInput"] == edited
    finally:
        await client.close()


async def test_a_denied_request_tells_the_tool_why(running: Running, tmp_path: Path) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        asked = await _asked(client, started["sessionId"])
        await answer_request(client, started, asked, "deny", message="not in this repository")
        result = await client.wait_for_event("worker:output", lambda d: d["type"] == "tool-result")
        assert result["content"] == "not in this repository" and result["details"]["isError"]
        [answer] = record.answers_to(asked["permissionId"])
        assert answer["response"]["behavior"] == "deny"
    finally:
        await client.close()


async def test_a_request_the_tool_withdraws_closes_everywhere_and_is_never_answered(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(client, running.agent_id, tmp_path, "scenario: cancel")
        asked = await _asked(client, started["sessionId"])
        resolved = await client.wait_for_event("worker:permission:resolved")
        assert (resolved["reason"], resolved["decision"], resolved["by"]) == (
            "cancelled", "deny", None,
        )  # fmt: skip
        late = await answer_request(client, started, asked, "allow")
        assert late["resolved"]["status"] == "cancelled"
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        assert record.answers_to(asked["permissionId"]) == []
        # The fake exits 3 on an answer to a withdrawn request: the worker is still well.
        assert (await running.task(started["taskId"]))["status"] == "running"
    finally:
        await client.close()


@pytest.mark.orchestra_env(ORCHESTRA_PERMISSION_TIMEOUT_S="2")
async def test_a_request_nobody_answers_is_denied_at_its_deadline(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(
            client, running.agent_id, tmp_path, "scenario: wait-permission"
        )
        asked = await _asked(client, started["sessionId"])
        resolved = await client.wait_for_event("worker:permission:resolved", timeout_s=30)
        assert (resolved["reason"], resolved["decision"]) == ("timeout", "deny")
        result = await client.wait_for_event("worker:output", lambda d: d["type"] == "tool-result")
        assert result["details"]["isError"] and "in time" in result["content"]
        [answer] = record.answers_to(asked["permissionId"])
        assert answer["response"]["behavior"] == "deny"
        late = await answer_request(client, started, asked, "allow")
        assert late["resolved"]["status"] == "timeout"
    finally:
        await client.close()


async def test_a_client_that_joins_while_a_request_waits_sees_it(
    running: Running, tmp_path: Path
) -> None:
    starter = await running.client()
    latecomer = await running.client()
    try:
        started, _ = await start_ai(
            starter, running.agent_id, tmp_path, "scenario: wait-permission"
        )
        asked = await _asked(starter, started["sessionId"])
        joined = await latecomer.ok("session:join", {"sessionId": started["sessionId"]})
        [pending] = joined["pendingPermissions"]
        assert pending["permissionId"] == asked["permissionId"]
        assert (pending["status"], pending["tool"]) == ("pending", "Bash")
        synced = await latecomer.ok("user:sync", {})
        assert [p["permissionId"] for p in synced["pendingPermissions"]] == [asked["permissionId"]]
        # The latecomer answers; the starter's prompt closes.
        await answer_request(latecomer, started, asked, "allow")
        closed = await starter.wait_for_event("worker:permission:resolved")
        assert closed["reason"] == "answered"
        assert (await latecomer.ok("user:sync", {}))["pendingPermissions"] == []
    finally:
        await starter.close()
        await latecomer.close()


async def test_allow_for_the_session_stops_the_tool_asking(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        sid, task_id = started["sessionId"], started["taskId"]
        asked = await _asked(client, sid)
        await answer_request(client, started, asked, "allow", scope="session")
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        await client.ok("worker:input", {"taskId": task_id, "input": "scenario: permission"})
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result", count=2)
        assert [n for n, _ in client.session_events(sid)].count("worker:permission") == 1
        assert turn_text(client, sid, "tool-result") == ["ran: echo hi > out.txt"] * 2
        [answer] = record.answers_to(asked["permissionId"])
        [rule] = answer["response"]["updatedPermissions"]
        assert rule["destination"] == "session" and rule["rules"] == [{"toolName": "Bash"}]
    finally:
        await client.close()


async def test_an_answer_to_an_unknown_request_is_an_error(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: plain")
        answer = await client.call(
            "worker:permission",
            {"taskId": started["taskId"], "permissionId": "nope", "decision": "allow"},
        )
        assert answer["success"] is False and answer["error"]["code"] == "TASK_002"
        bad = await client.call(
            "worker:permission",
            {"taskId": started["taskId"], "permissionId": "nope", "decision": "maybe"},
        )
        assert bad["error"]["code"] == "PARAM_001"
        await wait_for(lambda: turn_text(client, started["sessionId"], "result"), what="result")
    finally:
        await client.close()
