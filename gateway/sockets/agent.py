"""The `/agent` namespace: agent daemons (PROTOCOL.md §5).

Output (`worker:output`, `task:stream`) takes the hot path: one Lua script call per frame
(one item, or a batch of them) stores it in the session's stream, once per seq
(`gateway/sockets/output.py`). Everything else becomes a message to the task or agent
actor. An agent may only speak for itself and its own tasks (AUTH_002 otherwise).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actors import agent_address, task_address
from gateway.rate_limit import AgentRateLimiter
from gateway.revocation import Revocation
from gateway.sockets import output
from gateway.sockets.base import BaseNamespace, ConnectionRefused, decoded_bytes
from orchestra import metrics
from orchestra.errors import AuthenticationFailed, Forbidden, NotFound, OrchestraError
from orchestra.protocol import (
    AgentHeartbeat,
    AgentRegister,
    TaskAccepted,
    TaskProgress,
    TaskRejected,
    TaskResult,
    TaskStream,
    TaskStreamBatch,
    WorkerOutput,
    WorkerOutputBatch,
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

    def log_identity(self, sid: str) -> dict[str, str]:
        agent_id = self.agents.get(sid)
        return {"agentId": agent_id} if agent_id is not None else {}

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
        # A first ping now, so that AgentView shows a latency before the health check's.
        await self.send(sid, "ping", {"timestamp": int(time.time() * 1000)})
        return data

    async def on_agent_heartbeat(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = AgentHeartbeat.parse(payload)
        agent_id = self.me(sid, request.agent_id)
        info = request.system_info.model_dump() if request.system_info else None
        await self.node.system.ref(agent_address(agent_id)).tell(
            "heartbeat", {"systemInfo": info, "metadata": request.metadata}
        )
        # No ping here: the leader's health check pings every agent on its own interval
        # (`gateway/jobs/health.py`), and tells an unanswered ping.
        return {}

    async def on_pong(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        agent_id = self.agents.get(sid)
        sent = payload.get("timestamp")
        if agent_id is not None and isinstance(sent, int | float) and not isinstance(sent, bool):
            now_ms = time.time() * 1000
            latency_ms = max(0.0, now_ms - float(sent))
            metrics.AGENT_PING.observe(latency_ms / 1000)
            # `sentAt`: the ping it answers, kept within 64 bits whatever the agent echoed.
            sent_at = int(max(0.0, min(float(sent), now_ms)))
            await self.node.system.ref(agent_address(agent_id)).tell(
                "latency", {"latencyMs": round(latency_ms, 1), "sentAt": sent_at}
            )
        return {}

    # -- output: the hot path (gateway/sockets/output.py) ------------------------------

    async def on_task_stream(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        if "items" in payload:
            output.check_batch_size(decoded_bytes.get())
            batch = TaskStreamBatch.parse(payload)
            lines = [output.stream_item(item, batch.timestamp) for item in batch.items]
            return await self._store_output(sid, batch, batch.seq, "task:stream", lines)
        one = TaskStream.parse(payload)
        return await self._store_output(sid, one, one.seq, "task:stream", [output.stream_item(one)])

    async def on_worker_output(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        if "items" in payload:
            output.check_batch_size(decoded_bytes.get())
            batch = WorkerOutputBatch.parse(payload)
            items = [output.worker_item(item, batch.timestamp) for item in batch.items]
            return await self._store_output(sid, batch, batch.seq, "worker:output", items)
        one = WorkerOutput.parse(payload)
        items = [output.worker_item(one)]
        return await self._store_output(sid, one, one.seq, "worker:output", items)

    async def _store_output(
        self, sid: str, ref: TaskRef, seq: int, event: str, items: list[output.ItemArgs]
    ) -> dict[str, Any]:
        """One frame's items, stored with one script call (the task's session looked up
        once, from this node's cache after the first time)."""
        agent_id = self.me(sid, ref.agent_id)
        session_id = await self.node.ops.session_of_task(ref.task_id)
        if session_id is None:
            raise NotFound("unknown task")
        return await output.store(
            self.node.scripts,
            session_id=session_id,
            task_id=ref.task_id,
            agent_id=agent_id,
            attempt=ref.attempt,
            seq=seq,
            event=event,
            items=items,
            notifications_cap=self.node.settings.webhook_stream_max_len,
            partitions=self.node.settings.partitions,
        )

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
