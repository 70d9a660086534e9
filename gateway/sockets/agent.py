"""The `/agent` namespace: agent daemons (PROTOCOL.md §5).

Output (`worker:output`, `task:stream`) takes the hot path: one Lua script stores it in the
session's stream, once per seq. Everything else becomes a message to the task or agent
actor. An agent may only speak for itself and its own tasks (AUTH_002 otherwise).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from actors import agent_address, task_address
from gateway.rate_limit import AgentRateLimiter
from gateway.revocation import Revocation
from gateway.sockets.base import BaseNamespace, ConnectionRefused
from orchestra import keys
from orchestra.codec import now_iso
from orchestra.errors import AuthenticationFailed, Forbidden, NotFound, OrchestraError
from orchestra.protocol import (
    AgentHeartbeat,
    AgentRegister,
    TaskAccepted,
    TaskProgress,
    TaskRejected,
    TaskResult,
    TaskStream,
    WorkerOutput,
    WorkerPermissionCancelled,
    WorkerPermissionRequest,
    WorkerStatusReport,
)
from orchestra.protocol.agent import TaskRef

if TYPE_CHECKING:
    from gateway.node import Node


class AgentNamespace(BaseNamespace):
    events = frozenset(
        {
            "agent:register",
            "agent:heartbeat",
            "task:accepted",
            "task:rejected",
            "task:progress",
            "task:result",
            "worker:output",
            "task:stream",
            "worker:status",
            "worker:permission",
            "worker:permission:cancelled",
            "pong",
        }
    )

    def __init__(self, namespace: str, node: Node) -> None:
        super().__init__(namespace, node)
        self.agents: dict[str, str] = {}  # socket -> agent id
        self.versions: dict[str, int] = {}  # socket -> credential version it signed in under
        self.rate = AgentRateLimiter(
            self.settings.agent_rate_limit_per_s, self.settings.agent_rate_limit_burst
        )

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        node = self.node
        try:
            agent_id, version = await node.verify_agent(auth)
        except OrchestraError as exc:
            raise ConnectionRefused(exc) from None
        await node.socket_caps.claim(self.namespace, sid, agent_id)
        self.agents[sid] = agent_id
        self.versions[sid] = version
        try:  # a revocation heard while this socket was not yet listed did not end it
            await node.credentials.check_agent(agent_id, version)
        except AuthenticationFailed as exc:
            self.agents.pop(sid, None)
            self.versions.pop(sid, None)
            await node.socket_caps.release(self.namespace, sid)
            raise ConnectionRefused(exc) from None
        self.remember_compression(sid, auth)
        await self.enter_room(sid, f"agent:{agent_id}")

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        agent_id = self.agents.pop(sid, None)
        self.versions.pop(sid, None)
        self.forget(sid)
        await self.node.socket_caps.release(self.namespace, sid)
        if agent_id is not None and agent_id not in self.agents.values():
            self.rate.forget(agent_id)
        if agent_id is not None:
            await self.node.system.ref(agent_address(agent_id)).tell(
                "disconnected", {"socketId": sid}
            )

    async def before_request(self, sid: str, event: str) -> None:
        """An agent revoked or rotated since it signed in may say nothing more."""
        agent_id = self.agents.get(sid)
        if agent_id is None:
            return
        try:
            await self.node.credentials.check_agent(agent_id, self.versions.get(sid, 0))
        except AuthenticationFailed as error:
            await self._end(sid, error)
            raise
        self.rate.check(agent_id)  # RATE_001; in this node's memory, no Redis round trip

    async def revoked(self, revocation: Revocation) -> None:
        """An agent was revoked or its secret rotated (on any node): its sockets here end."""
        if revocation.kind != "agent":
            return
        for sid, agent_id in list(self.agents.items()):
            if agent_id == revocation.subject and self.versions.get(sid, 0) < revocation.version:
                await self._end(sid, AuthenticationFailed("the agent was revoked"))

    async def recheck(self) -> None:
        """Check every agent socket again (revocations may have been missed)."""
        for sid, agent_id in list(self.agents.items()):
            try:
                await self.node.credentials.check_agent(agent_id, self.versions.get(sid, 0))
            except AuthenticationFailed as error:
                await self._end(sid, error)

    async def _end(self, sid: str, error: AuthenticationFailed) -> None:
        await self.emit("error", {"code": error.code, "message": error.message}, to=sid)
        await self.disconnect(sid)

    def me(self, sid: str, claimed: str) -> str:
        agent_id = self.agents.get(sid)
        if agent_id is None or claimed != agent_id:
            raise Forbidden("an agent may only speak for itself")
        return agent_id

    # -- registration and health -------------------------------------------------------

    async def on_agent_register(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = AgentRegister.parse(payload)
        agent_id = self.me(sid, request.agent_id)
        record = await self.node.store.get_agent(agent_id)
        if record is None:
            raise NotFound("unknown agent")
        answer = await self.node.system.ref(agent_address(agent_id)).ask(
            "connected",
            {
                "ownerId": record.owner_id,
                "name": record.name if request.name == agent_id else request.name,
                "capabilities": request.capabilities,
                "tools": [tool.model_dump(exclude_none=True) for tool in request.tools],
                "version": request.software_version,
                "metadata": request.metadata,
                "maxConcurrency": request.max_concurrency,
                "socketId": sid,
                "node": self.node.settings.node_id,
                "lastCommandId": request.last_command_id or 0,
                "runningTasks": None
                if request.running_tasks is None
                else [task.task_id for task in request.running_tasks],
            },
        )
        data = {"success": True, "agentId": agent_id, "assignedTasks": answer["assignedTasks"]}
        await self.send(sid, "agent:registered", data)
        # Commands the agent has not taken yet go out again, in order, before anything new.
        await self.node.outlet.resend_commands(sid, agent_id, request.last_command_id or 0)
        return data

    async def on_agent_heartbeat(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = AgentHeartbeat.parse(payload)
        agent_id = self.me(sid, request.agent_id)
        info = request.system_info.model_dump() if request.system_info else None
        await self.node.system.ref(agent_address(agent_id)).tell("heartbeat", {"systemInfo": info})
        return {}

    async def on_pong(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        agent_id = self.agents.get(sid)
        sent = payload.get("timestamp")
        if agent_id is not None and isinstance(sent, int | float) and not isinstance(sent, bool):
            latency_ms = max(0.0, time.time() * 1000 - float(sent))
            await self.node.system.ref(agent_address(agent_id)).tell(
                "latency", {"latencyMs": round(latency_ms, 1)}
            )
        return {}

    # -- output: the hot path ----------------------------------------------------------

    async def on_task_stream(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        item = TaskStream.parse(payload)
        data = {"type": item.type, "data": item.data, "timestamp": _timestamp(payload)}
        return await self._store_output(sid, item, "task:stream", data)

    async def on_worker_output(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        item = WorkerOutput.parse(payload)
        data = {
            "type": item.type,
            "content": item.content,
            "timestamp": _timestamp(payload),
            "details": item.details,
            "usage": item.usage,
            "stats": item.stats,
        }
        # What the task keeps of its output (PROTOCOL.md §8): a turn's usage, summed, and
        # the latest session id of the tool's own conversation.
        usage = item.usage if item.type == "result" and item.usage else None
        session = (item.details or {}).get("workerSessionId") if item.type == "system" else None
        return await self._store_output(
            sid,
            item,
            "worker:output",
            {k: v for k, v in data.items() if v is not None},
            usage=usage,
            worker_session_id=session if isinstance(session, str) and session else None,
        )

    async def _store_output(
        self,
        sid: str,
        item: TaskStream | WorkerOutput,
        event: str,
        data: dict[str, Any],
        *,
        usage: dict[str, Any] | None = None,
        worker_session_id: str | None = None,
    ) -> dict[str, Any]:
        agent_id = self.me(sid, item.agent_id)
        session_id = await self.node.ops.session_of_task(item.task_id)
        if session_id is None:
            raise NotFound("unknown task")
        # `seq` is put in by the script: the task's numbering, which may differ from the
        # agent's after a retry.
        event_data = {"sessionId": session_id, "taskId": item.task_id, "agentId": agent_id, **data}
        answer = await self.node.scripts.append_output(
            keys=[keys.task(session_id, item.task_id), keys.session_events(session_id)],
            args=[
                item.seq,
                event,
                json.dumps(event_data, default=str),
                json.dumps(agent_id),
                "" if item.attempt is None else item.attempt,
                "" if usage is None else json.dumps(_usage_numbers(usage)),
                "" if worker_session_id is None else json.dumps(worker_session_id),
            ],
        )
        if answer[0] == -1:
            raise NotFound("unknown task")
        if answer[0] == -2:
            raise Forbidden("this task is not assigned to this agent")
        if answer[0] == -3:
            return {"stale": True, "persistedSeq": int(answer[1])}
        return {"persistedSeq": int(answer[0])}

    # -- lifecycle reports: messages to the task actor ---------------------------------

    async def on_task_accepted(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, TaskAccepted.parse(payload), "accepted")

    async def on_task_rejected(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, TaskRejected.parse(payload), "rejected")

    async def on_task_progress(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, TaskProgress.parse(payload), "progress")

    async def on_task_result(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, TaskResult.parse(payload), "result")

    async def on_worker_status(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, WorkerStatusReport.parse(payload), "status")

    async def on_worker_permission(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._to_task(sid, WorkerPermissionRequest.parse(payload), "permission:ask")

    async def on_worker_permission_cancelled(
        self, sid: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        request = WorkerPermissionCancelled.parse(payload)
        return await self._to_task(sid, request, "permission:cancelled")

    async def _to_task(self, sid: str, request: TaskRef, message: str) -> dict[str, Any]:
        self.me(sid, request.agent_id)
        session_id = await self.node.ops.session_of_task(request.task_id)
        if session_id is None:
            raise NotFound("unknown task")
        body = request.wire()
        ref = self.node.system.ref(task_address(session_id, request.task_id))
        answer = await ref.ask(message, body)
        # `{stale: true}` for a report about an earlier attempt (PROTOCOL.md §5, 1.1).
        return answer if isinstance(answer, dict) else {}


def _timestamp(payload: dict[str, Any]) -> str:
    value = payload.get("timestamp")
    return value if isinstance(value, str) and len(value) <= 64 else now_iso()


_USAGE_FIELDS = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "costUsd")


def _usage_numbers(usage: dict[str, Any]) -> dict[str, float]:
    """The TokenUsage fields that are finite, non-negative numbers (the rest is not summed)."""
    return {
        name: value
        for name in _USAGE_FIELDS
        if isinstance(value := usage.get(name), int | float)
        and not isinstance(value, bool)
        and 0 <= value < 1e15
    }
