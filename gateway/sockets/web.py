"""The `/web` namespace: browsers and scripts acting for a user (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gateway.audit import permission_decided
from gateway.auth import Principal, user_view
from gateway.revocation import Revocation
from gateway.sockets.base import BaseNamespace, ConnectionRefused
from orchestra.codec import valid_event_id
from orchestra.errors import AuthenticationFailed, OrchestraError
from orchestra.protocol import (
    SessionJoin,
    SessionLeave,
    WorkerInput,
    WorkerPermissionDecision,
    WorkerStart,
    WorkerStop,
)

if TYPE_CHECKING:
    from gateway.node import Node


class WebNamespace(BaseNamespace):
    events = frozenset(
        {
            "agents:list",
            "session:join",
            "session:leave",
            "worker:start",
            "worker:input",
            "worker:stop",
            "worker:permission",
            "user:sync",
        }
    )

    def __init__(self, namespace: str, node: Node) -> None:
        super().__init__(namespace, node)
        self.principals: dict[str, Principal] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            token = (query.get("token") or [None])[0]
        try:
            principal = await self.node.tokens.authenticate(token)
        except OrchestraError as exc:
            raise ConnectionRefused(exc) from None
        await self.node.socket_caps.claim(self.namespace, sid, principal.user_id)
        self.principals[sid] = principal
        try:  # a revocation heard while this socket was not yet listed did not end it
            await self.node.tokens.check(principal)
        except AuthenticationFailed as exc:
            self.principals.pop(sid, None)
            await self.node.socket_caps.release(self.namespace, sid)
            raise ConnectionRefused(exc) from None
        self.remember_compression(sid, auth)
        await self.enter_room(sid, f"user:{principal.user_id}")
        if principal.is_admin:
            await self.enter_room(sid, "admins")

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.principals.pop(sid, None)
        self.forget(sid)
        await self.node.socket_caps.release(self.namespace, sid)
        await self.node.feed.drop_socket(sid)

    async def who(self, sid: str) -> Principal:
        """The caller; a token that expired or was revoked while connected ends the
        connection (revocations normally end it at once: see `revoked`)."""
        principal = self.principals.get(sid)
        try:
            if principal is None:
                raise AuthenticationFailed("access token expired")
            await self.node.tokens.check(principal)
        except AuthenticationFailed as error:
            await self._end(sid, error)
            raise
        return principal

    async def revoked(self, revocation: Revocation) -> None:
        """A user's tokens or a sign-in were revoked (on any node): their sockets here end."""
        for sid, principal in list(self.principals.items()):
            if (
                revocation.kind == "user"
                and principal.user_id == revocation.subject
                and principal.version < revocation.version
            ) or (revocation.kind == "family" and principal.family == revocation.subject):
                await self._end(sid, AuthenticationFailed("the token was revoked"))

    async def recheck(self) -> None:
        """Check every socket's token again (revocations may have been missed)."""
        for sid, principal in list(self.principals.items()):
            try:
                await self.node.tokens.check(principal)
            except AuthenticationFailed as error:
                await self._end(sid, error)

    async def _end(self, sid: str, error: AuthenticationFailed) -> None:
        """Tell the socket why (an `error` event AUTH_001), then disconnect it."""
        self.principals.pop(sid, None)
        await self.emit("error", {"code": error.code, "message": error.message}, to=sid)
        await self.disconnect(sid)

    def log_identity(self, sid: str) -> dict[str, str]:
        principal = self.principals.get(sid)
        return {"userId": str(principal.user_id)} if principal is not None else {}

    async def before_request(self, sid: str, event: str) -> None:
        who = await self.who(sid)
        await self.node.rate_limiter.check(f"user:{who.user_id}")

    # -- requests ----------------------------------------------------------------------

    async def on_agents_list(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        return {"agents": [a.wire() for a in await self.node.ops.visible_agents(who)]}

    async def on_user_sync(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        ops = self.node.ops
        user = await self.node.store.get_user(who.user_id)
        sessions = []
        waiting: list[dict[str, Any]] = []
        for record in await self.node.store.list_sessions(who.user_id, admin=who.is_admin):
            try:
                state = await ops.session_for(who, record.id)
            except OrchestraError:
                continue  # in SQL but gone from Redis: history only, over REST
            view, pending = await ops.session_and_permissions(state)
            sessions.append(view)
            waiting += pending
        return {
            "user": user_view(user) if user else None,
            "sessions": sessions,
            "agents": [a.wire() for a in await ops.visible_agents(who)],
            "pendingPermissions": waiting,
        }

    async def on_session_join(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        request = SessionJoin.parse(payload)
        state = await self.node.ops.session_for(who, request.session_id)
        epoch = state["epoch"]
        resync: str
        if request.epoch is not None and request.epoch != epoch:
            resync = "the session's event stream was begun anew (epoch changed)"
        elif request.last_event_id is not None and not valid_event_id(request.last_event_id):
            resync = "lastEventId is not an eventId of this session"
        else:
            joined = await self.node.feed.join(
                state["id"], sid, request.last_event_id, batch=request.batch
            )
            if joined.resumed:
                # Read after the replay: a request resolved meanwhile is not shown pending.
                view, pending = await self.node.ops.session_and_permissions(
                    await self.node.ops.session_for(who, request.session_id)
                )
                return {
                    "session": view,
                    "lastEventId": joined.last_event_id,
                    "epoch": epoch,
                    "pendingPermissions": pending,
                }
            resync = (
                "lastEventId is older than what the live stream keeps"
                if request.last_event_id is not None
                else "the live stream no longer holds the session's first events"
            )
        await self.send(sid, "session:resync", {"sessionId": state["id"], "reason": resync})
        view, pending = await self.node.ops.session_and_permissions(state)
        return {"session": view, "lastEventId": None, "epoch": epoch, "pendingPermissions": pending}

    async def on_session_leave(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        await self.who(sid)
        request = SessionLeave.parse(payload)
        await self.node.feed.leave(request.session_id, sid)
        return {}

    async def on_worker_start(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        return await self.node.ops.start_worker(who, WorkerStart.parse(payload))

    async def on_worker_input(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        request = WorkerInput.parse(payload)
        body = {"input": request.input, "eof": bool(request.eof), "requestId": request.id}
        result: dict[str, Any] = await self.node.ops.task_command(
            who, request.task_id, "input", body
        )
        return result

    async def on_worker_stop(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        request = WorkerStop.parse(payload)
        await self.node.ops.task_command(who, request.task_id, "stop", {"mode": request.mode})
        return {}

    async def on_worker_permission(self, sid: str, payload: dict[str, Any]) -> dict[str, Any]:
        who = await self.who(sid)
        request = WorkerPermissionDecision.parse(payload)
        answer: dict[str, Any] = await self.node.ops.task_command(
            who, request.task_id, "permission", request.wire()
        )
        environ = self.server.get_environ(sid, namespace=self.namespace)
        await permission_decided(self.node, who.user_id, request.wire(), answer, environ)
        return answer
