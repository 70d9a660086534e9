"""Permission answers under races and deaths: two devices on two gateway nodes answer the
same request at once, the agent daemon is SIGKILLed while a request waits, the gateway node
that took an answer is SIGKILLed before the agent has it. Each time exactly one decision
reaches the tool, and every watcher sees the same resolution."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestra import keys, redis_client
from tests.support.ai import FAKE_TOOLS, answer_request, start_ai
from tests.support.processes import Deployment, Gateway, wait_for
from tests.support.running import PASSWORD, Running
from tests.support.web import WebClient, login

pytestmark = [pytest.mark.sqlite_only, FAKE_TOOLS]


async def _two_nodes(deployment: Deployment) -> tuple[list[Gateway], str]:
    """alice, two gateway nodes, and her agent (with the fake tools) offered both."""
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    nodes = [await deployment.start_gateway(f"gw{n}") for n in (1, 2)]
    deployment.start_agent(agent_id, secret_file, ",".join(n.url for n in nodes))
    return nodes, agent_id


async def _client(node: Gateway) -> WebClient:
    client = WebClient()
    await client.connect(node.url, await login(node.url, "alice", PASSWORD))
    return client


_ENVELOPE = {"id", "timestamp", "source", "version", "target"}


def _resolutions(client: WebClient, permission_id: str) -> list[dict[str, Any]]:
    """The `worker:permission:resolved` events a client got for a request (each one's own
    fields: every emit has an envelope of its own)."""
    return [
        {k: v for k, v in data.items() if k not in _ENVELOPE}
        for name, data in client.events
        if name == "worker:permission:resolved" and data["permissionId"] == permission_id
    ]


async def test_two_devices_on_two_nodes_answer_at_once_and_one_decision_wins(
    deployment: Deployment, tmp_path: Path
) -> None:
    nodes, agent_id = await _two_nodes(deployment)
    phone, laptop = await _client(nodes[0]), await _client(nodes[1])
    try:
        await wait_for(lambda: phone.agent_status_is("online", agent_id), what="agent online")
        started, record = await start_ai(phone, agent_id, tmp_path, "scenario: wait-permission")
        await laptop.ok("session:join", {"sessionId": started["sessionId"]})
        asked = await phone.wait_for_event("worker:permission")
        await laptop.wait_for_event("worker:permission")
        allow, deny = await asyncio.gather(
            answer_request(phone, started, asked, "allow"),
            answer_request(laptop, started, asked, "deny", message="no"),
        )
        # Both are told the same outcome: the first answer's.
        assert allow["resolved"] == deny["resolved"]
        winner = allow["resolved"]["decision"]
        for client in (phone, laptop):
            await wait_for(lambda c=client: _resolutions(c, asked["permissionId"]), what="closed")
        [on_phone], [on_laptop] = (_resolutions(c, asked["permissionId"]) for c in (phone, laptop))
        assert on_phone == on_laptop and on_phone["decision"] == winner
        await phone.wait_for_event("worker:output", lambda d: d["type"] == "result")
        [answer] = record.answers_to(asked["permissionId"])
        assert answer["response"]["behavior"] == winner
    finally:
        await phone.close()
        await laptop.close()


async def test_a_request_pending_when_the_daemon_is_killed_ends_with_its_worker(
    running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        started, record = await start_ai(
            client, running.agent_id, tmp_path, "scenario: wait-permission"
        )
        asked = await client.wait_for_event("worker:permission")
        running.agent.kill()  # SIGKILL: the worker is orphaned, the request unanswered
        running.deployment.start_agent(running.agent_id, running.secret_file, running.gateway.url)
        resolved = await client.wait_for_event("worker:permission:resolved")
        assert (resolved["reason"], resolved["decision"]) == ("worker-ended", "deny")
        status = await client.wait_for_event(
            "worker:status", lambda d: d["status"] == "error" and d["taskId"] == started["taskId"]
        )
        assert "restarted" in status["message"]
        late = await answer_request(client, started, asked, "allow")
        assert (late["resolved"]["status"], late["resolved"]["reason"]) == (
            "cancelled", "worker-ended",
        )  # fmt: skip
        assert record.answers_to(asked["permissionId"]) == []
    finally:
        await client.close()


async def test_the_node_that_took_the_answer_dies_and_the_tool_still_gets_it_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    nodes, agent_id = await _two_nodes(deployment)
    redis = redis_client.connect(deployment.redis_url)
    agent_key = keys.agent(agent_id, deployment.partitions)
    holder_url = await wait_for(lambda: _agent_node(redis, agent_key, nodes), what="agent on")
    holder = next(n for n in nodes if n.url == holder_url)
    other = next(n for n in nodes if n is not holder)
    answering, watching = await _client(holder), await _client(other)
    try:
        started, record = await start_ai(answering, agent_id, tmp_path, "scenario: wait-permission")
        await watching.ok("session:join", {"sessionId": started["sessionId"]})
        asked = await watching.wait_for_event("worker:permission")
        await answer_request(answering, started, asked, "allow")
        holder.kill()  # the answer is committed; its push to the agent may not be
        result = await watching.wait_for_event("worker:output", lambda d: d["type"] == "result")
        assert result["content"] == "tool said: ran: echo hi > out.txt"
        [answer] = record.answers_to(asked["permissionId"])
        assert answer["response"]["behavior"] == "allow"
    finally:
        await answering.close()
        await watching.close()
        await redis.aclose()


async def _agent_node(redis: Redis, agent_key: str, nodes: list[Gateway]) -> str | None:
    """The URL of the node the agent (its state at `agent_key`) is connected to, once it
    is online."""
    raw = await redis.hmget(agent_key, ["status", "node"])
    if raw[0] is None or json.loads(raw[0]) != "online" or raw[1] is None:
        return None
    node_id = json.loads(raw[1])
    index = int(node_id.removeprefix("gw")) - 1
    return nodes[index].url
