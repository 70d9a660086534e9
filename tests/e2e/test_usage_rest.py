"""`GET /api/usage`: the tokens and cost of each user's own tasks per session, agent and
day, summed in SQL (SQLite and PostgreSQL), from what a fake `claude` reported turn by
turn; a task still running counts what its turns used so far."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.ai import FAKE_TOOLS, start_ai
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

pytestmark = [FAKE_TOOLS]

FIELDS = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "costUsd")
# What the fake claude reports for a turn that makes one model call (its result line).
ONE_CALL = {"inputTokens": 11, "outputTokens": 7, "cacheReadTokens": 0, "cacheWriteTokens": 0,
            "costUsd": 0.000184}  # fmt: skip


async def _get(gateway: Gateway, path: str, token: str) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(http, "GET", gateway.url + path, None, token)


async def _turns(client: WebClient, task_id: str, count: int) -> None:
    await client.wait_for_event(
        "worker:output", lambda d: d["type"] == "result" and d["taskId"] == task_id, count=count
    )


async def _run_claude(
    client: WebClient, agent_id: str, workdir: Path, prompts: list[str], *, end: bool = True
) -> str:
    """A claude task with one turn per prompt (the first is the initial prompt), ended
    with end of input unless `end` is false; its taskId."""
    started, _ = await start_ai(client, agent_id, workdir, prompts[0])
    task_id = started["taskId"]
    await _turns(client, task_id, 1)
    for n, prompt in enumerate(prompts[1:], 2):
        await client.ok("worker:input", {"taskId": task_id, "input": prompt})
        await _turns(client, task_id, n)
    if end:
        await client.ok("worker:input", {"taskId": task_id, "eof": True})
        await client.wait_for_event("task:result", lambda d: d["taskId"] == task_id)
    return task_id


def _expected(tasks: list[dict[str, Any]], key: str | None) -> dict[str, dict[str, float]]:
    """The sums per group (one group of all, "all", when `key` is None), from the
    TaskViews' own usage."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for task in tasks:
        group = "all" if key is None else task["createdAt"][:10] if key == "day" else task[key]
        for field in FIELDS:
            sums[group][field] += task["usage"].get(field, 0)
        sums[group]["tasks"] = sums[group].get("tasks", 0) + 1
    return sums


def _answered(groups: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {g["key"]: {f: g[f] for f in (*FIELDS, "tasks")} for g in groups}


def _same(answer: dict[str, dict[str, float]], expected: dict[str, dict[str, float]]) -> None:
    assert answer.keys() == expected.keys()
    for key, sums in expected.items():
        for field, value in sums.items():
            assert abs(answer[key][field] - value) < 1e-9, (key, field, answer[key], sums)


async def test_usage_per_session_agent_and_day_each_user_their_own(
    deployment: Deployment, tmp_path: Path
) -> None:
    for name, admin in (("alice", False), ("bob", False), ("carol", True)):
        await deployment.create_user(name, PASSWORD, admin=admin)
    alice_agent, alice_secret = await deployment.create_agent("alice-box", owner="alice")
    bob_agent, bob_secret = await deployment.create_agent("bob-box", owner="bob")
    gateway = await deployment.start_gateway("gw1")
    deployment.start_agent(alice_agent, alice_secret, gateway.url)
    deployment.start_agent(bob_agent, bob_secret, gateway.url)
    tokens = {name: await login(gateway.url, name, PASSWORD) for name in ("alice", "bob", "carol")}
    alice, bob = WebClient(), WebClient()
    await alice.connect(gateway.url, tokens["alice"])
    await bob.connect(gateway.url, tokens["bob"])
    try:
        for client, agent in ((alice, alice_agent), (bob, bob_agent)):
            await wait_for(lambda c=client, a=agent: c.agent_status_is("online", a), what="online")
        # alice: two turns in one session, a three-call turn in another that is still
        # running (waiting for her next message); bob: one turn.
        first = await _run_claude(alice, alice_agent, tmp_path / "a1", ["hello", "again"])
        second = await _run_claude(
            alice, alice_agent, tmp_path / "a2", ["scenario: tools"], end=False
        )
        third = await _run_claude(bob, bob_agent, tmp_path / "b1", ["hi"])

        views = {}
        for task_id, who in ((first, "alice"), (second, "alice"), (third, "bob")):
            status, body = await _get(gateway, f"/api/tasks/{task_id}", tokens[who])
            assert status == 200, body
            views[task_id] = body["task"]
        assert views[first]["usage"] == {f: 2 * v for f, v in ONE_CALL.items()}
        assert views[third]["usage"] == ONE_CALL
        assert views[second]["status"] == "running"
        assert views[second]["usage"]["inputTokens"] == 3 * ONE_CALL["inputTokens"]

        mine = [views[first], views[second]]
        for by, key in (("session", "sessionId"), ("agent", "agentId"), ("day", "day")):
            status, body = await _get(gateway, f"/api/usage?by={by}", tokens["alice"])
            assert status == 200, body
            assert body["by"] == by and body["truncated"] is False
            _same(_answered(body["groups"]), _expected(mine, key))
            _same({"all": body["totals"]}, _expected(mine, None))
        status, body = await _get(gateway, "/api/usage?by=agent", tokens["alice"])
        assert [g["name"] for g in body["groups"]] == ["alice-box"]

        status, body = await _get(gateway, "/api/usage?by=session", tokens["bob"])
        _same(_answered(body["groups"]), _expected([views[third]], "sessionId"))

        # Everyone's: administrators only.
        status, body = await _get(gateway, "/api/usage?by=agent&all=1", tokens["alice"])
        assert status == 403 and body["error"]["code"] == "AUTH_002"
        status, body = await _get(gateway, "/api/usage?by=agent&all=1", tokens["carol"])
        assert status == 200
        _same(_answered(body["groups"]), _expected(list(views.values()), "agentId"))
        status, body = await _get(gateway, "/api/usage?by=agent", tokens["carol"])
        assert body["groups"] == [] and body["totals"]["tasks"] == 0  # her own: none

        # A time range: nothing before yesterday; everything from the day it ran.
        today = datetime.now(UTC).date()
        old = (today - timedelta(days=30)).isoformat()
        status, body = await _get(gateway, f"/api/usage?from={old}&to={old}", tokens["alice"])
        assert status == 200 and body["groups"] == [] and body["totals"]["tasks"] == 0
        since = views[first]["createdAt"][:10]
        status, body = await _get(gateway, f"/api/usage?by=day&from={since}", tokens["alice"])
        assert body["totals"]["tasks"] == 2
        assert body["from"] == f"{since}T00:00:00.000Z"

        for bad in ("by=week", "by=", "from=yesterday", "to=2025-13-01", "limit=0", "all=maybe"):
            status, body = await _get(gateway, f"/api/usage?{bad}", tokens["alice"])
            if bad == "by=":  # empty: the default grouping
                assert status == 200, body
                continue
            assert status == 400, (bad, body)
            assert body["error"]["code"] == "PARAM_001", (bad, body)
        status, body = await _get(gateway, "/api/usage?by=day", "not a token")
        assert status == 401 and body["error"]["code"] == "AUTH_001"
    finally:
        await alice.close()
        await bob.close()
