"""What users and agents may do, shared by the REST routes and the socket namespaces.

Each operation checks who may do it (PROTOCOL.md §7), then turns the request into actor
messages. Reads of live state come straight from the actors' Redis hashes.
"""

from __future__ import annotations

import asyncio
import posixpath
from typing import Any

from redis.asyncio import Redis

from actors import ActorSystem, permissions, session_address, task_address
from actors.dispatch import strategy
from actors.values import read_state, read_states, text
from actors.views import agent_status, agent_view, session_view
from gateway.ai_configs import resolve_ai_config
from gateway.auth import Principal
from gateway.revocation import Credentials
from orchestra import keys
from orchestra.codec import new_id
from orchestra.db import Store
from orchestra.errors import AgentNotAvailable, Forbidden, InvalidParameters, NotFound
from orchestra.protocol import AgentView, WorkerStart

_CACHE_LIMIT = 100_000
_NOT_YOURS = "not yours, or no such thing"


class Operations:
    """The gateway's use cases, independent of the transport that asked for them."""

    def __init__(
        self, redis: Redis, store: Store, system: ActorSystem, credentials: Credentials
    ) -> None:
        self.redis = redis
        self.store = store
        self.system = system
        self.credentials = credentials
        self.settings = system.settings
        self._task_sessions: dict[str, str] = {}  # taskId -> sessionId, never changes
        # agentId -> (credential version, owner, revoked) as SQL had them at that version
        self._agents: dict[str, tuple[int, str, bool]] = {}

    # -- reads -------------------------------------------------------------------------

    async def state(self, key: str) -> dict[str, Any]:
        return await read_state(self.redis, key)

    async def session_of_task(self, task_id: str) -> str | None:
        sid = self._task_sessions.get(task_id)
        if sid is None:
            raw = await self.redis.hget(keys.task_index(), task_id)
            if raw is None:
                return None
            sid = text(raw)
            self._remember(task_id, sid)
        return sid

    def _remember(self, task_id: str, session_id: str) -> None:
        if len(self._task_sessions) >= _CACHE_LIMIT:
            self._task_sessions.clear()  # cheap to rebuild: one HGET per task seen again
        self._task_sessions[task_id] = session_id

    async def visible_agents(self, who: Principal) -> list[AgentView]:
        records = await self.store.list_agents(None if who.is_admin else who.user_id)
        views = []
        for record in records:
            if record.revoked:
                continue
            state = await self.state(keys.agent(record.id, self.settings.partitions))
            state.setdefault("id", record.id)
            state.setdefault("name", record.name)
            state.setdefault("capabilities", record.capabilities)
            state.setdefault("version", record.version)
            views.append(agent_view(state))
        return views

    async def session_for(self, who: Principal, session_id: str) -> dict[str, Any]:
        """The session's state, if `who` may see it (AUTH_002 otherwise, TASK_002 if unknown)."""
        state = await self.state(keys.session(session_id, self.settings.partitions))
        if not state:
            # Only an admin learns that an id does not exist (PROTOCOL.md §7).
            if who.is_admin:
                raise NotFound("unknown session")
            raise Forbidden(_NOT_YOURS)
        if not (who.is_admin or who.user_id in (state.get("participants") or [])):
            raise Forbidden(_NOT_YOURS)
        return state

    async def session_view(self, state: dict[str, Any]) -> dict[str, Any]:
        view, _ = await self.session_and_permissions(state)
        return view

    async def session_and_permissions(
        self, state: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The SessionView and the permission requests waiting in it (PermissionViews)."""
        partitions = self.settings.partitions
        task_keys = [keys.task(state["id"], tid, partitions) for tid in state.get("tasks") or []]
        tasks = await read_states(self.redis, task_keys)
        waiting = [view for task in tasks for view in permissions.public_views(task)]
        return session_view(state, tasks).wire(), waiting

    async def task_for(self, who: Principal, task_id: str) -> dict[str, Any]:
        sid = await self.session_of_task(task_id)
        if sid is None:
            if who.is_admin:
                raise NotFound("unknown task")
            raise Forbidden(_NOT_YOURS)
        await self.session_for(who, sid)
        state = await self.state(keys.task(sid, task_id, self.settings.partitions))
        if not state:
            raise NotFound("unknown task")
        return state

    # -- commands ----------------------------------------------------------------------

    async def create_session(
        self, who: Principal, *, title: str = "", agent_id: str | None = None
    ) -> dict[str, Any]:
        if agent_id is not None:
            await self._usable_agent(who, agent_id)
        sid = await self._new_session(who, title, agent_id)
        await self._list_session(who, title, agent_id, sid)
        return await self.session_for(who, sid)

    async def _new_session(self, who: Principal, title: str, agent_id: str | None) -> str:
        """A new session actor (the agent, if any, checked already); its id."""
        sid = new_id()
        await self.system.ref(session_address(sid)).ask(
            "create", {"ownerId": who.user_id, "title": title, "agentId": agent_id}
        )
        return sid

    async def _list_session(
        self, who: Principal, title: str, agent_id: str | None, session_id: str
    ) -> None:
        """The actor writes SQL after its commit, which its answer does not wait for: a
        list read right after the gateway's answer must find the session all the same."""
        await self.store.ensure_session(
            who.user_id, title=title, agent_id=agent_id, session_id=session_id
        )

    async def start_worker(self, who: Principal, request: WorkerStart) -> dict[str, Any]:
        if request.tool == "custom" and not request.command:
            raise InvalidParameters("the custom tool needs a command")
        strategy(request.strategy)  # an unknown strategy is a PARAM_001 now, not later
        parameters = await self._parameters(who, request)
        agent_id = request.agent_id
        task_id = request.task_id or new_id()
        # A start sent again with the same taskId (its answer was lost with a gateway) is
        # the same start: it is finished if need be and answered, never run twice.
        earlier = await self.session_of_task(task_id) if request.task_id else None
        new_session = False
        if earlier is not None:
            if request.session_id not in (None, earlier):
                raise InvalidParameters("taskId is already in use")
            sid = (await self.session_for(who, earlier))["id"]
        else:
            if agent_id is not None:
                agent = await self._require_available(who, agent_id)
                check_working_directory(agent, request.working_directory)
            if request.session_id is not None:
                session = await self.session_for(who, request.session_id)
                if session["status"] == "ended":
                    raise InvalidParameters("the session has ended")
                sid = session["id"]
            else:
                sid = await self._new_session(who, "", agent_id)
                new_session = True
            claimed = await self.redis.hsetnx(keys.task_index(), task_id, sid)
            if not claimed and await self.session_of_task(task_id) != sid:
                raise InvalidParameters("taskId is already in use")
        self._remember(task_id, sid)
        created = self.system.ref(task_address(sid, task_id)).ask(
            "create",
            {
                "ownerId": who.user_id,
                "tool": request.tool,
                "type": request.type,
                "priority": request.priority,
                "agentId": agent_id,
                "parameters": parameters,
                "requiredCapabilities": request.required_capabilities,
                "strategy": request.strategy,
            },
        )
        if new_session:
            # The session's SQL row is written while the task is created and assigned:
            # both are done before the answer, neither waits for the other.
            view, _ = await asyncio.gather(created, self._list_session(who, "", agent_id, sid))
        else:
            view = await created
        return {
            "taskId": task_id,
            "sessionId": sid,
            "agentId": view.get("agentId"),
            "status": view["status"],
        }

    async def task_command(
        self, who: Principal, task_id: str, message: str, body: dict[str, Any]
    ) -> Any:
        state = await self.task_for(who, task_id)
        body = body | {"userId": who.user_id}
        return await self.system.ref(task_address(state["sessionId"], task_id)).ask(message, body)

    async def _parameters(self, who: Principal, request: WorkerStart) -> dict[str, Any]:
        """The task's parameters: the request's, over those of its AI config (whose key is
        not among them: it is sealed for the agent when the task is assigned)."""
        params: dict[str, Any] = {}
        if request.ai_config_id is not None:
            config = await resolve_ai_config(
                self.store, self.settings, who.user_id, request.ai_config_id
            )
            if config.tool != request.tool:
                raise InvalidParameters(
                    f"AI config {request.ai_config_id} is for {config.tool}, not {request.tool}"
                )
            params.update(
                aiConfigId=request.ai_config_id,
                model=config.model,
                permissionMode=config.permission_mode,
                allowedTools=config.allowed_tools,
                baseUrl=config.base_url,
                env=dict(config.env or {}) or None,
            )
        given: dict[str, Any] = {
            "prompt": request.initial_prompt,
            "workingDirectory": request.working_directory,
            "workerSessionId": request.worker_session_id,
            # The 1.0 name, for agents that read only that one.
            "claudeSessionId": request.worker_session_id,
            "model": request.model,
            "permissionMode": request.permission_mode,
            "allowedTools": request.allowed_tools,
            "command": request.command,
            "pty": request.pty or None,
            "timeoutS": request.timeout_s,
        }
        params.update({k: v for k, v in given.items() if v is not None})
        if request.env:
            params["env"] = {**(params.get("env") or {}), **request.env}
        return {k: v for k, v in params.items() if v is not None}

    # -- agents ------------------------------------------------------------------------

    async def _usable_agent(self, who: Principal, agent_id: str) -> None:
        """AGENT_001 for an unknown or revoked agent, AUTH_002 for someone else's.

        An agent's owner never changes and a revocation is for good, and every revocation
        raises the agent's credential version on every node at once (`Credentials`): so
        the SQL record, read once, holds for as long as the version it was read at."""
        version = await self.credentials.version("agent", agent_id)
        known = self._agents.get(agent_id)
        if known is None or known[0] != version:
            record = await self.store.get_agent(agent_id)
            if record is None:
                raise AgentNotAvailable("unknown agent")
            if len(self._agents) >= _CACHE_LIMIT:
                self._agents.clear()
            known = self._agents[agent_id] = (version, record.owner_id, record.revoked)
        _, owner_id, revoked = known
        if revoked:
            raise AgentNotAvailable("unknown agent")
        if not (who.is_admin or owner_id == who.user_id):
            raise Forbidden("this agent belongs to someone else")

    async def _require_available(self, who: Principal, agent_id: str) -> dict[str, Any]:
        # The SQL record (ownership, revocation) and the live state, read at once.
        _, state = await asyncio.gather(
            self._usable_agent(who, agent_id),
            self.state(keys.agent(agent_id, self.settings.partitions)),
        )
        status = agent_status(state) if state else "offline"
        if status != "online":
            raise AgentNotAvailable(f"agent is {status}", {"agentId": agent_id})
        return state


def check_working_directory(agent: dict[str, Any], requested: str | None) -> None:
    """PARAM_001 when an absolute working directory lies outside the roots the agent
    allows, as far as its path alone tells (`..` resolved). The agent checks again on its
    machine, where links are resolved too."""
    roots = (agent.get("metadata") or {}).get("allowedRoots")
    if not requested or not isinstance(roots, list) or not requested.startswith("/"):
        return
    path = posixpath.normpath(requested)
    for root in roots:
        if isinstance(root, str) and root.startswith("/"):
            root = posixpath.normpath(root)
            if path == root or path.startswith(root.rstrip("/") + "/"):
                return
    raise InvalidParameters(
        f"working directory {requested} is outside the roots this agent allows",
        {"allowedRoots": roots},
    )
