"""Credentials taken back stop working at once, on every node (issue 9): deleted, disabled
and demoted users, logging out, refresh-token reuse, revoked agents and rotated secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio

from tests.e2e.test_handshake import agent_auth, attempt, call, refused_code, rest
from tests.support.processes import Deployment, Gateway, wait_for
from tests.support.running import PASSWORD

pytestmark = pytest.mark.sqlite_only

#: what the issue asks: sockets on every node gone within a second of the answer
WITHIN_S = 1.0


@dataclass
class Watched:
    """A socket whose end is timed."""

    sio: socketio.AsyncClient
    namespace: str
    ended_at: float | None = None
    errors: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def watched_web(url: str, token: str) -> Watched:
    sio = socketio.AsyncClient(reconnection=False)
    watched = Watched(sio, "/web")
    _time_the_end(watched)
    await sio.connect(url, namespaces=["/web"], auth={"token": token}, wait_timeout=30)
    return watched


async def watched_agent(url: str, agent_id: str, secret: str) -> Watched:
    result = await attempt(url, "/agent", agent_auth(agent_id, secret))
    assert result.connected, result.error
    watched = Watched(result.sio, "/agent")
    _time_the_end(watched)
    answer = await call(
        result.sio,
        "/agent",
        "agent:register",
        {"agentId": agent_id, "name": "box", "capabilities": ["custom"], "agentVersion": "0"},
    )
    assert answer["success"], answer
    return watched


def _time_the_end(watched: Watched) -> None:
    async def on_disconnect(*_: Any) -> None:
        watched.ended_at = time.monotonic()

    async def on_error(data: Any) -> None:
        watched.errors.append(data)

    watched.sio.on("disconnect", on_disconnect, namespace=watched.namespace)
    watched.sio.on("error", on_error, namespace=watched.namespace)


async def all_ended(sockets: list[Watched], since: float) -> list[float]:
    """Wait until every socket has ended; how long after `since` each did."""
    await wait_for(
        lambda: all(s.ended_at is not None for s in sockets),
        what="every socket to be disconnected",
        timeout_s=30,
    )
    return [round(s.ended_at - since, 3) for s in sockets if s.ended_at is not None]


async def log_in(url: str, name: str) -> dict[str, Any]:
    status, body = await rest(
        "POST", url + "/api/auth/login", {"username": name, "password": PASSWORD}
    )
    assert status == 200, body
    return body


async def refused(method: str, url: str, token: str, body: Any = None) -> None:
    status, answer = await rest(method, url, body, token)
    assert status == 401 and answer["error"]["code"] == "AUTH_001", (url, status, answer)


async def three_nodes(deployment: Deployment) -> list[Gateway]:
    await deployment.create_user("root", PASSWORD, admin=True)
    await deployment.create_user("alice", PASSWORD)
    return [await deployment.start_gateway(f"gw{i}") for i in (1, 2, 3)]


async def test_a_deleted_user_and_a_revoked_agent_lose_every_node_within_a_second(
    deployment: Deployment,
) -> None:
    nodes = await three_nodes(deployment)
    root = (await log_in(nodes[0].url, "root"))["accessToken"]
    alice = await log_in(nodes[0].url, "alice")
    token, alice_id = alice["accessToken"], alice["user"]["id"]
    status, agent = await rest("POST", nodes[0].url + "/api/agents", {"name": "box"}, token)
    assert status == 201, agent

    # Her agent on gw1; her browsers on every node.
    agent_socket = await watched_agent(nodes[0].url, agent["agentId"], agent["agentSecret"])
    browsers = [await watched_web(node.url, token) for node in nodes]
    try:
        # The agent is revoked through gw3: its socket on gw1 ends.
        status, body = await rest(
            "DELETE", f"{nodes[2].url}/api/agents/{agent['agentId']}", None, root
        )
        assert status == 200, body
        revoked_at = time.monotonic()
        (after_s,) = await all_ended([agent_socket], revoked_at)
        print(f"agent socket ended {after_s} s after the revocation answer")
        assert after_s < WITHIN_S, f"the agent's socket ended {after_s} s after the revocation"
        assert agent_socket.errors and agent_socket.errors[0]["code"] == "AUTH_001"
        for node in nodes:
            auth = agent_auth(agent["agentId"], agent["agentSecret"])
            assert await refused_code(node.url, "/agent", auth) == "AUTH_001"

        # Alice is deleted through gw2: her sockets on all three nodes end.
        status, body = await rest("DELETE", f"{nodes[1].url}/api/users/{alice_id}", None, root)
        assert status == 200, body
        deleted_at = time.monotonic()
        delays = await all_ended(browsers, deleted_at)
        print(f"web sockets on gw1..gw3 ended {delays} s after the deletion answer")
        assert max(delays) < WITHIN_S, f"sockets ended {delays} s after the deletion"
        assert all(b.errors and b.errors[0]["code"] == "AUTH_001" for b in browsers)

        # And every later request is refused, everywhere.
        for node in nodes:
            await refused("GET", node.url + "/api/auth/me", token)
            await refused("GET", node.url + "/api/sessions", token)
            await refused("POST", node.url + "/api/agents", token, {"name": "another"})
            await refused(
                "POST", node.url + "/api/auth/refresh", "", {"refreshToken": alice["refreshToken"]}
            )
            assert await refused_code(node.url, "/web", {"token": token}) == "AUTH_001"
    finally:
        for socket in [agent_socket, *browsers]:
            await socket.close()
    # The admin was not touched.
    status, body = await rest("GET", nodes[2].url + "/api/auth/me", None, root)
    assert status == 200, body


async def test_disabled_and_demoted_users_are_cut_off_at_once(deployment: Deployment) -> None:
    nodes = await three_nodes(deployment)
    url = nodes[0].url
    root = (await log_in(url, "root"))["accessToken"]
    status, made = await rest(
        "POST", url + "/api/users", {"username": "bob", "password": PASSWORD, "isAdmin": True}, root
    )
    assert status == 201, made
    alice = await log_in(url, "alice")
    bob = await log_in(url, "bob")
    status, body = await rest("GET", nodes[1].url + "/api/users", None, bob["accessToken"])
    assert status == 200, body  # bob is an admin, for now

    sockets = [
        await watched_web(nodes[2].url, alice["accessToken"]),
        await watched_web(nodes[1].url, bob["accessToken"]),
    ]
    try:
        # Disabled: alice's token and socket stop at once.
        status, body = await rest(
            "PATCH", f"{url}/api/users/{alice['user']['id']}", {"disabled": True}, root
        )
        assert status == 200, body
        await all_ended(sockets[:1], time.monotonic())
        await refused("GET", nodes[1].url + "/api/auth/me", alice["accessToken"])
        status, body = await rest(
            "POST", url + "/api/auth/login", {"username": "alice", "password": PASSWORD}
        )
        assert status == 401, body

        # Demoted: bob's admin token stops; signing in again gives him a user's token.
        status, body = await rest(
            "PATCH", f"{url}/api/users/{bob['user']['id']}", {"isAdmin": False}, root
        )
        assert status == 200, body
        await all_ended(sockets[1:], time.monotonic())
        await refused("GET", nodes[2].url + "/api/users", bob["accessToken"])
        again = await log_in(nodes[2].url, "bob")
        status, body = await rest("GET", nodes[2].url + "/api/users", None, again["accessToken"])
        assert status == 403 and body["error"]["code"] == "AUTH_002", body
    finally:
        for socket in sockets:
            await socket.close()


async def test_logging_out_ends_that_sign_in_and_everywhere_ends_them_all(
    deployment: Deployment,
) -> None:
    nodes = await three_nodes(deployment)
    phone = await log_in(nodes[0].url, "alice")
    laptop = await log_in(nodes[1].url, "alice")
    on_phone = await watched_web(nodes[2].url, phone["accessToken"])
    on_laptop = await watched_web(nodes[2].url, laptop["accessToken"])
    try:
        status, body = await rest(
            "POST", nodes[0].url + "/api/auth/logout", {}, phone["accessToken"]
        )
        assert status == 200, body
        await all_ended([on_phone], time.monotonic())
        await refused("GET", nodes[1].url + "/api/auth/me", phone["accessToken"])
        status, body = await rest(
            "POST", nodes[1].url + "/api/auth/refresh", {"refreshToken": phone["refreshToken"]}
        )
        assert status == 401, body
        # The laptop's sign-in goes on.
        assert on_laptop.ended_at is None and on_laptop.sio.connected
        status, body = await rest("GET", nodes[1].url + "/api/auth/me", None, laptop["accessToken"])
        assert status == 200, body

        status, body = await rest(
            "POST", nodes[1].url + "/api/auth/logout", {"everywhere": True}, laptop["accessToken"]
        )
        assert status == 200, body
        await all_ended([on_laptop], time.monotonic())
        await refused("GET", nodes[0].url + "/api/auth/me", laptop["accessToken"])
        status, body = await rest(
            "POST", nodes[2].url + "/api/auth/refresh", {"refreshToken": laptop["refreshToken"]}
        )
        assert status == 401, body
    finally:
        await on_phone.close()
        await on_laptop.close()


async def test_a_reused_refresh_token_ends_the_sockets_of_its_sign_in(
    deployment: Deployment,
) -> None:
    nodes = await three_nodes(deployment)
    first = await log_in(nodes[0].url, "alice")
    status, second = await rest(
        "POST", nodes[0].url + "/api/auth/refresh", {"refreshToken": first["refreshToken"]}
    )
    assert status == 200, second
    socket = await watched_web(nodes[1].url, second["accessToken"])
    try:
        # The first refresh token comes back (a copy an attacker kept): the family ends.
        status, body = await rest(
            "POST", nodes[2].url + "/api/auth/refresh", {"refreshToken": first["refreshToken"]}
        )
        assert status == 401, body
        await all_ended([socket], time.monotonic())
        await refused("GET", nodes[0].url + "/api/auth/me", second["accessToken"])
    finally:
        await socket.close()


async def test_rotating_a_secret_closes_the_open_agent_socket(deployment: Deployment) -> None:
    nodes = await three_nodes(deployment)
    token = (await log_in(nodes[0].url, "alice"))["accessToken"]
    status, agent = await rest("POST", nodes[0].url + "/api/agents", {"name": "box"}, token)
    assert status == 201, agent
    agent_id, old = agent["agentId"], agent["agentSecret"]
    socket = await watched_agent(nodes[1].url, agent_id, old)
    try:
        status, rotated = await rest(
            "POST", f"{nodes[2].url}/api/agents/{agent_id}/rotate-secret", {}, token
        )
        assert status == 200, rotated
        await all_ended([socket], time.monotonic())
        assert await refused_code(nodes[1].url, "/agent", agent_auth(agent_id, old)) == "AUTH_001"
        fresh = await watched_agent(nodes[1].url, agent_id, rotated["agentSecret"])
        try:
            beat = await call(fresh.sio, "/agent", "agent:heartbeat", {"agentId": agent_id})
            assert beat["success"], beat
            assert fresh.ended_at is None
        finally:
            await fresh.close()
    finally:
        await socket.close()
