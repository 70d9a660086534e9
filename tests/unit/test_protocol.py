"""Protocol models (PROTOCOL.md §4-5): camelCase on the wire, PARAM_001 naming the fields."""

from __future__ import annotations

from typing import Any

import pytest

from orchestra.errors import InvalidParameters
from orchestra.protocol import (
    AgentHeartbeat,
    AgentRegister,
    Payload,
    SessionJoin,
    TaskResult,
    TaskStream,
    WorkerInput,
    WorkerOutput,
    WorkerPermissionDecision,
    WorkerStart,
    WorkerStop,
)
from orchestra.protocol.views import AgentLoad, AgentView, SessionView, TaskView


def problems(exc: InvalidParameters) -> dict[str, str]:
    assert exc.details is not None
    return {p["field"]: p["problem"] for p in exc.details["errors"]}


def refused(model: type[Payload], data: Any) -> InvalidParameters:
    with pytest.raises(InvalidParameters) as caught:
        model.parse(data)
    assert caught.value.code == "PARAM_001"
    return caught.value


def test_worker_start_reads_camel_case() -> None:
    request = WorkerStart.parse(
        {
            "sessionId": "s-1",
            "agentId": "a-1",
            "taskId": "t-1",
            "tool": "custom",
            "workingDirectory": "/srv/project",
            "initialPrompt": "fix the tests",
            "claudeSessionId": "c-1",
            "command": ["echo", "hi"],
            "priority": "high",
            "requiredCapabilities": ["gpu"],
            "strategy": "least-loaded",
        }
    )
    assert request.session_id == "s-1"
    assert request.agent_id == "a-1"
    assert request.task_id == "t-1"
    assert request.working_directory == "/srv/project"
    assert request.initial_prompt == "fix the tests"
    assert request.worker_session_id == "c-1"  # claudeSessionId: the 1.0 name
    assert request.command == ["echo", "hi"]
    assert request.priority == "high"
    assert request.required_capabilities == ["gpu"]


def test_defaults_and_optional_fields() -> None:
    request = WorkerStart.parse({"tool": "claude"})
    assert request.session_id is None and request.agent_id is None
    assert request.priority == "normal"
    assert request.type == "code"
    assert request.required_capabilities == []
    assert WorkerStop.parse({"taskId": "t"}).mode == "interrupt"
    assert SessionJoin.parse({"sessionId": "s"}).last_event_id is None


def test_envelope_fields_are_accepted_and_kept_out_of_the_wire_form() -> None:
    request = WorkerInput.parse(
        {
            "id": "req-1",
            "timestamp": "2024-01-01T00:00:00.000Z",
            "source": "web",
            "version": "1.0",
            "target": "server",
            "taskId": "t-1",
            "input": "hello",
        }
    )
    assert request.id == "req-1" and request.source == "web" and request.version == "1.0"
    assert request.wire() == {"taskId": "t-1", "input": "hello"}


def test_unknown_fields_are_ignored() -> None:
    request = WorkerStop.parse({"taskId": "t-1", "mode": "kill", "somethingNew": 1})
    assert request.mode == "kill"
    assert "somethingNew" not in request.wire()


def test_wire_writes_camel_case_without_unset_optionals() -> None:
    request = AgentRegister.parse(
        {
            "agentId": "a-1",
            "name": "box",
            "capabilities": ["custom"],
            "version": "0.1.0",
            "maxConcurrency": 4,
            "lastCommandId": 7,
            "runningTasks": [{"taskId": "t-1", "lastSeq": 12}],
        }
    )
    assert request.running_tasks is not None
    assert request.running_tasks[0].last_seq == 12
    wire = request.wire()
    # (`version` is left aside: agent:register's own `version` shares its name with the
    # envelope's protocol version, which wire() leaves out.)
    assert {k: v for k, v in wire.items() if k != "version"} == {
        "agentId": "a-1",
        "name": "box",
        "capabilities": ["custom"],
        "tools": [],
        "maxConcurrency": 4,
        "lastCommandId": 7,
        "runningTasks": [{"taskId": "t-1", "lastSeq": 12}],
    }
    # A 1.0 agent's software version is its `version`; a 1.1 agent's is `agentVersion`.
    assert request.software_version == "0.1.0"
    newer = AgentRegister.parse(
        {"agentId": "a-1", "name": "box", "version": "1.1", "agentVersion": "2.0.0",
         "tools": [{"name": "claude", "version": "2.1.332"}]}
    )  # fmt: skip
    assert newer.software_version == "2.0.0"
    assert newer.wire()["tools"] == [{"name": "claude", "version": "2.1.332"}]
    result = TaskResult.parse(
        {"taskId": "t", "agentId": "a", "success": False, "error": "boom", "duration": 2}
    )
    assert result.wire() == {
        "taskId": "t",
        "agentId": "a",
        "success": False,
        "error": "boom",
        "duration": 2.0,
    }


def test_agent_reports_parse() -> None:
    stream = TaskStream.parse(
        {"taskId": "t", "agentId": "a", "seq": 1, "type": "stderr", "data": "oops"}
    )
    assert (stream.seq, stream.type, stream.data) == (1, "stderr", "oops")
    output = WorkerOutput.parse(
        {
            "taskId": "t",
            "agentId": "a",
            "seq": 2,
            "type": "tool-result",
            "content": {"ok": True},
            "usage": {"inputTokens": 1, "outputTokens": 2},
        }
    )
    assert output.type == "tool-result" and output.usage == {"inputTokens": 1, "outputTokens": 2}
    result = TaskResult.parse(
        {"taskId": "t", "agentId": "a", "success": True, "duration": 1.5, "resourceUsage": {}}
    )
    assert result.success is True and result.resource_usage == {}
    heartbeat = AgentHeartbeat.parse(
        {"agentId": "a", "systemInfo": {"cpu": 1.5, "memory": 40, "disk": 70}}
    )
    assert heartbeat.system_info is not None and heartbeat.system_info.memory == 40


def test_bad_fields_are_param_001_naming_each_field_as_the_wire_spells_it() -> None:
    error = refused(WorkerStart, {"tool": 5, "agentId": ["x"], "priority": "urgent"})
    found = problems(error)
    assert set(found) == {"tool", "agentId", "priority"}
    assert all(found.values())


def test_missing_required_fields_are_named() -> None:
    assert set(problems(refused(WorkerInput, {}))) == {"taskId", "input"}
    assert "decision" in problems(
        refused(WorkerPermissionDecision, {"taskId": "t", "permissionId": "p", "decision": "maybe"})
    )


def test_nested_fields_are_named_with_their_path() -> None:
    error = refused(
        AgentRegister,
        {
            "agentId": "a",
            "name": "n",
            "version": "1",
            "runningTasks": [{"taskId": "t-1"}, {"taskId": "", "lastSeq": -1}],
        },
    )
    assert set(problems(error)) == {"runningTasks.1.taskId", "runningTasks.1.lastSeq"}


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (
            TaskStream,
            {"taskId": "t", "agentId": "a", "seq": 0, "type": "stdout", "data": ""},
            "seq",
        ),
        (TaskStream, {"taskId": "t", "agentId": "a", "seq": 1, "type": "pipe", "data": ""}, "type"),
        (
            WorkerOutput,
            {"taskId": "t", "agentId": "a", "seq": 1, "type": "x", "content": 1},
            "type",
        ),
        (TaskResult, {"taskId": "t", "agentId": "a", "success": True, "duration": -1}, "duration"),
        (WorkerStart, {"tool": "custom", "taskId": "has spaces"}, "taskId"),
        (WorkerStart, {"tool": ""}, "tool"),
        (SessionJoin, {"sessionId": "s" * 129}, "sessionId"),
        (WorkerStop, {"taskId": "t", "mode": "gently"}, "mode"),
    ],
)
def test_constraints(model: type[Payload], data: dict[str, Any], field: str) -> None:
    assert field in problems(refused(model, data))


@pytest.mark.parametrize("data", ["hello", 5, [1, 2], ["tool", "custom"], True, 1.5])
def test_a_payload_that_is_not_an_object_is_param_001(data: Any) -> None:
    refused(WorkerStart, data)
    refused(TaskStream, data)


def test_no_payload_is_an_empty_object() -> None:
    assert SessionJoin.parse.__func__ is Payload.parse.__func__  # type: ignore[attr-defined]
    from orchestra.protocol import AgentsList

    assert AgentsList.parse(None).wire() == {}
    refused(WorkerInput, None)


def test_the_error_never_echoes_a_huge_input() -> None:
    error = refused(WorkerStart, {"tool": "x" * 100_000})
    assert len(str(error.details)) < 10_000


def test_views_write_camel_case() -> None:
    task = TaskView(
        id="t-1",
        session_id="s-1",
        tool="custom",
        type="code",
        priority="normal",
        status="running",
        created_at="2024-01-01T00:00:00.000Z",
    )
    session = SessionView(
        id="s-1",
        owner_id="u-1",
        title="",
        status="active",
        participants=["u-1"],
        created_at="2024-01-01T00:00:00.000Z",
        epoch="e",
        tasks=[task],
    )
    wire = session.wire()
    assert wire["ownerId"] == "u-1" and wire["createdAt"] and wire["epoch"] == "e"
    assert wire["tasks"][0]["sessionId"] == "s-1"
    assert wire["tasks"][0]["lastSeq"] == 0 and wire["tasks"][0]["attempts"] == 0
    agent = AgentView(
        id="a",
        name="box",
        status="online",
        capabilities=["custom"],
        load=AgentLoad(running=1, max=4),
        system_info={"cpu": 1.0, "memory": 2.0, "disk": 3.0},
    )
    agent_wire = agent.wire()
    assert agent_wire["load"] == {"running": 1, "max": 4}
    assert agent_wire["systemInfo"] == {"cpu": 1.0, "memory": 2.0, "disk": 3.0}
    assert {"connectedAt", "lastHeartbeat", "capabilities", "version"} <= set(agent_wire)
