"""Refused and accepted handshakes on `/web` and `/agent` (PROTOCOL.md §3), and what an agent
socket may send (§1, §5, §7), against a real gateway process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import pytest_asyncio
import socketio

from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.running import PASSWORD, Running
from tests.support.web import WebClient

# -- helpers (test_rest.py uses them too) ---------------------------------------------------


def sign(secret: str, agent_id: str, timestamp_ms: int | str, nonce: str) -> str:
    """hex(HMAC-SHA256(secret, f"{agentId}:{timestamp}:{nonce}")), as PROTOCOL.md §3 says."""
    message = f"{agent_id}:{timestamp_ms}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def agent_auth(
    agent_id: str, secret: str, *, timestamp_ms: int | None = None, nonce: str | None = None
) -> dict[str, Any]:
    """A correctly signed `/agent` handshake."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = nonce or secrets.token_hex(16)
    return {
        "agentId": agent_id,
        "timestamp": timestamp_ms,
        "nonce": nonce,
        "signature": sign(secret, agent_id, timestamp_ms, nonce),
    }


@dataclass
class Attempt:
    """One connection attempt: the client if it got in, else the `connect_error` data."""

    sio: socketio.AsyncClient
    connected: bool
    error: Any

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def attempt(url: str, namespace: str, auth: Any = None) -> Attempt:
    """Connect to `namespace` like any Socket.IO client would; never raises."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []

    async def on_connect_error(data: Any = None) -> None:
        errors.append(data)

    sio.on("connect_error", on_connect_error, namespace=namespace)
    try:
        await sio.connect(url, namespaces=[namespace], auth=auth, wait_timeout=30)
    except socketio.exceptions.ConnectionError:
        return Attempt(sio, False, errors[-1] if errors else None)
    return Attempt(sio, True, None)


async def refused_code(url: str, namespace: str, auth: Any = None) -> str | None:
    """The `connect_error` code of a refused handshake; None when it was let in."""
    result = await attempt(url, namespace, auth)
    await result.close()
    if result.connected:
        return None
    assert isinstance(result.error, dict), f"connect_error data should be an object: {result}"
    assert result.error.get("message"), result.error
    return str(result.error.get("code"))


async def agent_gets_in(url: str, auth: dict[str, Any], token: str) -> bool:
    """Whether a `/agent` handshake is accepted; if so, the agent registers, leaves, and
    the gateway (asked as the agent's owner, `token`) shows it offline again."""
    result = await attempt(url, "/agent", auth)
    if not result.connected:
        return False
    agent_id = auth["agentId"]
    try:
        answer = await call(
            result.sio,
            "/agent",
            "agent:register",
            {"agentId": agent_id, "name": "probe", "capabilities": [], "version": "0"},
        )
        assert answer["success"], answer
    finally:
        await result.close()

    async def is_offline() -> bool:
        status, body = await rest("GET", url + "/api/agents", token=token)
        assert status == 200, body
        return any(a["id"] == agent_id and a["status"] == "offline" for a in body["agents"])

    await wait_for(is_offline, what=f"agent {agent_id} to show offline", timeout_s=30)
    return True


async def call(sio: socketio.AsyncClient, namespace: str, event: str, payload: Any) -> Any:
    return await sio.call(event, payload, namespace=namespace, timeout=30)


async def rest(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(http, method, url, body, token)


def user_token(secret: str, user_id: str, **claims: Any) -> str:
    """An access token made by hand, as the gateway would make it unless `claims` differ
    (a claim given as None is left out)."""
    now = int(time.time())
    body = {
        "sub": user_id,
        "name": "alice",
        "adm": False,
        "typ": "access",
        "iat": now,
        "exp": now + 600,
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


# -- fixtures -------------------------------------------------------------------------------


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


@dataclass
class Gate:
    """A gateway with alice logged in and an agent of hers that no daemon runs."""

    deployment: Deployment
    gateway: Gateway
    token: str
    user: dict[str, Any]
    agent_id: str
    secret: str

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def jwt_secret(self) -> str:
        return self.deployment.env["ORCHESTRA_JWT_SECRET"]


@pytest_asyncio.fixture
async def gate(deployment: Deployment) -> AsyncIterator[Gate]:
    await deployment.create_user("alice", PASSWORD)
    gateway = await deployment.start_gateway("gw1")
    status, login = await rest(
        "POST", gateway.url + "/api/auth/login", {"username": "alice", "password": PASSWORD}
    )
    assert status == 200, login
    status, agent = await rest(
        "POST", gateway.url + "/api/agents", {"name": "bench"}, login["accessToken"]
    )
    assert status == 201, agent
    yield Gate(
        deployment,
        gateway,
        login["accessToken"],
        login["user"],
        agent["agentId"],
        agent["agentSecret"],
    )


async def registered_agent(gate: Gate) -> socketio.AsyncClient:
    """A raw `/agent` socket for the gate's agent, registered."""
    result = await attempt(gate.url, "/agent", agent_auth(gate.agent_id, gate.secret))
    assert result.connected, result.error
    answer = await call(
        result.sio,
        "/agent",
        "agent:register",
        {"agentId": gate.agent_id, "name": "bench", "capabilities": ["custom"], "version": "0"},
    )
    assert answer["success"], answer
    return result.sio


async def offline(gate: Gate, agent_id: str | None = None) -> None:
    """Wait until the gateway shows the agent offline: a closed socket marks it so at once."""
    agent_id = agent_id or gate.agent_id

    async def is_offline() -> bool:
        status, body = await rest("GET", gate.url + "/api/agents", token=gate.token)
        assert status == 200, body
        return any(a["id"] == agent_id and a["status"] == "offline" for a in body["agents"])

    await wait_for(is_offline, what=f"agent {agent_id} to show offline", timeout_s=30)


# -- /web -----------------------------------------------------------------------------------


async def test_web_handshakes_without_valid_credentials_are_refused(gate: Gate) -> None:
    uid = gate.user["id"]
    past = int(time.time()) - 3600
    cases: dict[str, Any] = {
        "no auth": None,
        "empty auth": {},
        "empty token": {"token": ""},
        "token not a string": {"token": 12345},
        "garbage token": {"token": "not-a-jwt"},
        "expired token": {"token": user_token(gate.jwt_secret, uid, iat=past, exp=past + 60)},
        "forged token": {"token": user_token("some-other-key-" + "k" * 32, uid)},
        "unsigned token": {
            "token": jwt.encode({"sub": uid, "typ": "access", "exp": past + 7200}, "", "none")
        },
        "refresh token": {"token": user_token(gate.jwt_secret, uid, typ="refresh")},
        "token without expiry": {"token": user_token(gate.jwt_secret, uid, exp=None)},
    }
    codes = {what: await refused_code(gate.url, "/web", auth) for what, auth in cases.items()}
    assert codes == dict.fromkeys(cases, "AUTH_001")

    # Still serving: the right token gets in.
    client = WebClient()
    await client.connect(gate.url, gate.token)
    try:
        agents = await client.ok("agents:list", {})
        assert [a["id"] for a in agents["agents"]] == [gate.agent_id]
    finally:
        await client.close()


async def test_web_token_in_the_query_string(gate: Gate) -> None:
    result = await attempt(f"{gate.url}/?token={gate.token}", "/web")
    try:
        assert result.connected, result.error
        answer = await call(result.sio, "/web", "agents:list", {})
        assert answer["success"], answer
    finally:
        await result.close()
    assert await refused_code(f"{gate.url}/?token=not-a-jwt", "/web") == "AUTH_001"


async def test_a_hand_made_token_with_the_gateways_key_is_accepted(gate: Gate) -> None:
    """The control for the refusals above: only the claims they change are at fault."""
    token = user_token(gate.jwt_secret, gate.user["id"])
    assert await refused_code(gate.url, "/web", {"token": token}) is None


# -- /agent ---------------------------------------------------------------------------------


async def test_agent_handshakes_with_bad_credentials_are_refused_and_the_gateway_serves_on(
    gate: Gate,
) -> None:
    agent_id, secret = gate.agent_id, gate.secret
    now = int(time.time() * 1000)

    def without(field: str) -> dict[str, Any]:
        auth = agent_auth(agent_id, secret)
        del auth[field]
        return auth

    def changed(**fields: Any) -> dict[str, Any]:
        return agent_auth(agent_id, secret) | fields

    unknown = secrets.token_hex(16)
    cases: dict[str, Any] = {
        "bad signature": agent_auth(agent_id, "not-the-secret"),
        "signature of other values": changed(nonce=secrets.token_hex(16)),
        "signature in upper case garbage": changed(signature="Z" * 64),
        "timestamp 301 s old": agent_auth(agent_id, secret, timestamp_ms=now - 301_500),
        "timestamp an hour old": agent_auth(agent_id, secret, timestamp_ms=now - 3_600_000),
        "timestamp 301 s ahead": agent_auth(agent_id, secret, timestamp_ms=now + 301_500),
        "timestamp in seconds": agent_auth(agent_id, secret, timestamp_ms=now // 1000),
        "timestamp not a number": changed(timestamp="yesterday"),
        "unknown agent": agent_auth(unknown, secret),
        "no agentId": without("agentId"),
        "no timestamp": without("timestamp"),
        "no nonce": without("nonce"),
        "no signature": without("signature"),
        "no auth": None,
        "auth not an object": "agent",
    }
    codes = {what: await refused_code(gate.url, "/agent", auth) for what, auth in cases.items()}
    assert codes == dict.fromkeys(cases, "AUTH_001")

    # The gateway still serves: the right handshake gets in and is answered.
    sio = await registered_agent(gate)
    try:
        beat = await call(sio, "/agent", "agent:heartbeat", {"agentId": agent_id})
        assert beat["success"], beat
    finally:
        await sio.disconnect()
    await offline(gate)
    status, health = await rest("GET", gate.url + "/health")
    assert status == 200 and health["status"] == "healthy"


async def test_a_nonce_is_good_for_one_handshake(gate: Gate) -> None:
    nonce = secrets.token_hex(16)
    first = agent_auth(gate.agent_id, gate.secret, nonce=nonce)
    assert await agent_gets_in(gate.url, first, gate.token)
    # A fresh timestamp and a correct signature: only the nonce was seen before.
    later = int(time.time() * 1000) + 5
    again = agent_auth(gate.agent_id, gate.secret, nonce=nonce, timestamp_ms=later)
    assert await refused_code(gate.url, "/agent", again) == "AUTH_001"
    # A new nonce is fine.
    assert await agent_gets_in(gate.url, agent_auth(gate.agent_id, gate.secret), gate.token)


async def test_a_refused_handshake_does_not_burn_the_nonce(gate: Gate) -> None:
    """Someone without the secret must not be able to use up an agent's nonces."""
    nonce = secrets.token_hex(16)
    forged = agent_auth(gate.agent_id, "not-the-secret", nonce=nonce)
    assert await refused_code(gate.url, "/agent", forged) == "AUTH_001"
    genuine = agent_auth(gate.agent_id, gate.secret, nonce=nonce)
    assert await agent_gets_in(gate.url, genuine, gate.token)


# -- what an agent socket may send ---------------------------------------------------------


async def test_stream_for_an_unknown_task_is_task_002(gate: Gate) -> None:
    sio = await registered_agent(gate)
    try:
        answer = await call(
            sio,
            "/agent",
            "task:stream",
            {
                "id": "req-unknown-task",
                "taskId": "no-such-task",
                "agentId": gate.agent_id,
                "seq": 1,
                "type": "stdout",
                "data": "hello",
                "timestamp": "2024-01-01T00:00:00.000Z",
            },
        )
        assert answer["success"] is False, answer
        assert answer["requestId"] == "req-unknown-task"
        assert answer["error"]["code"] == "TASK_002"
        assert answer["error"]["message"] and answer["error"]["timestamp"]
        reports: list[tuple[str, dict[str, Any]]] = [
            ("worker:output", {"seq": 1, "type": "assistant", "content": "x"}),
            ("worker:status", {"status": "running"}),
            ("task:result", {"success": True, "duration": 1}),
            ("task:accepted", {}),
        ]
        for event, payload in reports:
            body = {"taskId": "no-such-task", "agentId": gate.agent_id, **payload}
            answer = await call(sio, "/agent", event, body)
            assert answer["success"] is False and answer["error"]["code"] == "TASK_002", (
                event,
                answer,
            )
        # The connection is still there and answers.
        beat = await call(sio, "/agent", "agent:heartbeat", {"agentId": gate.agent_id})
        assert beat["success"], beat
    finally:
        await sio.disconnect()
    await offline(gate)


async def test_an_agent_may_not_speak_for_another(gate: Gate) -> None:
    status, other = await rest("POST", gate.url + "/api/agents", {"name": "other"}, gate.token)
    assert status == 201, other
    sio = await registered_agent(gate)
    try:
        answer = await call(
            sio, "/agent", "agent:heartbeat", {"agentId": other["agentId"], "timestamp": 1}
        )
        assert answer["success"] is False and answer["error"]["code"] == "AUTH_002", answer
        answer = await call(
            sio,
            "/agent",
            "agent:register",
            {"agentId": other["agentId"], "name": "x", "capabilities": [], "version": "0"},
        )
        assert answer["success"] is False and answer["error"]["code"] == "AUTH_002", answer
    finally:
        await sio.disconnect()
    await offline(gate)


async def test_events_of_the_other_namespace_are_param_001(gate: Gate) -> None:
    sio = await registered_agent(gate)
    try:
        for event, payload in [
            ("worker:start", {"agentId": gate.agent_id, "tool": "custom", "command": "true"}),
            ("agents:list", {}),
            ("session:join", {"sessionId": "x"}),
            ("user:sync", {}),
            ("no:such:event", {}),
        ]:
            answer = await call(sio, "/agent", event, payload)
            assert answer["success"] is False, (event, answer)
            assert answer["error"]["code"] == "PARAM_001", (event, answer)

        # Without an ack to answer, the refusal comes as an `error` event.
        errors: list[Any] = []

        async def on_error(data: Any) -> None:
            errors.append(data)

        sio.on("error", on_error, namespace="/agent")
        await sio.emit("worker:start", {"tool": "custom"}, namespace="/agent")
        await wait_for(lambda: errors, what="an error event on /agent", timeout_s=30)
        assert errors[0]["code"] == "PARAM_001"
        beat = await call(sio, "/agent", "agent:heartbeat", {"agentId": gate.agent_id})
        assert beat["success"], beat
    finally:
        await sio.disconnect()
    await offline(gate)

    client = WebClient()
    await client.connect(gate.url, gate.token)
    try:
        for event in ("task:stream", "agent:register", "agent:heartbeat", "pong"):
            answer = await client.call(event, {"agentId": gate.agent_id, "taskId": "t"})
            assert answer["success"] is False, (event, answer)
            assert answer["error"]["code"] == "PARAM_001", (event, answer)
    finally:
        await client.close()


async def test_an_agent_cannot_write_into_another_agents_task(running: Running) -> None:
    """§7: output for a task assigned to another agent answers AUTH_002 and stores nothing."""
    url, token = running.gateway.url, running.token
    status, rogue = await rest("POST", url + "/api/agents", {"name": "rogue"}, token)
    assert status == 201, rogue
    status, started = await rest(
        "POST",
        url + "/api/tasks",
        {"agentId": running.agent_id, "tool": "custom", "command": "echo hi"},
        token,
    )
    assert status == 201, started
    task_id, session_id = started["taskId"], started["sessionId"]

    async def finished() -> bool:
        status, body = await rest("GET", f"{url}/api/tasks/{task_id}", token=token)
        return status == 200 and body["task"]["status"] == "completed"

    await wait_for(finished, what="the task to complete")

    result = await attempt(url, "/agent", agent_auth(rogue["agentId"], rogue["agentSecret"]))
    assert result.connected, result.error
    try:
        reports: list[tuple[str, dict[str, Any]]] = [
            ("task:stream", {"seq": 99, "type": "stdout", "data": "injected"}),
            ("worker:output", {"seq": 100, "type": "assistant", "content": "injected"}),
            ("worker:status", {"status": "error", "message": "injected"}),
            ("task:result", {"success": False, "error": "injected", "duration": 0}),
        ]
        for event, payload in reports:
            body = {"taskId": task_id, "agentId": rogue["agentId"], **payload}
            answer = await call(result.sio, "/agent", event, body)
            assert answer["success"] is False, (event, answer)
            assert answer["error"]["code"] == "AUTH_002", (event, answer)
    finally:
        await result.close()

    status, task = await rest("GET", f"{url}/api/tasks/{task_id}", token=token)
    assert status == 200 and task["task"]["status"] == "completed", task
    status, history = await rest("GET", f"{url}/api/sessions/{session_id}/events", token=token)
    assert status == 200, history
    assert "injected" not in str(history["events"])


async def test_a_token_that_expires_while_connected_ends_the_connection(gate: Gate) -> None:
    """§3: at the next request after expiry, an `error` event AUTH_001, then disconnected."""
    expires = int(time.time()) + 3
    token = user_token(gate.jwt_secret, gate.user["id"], exp=expires)
    client = WebClient()
    await client.connect(gate.url, token)
    try:
        assert (await client.ok("agents:list", {}))["agents"]
        await wait_for(lambda: time.time() > expires + 0.5, what="the token to expire")
        await client.sio.emit("agents:list", {}, namespace="/web")
        error = await client.wait_for_event("error", timeout_s=30)
        assert error["code"] == "AUTH_001", error
        await wait_for(
            lambda: "/web" not in client.sio.namespaces, what="the gateway to end the connection"
        )
    finally:
        await client.close()
    # A fresh token gets back in.
    assert await refused_code(gate.url, "/web", {"token": gate.token}) is None
