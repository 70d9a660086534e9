"""Each user gets so many requests a window, on sockets and REST together, on every node."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.processes import Deployment, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_a_user_over_the_limit_gets_rate_001_and_others_do_not(
    deployment: Deployment,
) -> None:
    deployment.extra_env.update(
        ORCHESTRA_RATE_LIMIT_REQUESTS="5", ORCHESTRA_RATE_LIMIT_WINDOW_S="3"
    )
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("bob", "bob's password")
    gateway = await deployment.start_gateway("gw1")
    alice_token = await login(gateway.url, "alice", PASSWORD)
    bob_token = await login(gateway.url, "bob", "bob's password")
    alice = WebClient()
    await alice.connect(gateway.url, alice_token)
    try:
        answers = [await alice.call("agents:list", {}) for _ in range(5)]
        assert all(a["success"] for a in answers), answers  # (logins count by address)
        limited = await alice.call("agents:list", {})
        assert limited["error"]["code"] == "RATE_001"
        assert limited["error"]["details"]["retryAfterS"] <= 3
        status, body = await asyncio.to_thread(
            http, "GET", gateway.url + "/api/auth/me", None, alice_token
        )
        assert status == 429 and body["error"]["code"] == "RATE_001"

        # Someone else is not affected; alice is served again in the next window.
        status, _ = await asyncio.to_thread(
            http, "GET", gateway.url + "/api/auth/me", None, bob_token
        )
        assert status == 200

        async def served() -> bool:
            return bool((await alice.call("agents:list", {}))["success"])

        await wait_for(served, what="alice served in the next window", interval_s=0.5)
    finally:
        await alice.close()
