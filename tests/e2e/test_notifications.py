"""A user's webhooks hear of their workers' permission requests and ends, signed, once
each, with a link to the session: also when a gateway node is SIGKILLed in between."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from orchestra import keys, redis_client
from tests.support.ai import FAKE_TOOLS, start_ai
from tests.support.processes import Deployment, holds_every_partition, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login
from tests.support.webhooks import Receiver, signed

pytestmark = [
    pytest.mark.sqlite_only,
    FAKE_TOOLS,
    pytest.mark.orchestra_env(ORCHESTRA_WEBHOOK_CLAIM_IDLE_S="2"),
]


async def _settled(redis: Redis) -> bool:
    """Every notification written so far has been read and fully delivered."""
    last = await redis.xrevrange(keys.webhook_events(), count=1)
    for group in await redis.xinfo_groups(keys.webhook_events()):
        if group["name"] == "webhooks":
            read_all = bool(last) and group["last-delivered-id"] == last[0][0]
            return read_all and group["pending"] == 0
    return False


async def test_permission_requested_and_task_completed_arrive_once_across_a_node_kill(
    deployment: Deployment, tmp_path: Path, receiver: Receiver
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    nodes = [await deployment.start_gateway(f"gw{n}") for n in (1, 2)]
    deployment.start_agent(agent_id, secret_file, ",".join(n.url for n in nodes))
    token = await login(nodes[1].url, "alice", PASSWORD)
    status, created = await asyncio.to_thread(
        http, "POST", nodes[1].url + "/api/webhooks",
        {"url": receiver.url("alice"), "events": ["permission.requested", "task.completed"]},
        token,
    )  # fmt: skip
    assert status == 201, created
    secret = created["secret"]
    client = WebClient()
    await client.connect(nodes[1].url, token)
    redis = redis_client.connect(deployment.redis_url)
    try:
        await wait_for(lambda: client.agent_status_is("online", agent_id), what="agent online")
        started, _ = await start_ai(client, agent_id, tmp_path, "scenario: permission")
        asked = await client.wait_for_event("worker:permission")
        await wait_for(lambda: receiver.accepted("alice"), what="permission.requested")

        nodes[0].kill()  # SIGKILL: its leases, its sockets, its deliveries in flight
        await wait_for(lambda: holds_every_partition(nodes[1]), what="the takeover")
        await client.ok(
            "worker:permission",
            {"taskId": started["taskId"], "permissionId": asked["permissionId"],
             "decision": "allow"},
        )  # fmt: skip
        await client.wait_for_event("worker:output", lambda d: d["type"] == "result")
        await client.ok("worker:input", {"taskId": started["taskId"], "eof": True})
        await client.wait_for_event("task:result")
        await wait_for(lambda: len(receiver.accepted("alice")) >= 2, what="task.completed")
        await wait_for(lambda: _settled(redis), what="every notification delivered")

        deliveries = receiver.accepted("alice")
        by_event = {d.json["event"]: d for d in deliveries}
        assert sorted(d.json["event"] for d in deliveries) == [
            "permission.requested", "task.completed",
        ]  # fmt: skip
        for delivery in deliveries:
            assert signed(delivery, secret)
            assert delivery.headers["X-Orchestra-Event"] == delivery.json["event"]
            assert delivery.json["url"].endswith(f"/#/sessions/{started['sessionId']}")
        requested = by_event["permission.requested"].json["data"]
        assert requested["permissionId"] == asked["permissionId"]
        assert requested["tool"] == "Bash" and requested["taskId"] == started["taskId"]
        completed = by_event["task.completed"].json["data"]
        assert completed["status"] == "completed" and completed["workerSessionId"]
        assert completed["usage"]["costUsd"] > 0
        assert json.loads(by_event["task.completed"].body)["id"]  # a delivery id to dedupe on
    finally:
        await client.close()
        await redis.aclose()
