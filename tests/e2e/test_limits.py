"""Limits against real gateway processes: events per agent, open sockets per user and per
agent (across nodes), and failed logins per account and per address whatever token is
sent. (Users' requests per window: test_rate_limit.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_handshake import Attempt, agent_auth, attempt, call
from tests.support.processes import Deployment, http, wait_for
from tests.support.running import PASSWORD, Running
from tests.support.web import WebClient, login
from tests.support.workers import printer

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def connect_agent(url: str, agent_id: str, secret_file: Path) -> Attempt:
    return await attempt(url, "/agent", agent_auth(agent_id, secret_file.read_text().strip()))


async def heartbeat(agent: Attempt, agent_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = await call(
        agent.sio, "/agent", "agent:heartbeat", {"agentId": agent_id}
    )
    return answer


# -- events per agent ------------------------------------------------------------------------


@pytest.mark.orchestra_env(
    ORCHESTRA_AGENT_RATE_LIMIT_PER_S="5", ORCHESTRA_AGENT_RATE_LIMIT_BURST="20"
)
async def test_an_agent_flooding_events_gets_rate_001_and_other_agents_do_not(
    deployment: Deployment,
) -> None:
    await deployment.create_user("alice", PASSWORD)
    flooder_id, flooder_secret = await deployment.create_agent("flooder", owner="alice")
    calm_id, calm_secret = await deployment.create_agent("calm", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    flooder = await connect_agent(gateway.url, flooder_id, flooder_secret)
    calm = await connect_agent(gateway.url, calm_id, calm_secret)
    try:
        assert flooder.connected and calm.connected, (flooder.error, calm.error)
        answers = await asyncio.gather(*(heartbeat(flooder, flooder_id) for _ in range(60)))
        served = sum(answer["success"] for answer in answers)
        refusals = [answer["error"] for answer in answers if not answer["success"]]
        assert served >= 20, answers  # the burst
        assert refusals and {error["code"] for error in refusals} == {"RATE_001"}, refusals
        assert all(0 < error["details"]["retryAfterS"] <= 0.2 for error in refusals), refusals

        # Another agent is not affected; the flooder is served again once it slows down.
        for _ in range(10):
            assert (await heartbeat(calm, calm_id))["success"]

        async def served_again() -> bool:
            return bool((await heartbeat(flooder, flooder_id))["success"])

        await wait_for(served_again, what="the flooder served again", interval_s=0.5)
    finally:
        await flooder.close()
        await calm.close()


@pytest.mark.orchestra_env(
    ORCHESTRA_AGENT_RATE_LIMIT_PER_S="20", ORCHESTRA_AGENT_RATE_LIMIT_BURST="20"
)
async def test_an_agent_over_its_limit_backs_off_and_loses_no_output(
    running: Running, tmp_path: Path
) -> None:
    lines = 120
    watcher = await running.client()
    try:
        # A line every 10 ms: mostly one frame each (the agent batches only what a worker
        # prints while a frame is in flight), far over 20 events a second.
        started = await watcher.ok(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom", "command": printer(lines, 0.01),
             "workingDirectory": str(tmp_path)},
        )  # fmt: skip
        await watcher.ok("session:join", {"sessionId": started["sessionId"]})
        await watcher.wait_for_event("task:result", timeout_s=120)
        seen = [d for n, d in watcher.session_events(started["sessionId"]) if n == "task:stream"]
        assert [d["data"] for d in seen] == [f"line {n}" for n in range(1, lines + 1)]
        assert [d["seq"] for d in seen] == list(range(1, lines + 1))
        assert "RATE_001" in running.agent.log()  # it was limited, and sent again later
    finally:
        await watcher.close()


# -- open sockets ----------------------------------------------------------------------------


@pytest.mark.orchestra_env(ORCHESTRA_MAX_SOCKETS_PER_USER="32")
async def test_a_user_holds_at_most_32_web_sockets_across_nodes(
    deployment: Deployment,
) -> None:
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("bob", "bob's password")
    gateways = [await deployment.start_gateway("gw1"), await deployment.start_gateway("gw2")]
    alice = await login(gateways[0].url, "alice", PASSWORD)
    bob = await login(gateways[0].url, "bob", "bob's password")
    clients: list[WebClient] = []
    try:
        for n in range(32):
            client = WebClient()
            await client.connect(gateways[n % 2].url, alice)
            clients.append(client)
        refused = await attempt(gateways[1].url, "/web", {"token": alice})
        assert not refused.connected
        assert refused.error["code"] == "RES_001" and refused.error["message"], refused.error
        other = await attempt(gateways[1].url, "/web", {"token": bob})  # bob has his own
        assert other.connected, other.error
        await other.close()

        await clients.pop().close()

        async def connects() -> bool:
            result = await attempt(gateways[0].url, "/web", {"token": alice})
            await result.close()
            return result.connected

        await wait_for(connects, what="alice's next socket let in", interval_s=0.2)
    finally:
        for client in clients:
            await client.close()


@pytest.mark.orchestra_env(ORCHESTRA_MAX_SOCKETS_PER_AGENT="1")
async def test_a_second_socket_of_an_agent_over_its_cap_is_refused(
    deployment: Deployment,
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    first = await connect_agent(gateway.url, agent_id, secret_file)
    assert first.connected, first.error
    try:
        second = await connect_agent(gateway.url, agent_id, secret_file)
        assert not second.connected
        assert second.error["code"] == "RES_001", second.error
    finally:
        await first.close()

    async def connects() -> bool:
        result = await connect_agent(gateway.url, agent_id, secret_file)
        await result.close()
        return result.connected

    await wait_for(connects, what="the agent let in again", interval_s=0.2)


# -- failed logins ---------------------------------------------------------------------------


async def post_login(url: str, username: str, password: str, token: str | None = None) -> Any:
    return await asyncio.to_thread(
        http,
        "POST",
        url + "/api/auth/login",
        {"username": username, "password": password},
        token,
    )


@pytest.mark.orchestra_env(
    ORCHESTRA_LOGIN_MAX_FAILURES_PER_ACCOUNT="10", ORCHESTRA_LOGIN_MAX_FAILURES_PER_ADDRESS="15"
)
async def test_failed_logins_lock_the_account_and_then_the_address_whatever_the_token(
    deployment: Deployment,
) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        await deployment.create_user(name, f"{name}'s password")
    gateway = await deployment.start_gateway("gw1")
    bob = await login(gateway.url, "bob", "bob's password")

    # Ten wrong passwords for alice, each sent with bob's valid token, lock her account.
    for _ in range(10):
        status, body = await post_login(gateway.url, "alice", "guess", bob)
        assert status == 401 and body["error"]["code"] == "AUTH_001", body
    for password, token in (("guess", bob), ("alice's password", bob), ("alice's password", None)):
        status, body = await post_login(gateway.url, "ALICE", password, token)
        assert status == 429 and body["error"]["code"] == "RATE_001", body
        assert body["error"]["details"]["retryAfterS"] > 0

    # Another account from the same address is let in, until the address's limit.
    status, body = await post_login(gateway.url, "carol", "carol's password")
    assert status == 200, body
    for _ in range(5):
        status, _ = await post_login(gateway.url, "carol", "guess", bob)
        assert status == 401
    status, body = await post_login(gateway.url, "dave", "dave's password")
    assert status == 429 and body["error"]["code"] == "RATE_001", body
