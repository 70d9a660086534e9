"""Read models built from actor state: what clients see of agents, sessions and tasks."""

from __future__ import annotations

from typing import Any

from orchestra.protocol import AgentLoad, AgentView, AgentWorkdirs, SessionView, TaskView

# What AgentView shows of the directories an agent reported (its metadata is its own).
_MAX_ROOTS = 32
_MAX_RECENT = 20
_MAX_PATH_CHARS = 4096


def task_view(state: dict[str, Any]) -> TaskView:
    return TaskView(
        id=state["id"],
        session_id=state["sessionId"],
        agent_id=state.get("agentId"),
        tool=state["tool"],
        type=state.get("type", "code"),
        priority=state.get("priority", "normal"),
        status=state["status"],
        created_at=state["createdAt"],
        started_at=state.get("startedAt"),
        finished_at=state.get("finishedAt"),
        attempts=int(state.get("attempts", 0)),
        last_seq=int(state.get("lastSeq", 0)),
        worker_session_id=state.get("workerSessionId"),
        usage=state.get("usage"),
        error=state.get("error"),
        exit_code=state.get("exitCode"),
        result=state.get("result"),
    )


def agent_view(state: dict[str, Any]) -> AgentView:
    running = state.get("running") or []
    return AgentView(
        id=state["id"],
        name=state.get("name", ""),
        status=agent_status(state),
        connected_at=state.get("connectedAt"),
        last_heartbeat=state.get("lastHeartbeat"),
        latency=state.get("latencyMs"),
        healthy=agent_healthy(state),
        capabilities=list(state.get("capabilities") or []),
        tools=list(state.get("tools") or []),
        agent_version=state.get("version"),
        version=state.get("version"),
        system_info=state.get("systemInfo"),
        load=AgentLoad(running=len(running), max=int(state.get("maxConcurrency") or 1)),
        workdirs=agent_workdirs(state.get("metadata")),
    )


def agent_workdirs(metadata: Any) -> AgentWorkdirs | None:
    """`allowedRoots` and `recentWorkdirs` of the agent's metadata, as far as they are
    lists of paths; None when the agent reported neither."""
    if not isinstance(metadata, dict):
        return None
    roots, recent = metadata.get("allowedRoots"), metadata.get("recentWorkdirs")
    if not isinstance(roots, list) and not isinstance(recent, list):
        return None
    return AgentWorkdirs(roots=_paths(roots, _MAX_ROOTS), recent=_paths(recent, _MAX_RECENT))


def _paths(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    paths = [p for p in value if isinstance(p, str) and 0 < len(p) <= _MAX_PATH_CHARS]
    return list(dict.fromkeys(paths))[:limit]


def agent_healthy(state: dict[str, Any]) -> bool:
    """Connected (online or busy) and not marked unhealthy by an unanswered ping (the
    state's `healthy`, see `actors/agent_health.py`; absent counts as healthy)."""
    return agent_status(state) != "offline" and state.get("healthy") is not False


def agent_status(state: dict[str, Any]) -> str:
    """online | busy | offline, derived so that it can never disagree with the load."""
    if state.get("status") != "online":
        return "offline"
    running = state.get("running") or []
    return "busy" if len(running) >= int(state.get("maxConcurrency") or 1) else "online"


def session_view(state: dict[str, Any], tasks: list[dict[str, Any]]) -> SessionView:
    return SessionView(
        id=state["id"],
        owner_id=state["ownerId"],
        title=state.get("title", ""),
        status=state["status"],
        participants=list(state.get("participants") or []),
        agent_id=state.get("agentId"),
        created_at=state["createdAt"],
        epoch=state["epoch"],
        tasks=[task_view(t) for t in tasks if t],
    )
