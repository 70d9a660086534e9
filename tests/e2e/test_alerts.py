"""Alerts, end to end: three gateway nodes on one Redis, one agent, and a webhook receiver
in this process.

The agent's daemon is frozen with SIGSTOP: the agent goes offline and the "agent offline"
alert reaches the webhook once, signed, though three nodes run and the rules are
evaluated every second; a task that waits meanwhile for an agent offering its tool fires
"task queued" (a few evaluations later: the offline alert has not come again by then).
After SIGCONT the agent is back, runs the task, and each alert's resolution arrives once.
`GET /api/alerts` lists the firings and the resolutions, for an administrator only.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from orchestra import keys, redis_client
from tests.e2e.test_rest import api, ok
from tests.support.processes import Deployment, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login
from tests.support.webhooks import Received, Receiver, signed

SECRET = "alert-signing-secret-" + "s" * 16
QUEUE_WAIT_S = 3

pytestmark = [
    # The SQL store's part is tested on both databases in tests/db/test_alerts.py.
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(
        ORCHESTRA_ALERT_INTERVAL_S="1",
        # No cool-down: an alert is reported once only because it is firing already.
        ORCHESTRA_ALERT_COOLDOWN_S="0",
        ORCHESTRA_ALERT_QUEUE_WAIT_S=str(QUEUE_WAIT_S),
        ORCHESTRA_ALERT_WEBHOOK_SECRET=SECRET,
        ORCHESTRA_AGENT_GRACE_PERIOD_S="2",
        ORCHESTRA_AGENT_PING_INTERVAL_S="1",
        ORCHESTRA_AGENT_PONG_TIMEOUT_S="1",
    ),
]


def deliveries(receiver: Receiver, kind: str, key: str) -> list[Received]:
    return [
        r for r in receiver.of("alerts") if r.json["type"] == kind and r.json["alert"]["key"] == key
    ]


async def test_an_agent_frozen_fires_one_alert_and_one_resolution(
    deployment: Deployment, receiver: Receiver, tmp_path: Path
) -> None:
    deployment.extra_env["ORCHESTRA_ALERT_WEBHOOKS"] = receiver.url("alerts")
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("root", PASSWORD, admin=True)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateways = [await deployment.start_gateway(f"gw{n}") for n in (1, 2, 3)]
    url = gateways[0].url
    agent = deployment.start_agent(agent_id, secret_file, url)
    alice, root = await login(url, "alice", PASSWORD), await login(url, "root", PASSWORD)
    watcher = WebClient()
    await watcher.connect(url, alice)
    redis = redis_client.connect(deployment.redis_url)
    offline, queued = f"agent_offline:{agent_id}", "task_queued:custom"
    try:
        await wait_for(lambda: watcher.agent_status_is("online", agent_id), what="agent online")

        os.kill(agent.popen.pid, signal.SIGSTOP)
        try:
            await wait_for(
                lambda: deliveries(receiver, "alert.firing", offline), what="the offline alert"
            )
            firing = json.loads(await redis.hget(keys.alerts_firing(), offline) or "{}")
            assert (firing["rule"], firing["subject"], firing["severity"]) == (
                "agent_offline",
                agent_id,
                "error",
            )
            assert "box" in firing["message"] and firing["since"]
            # No agent online offers the tool: the task waits, and its alert fires after a
            # few more evaluations.
            task = await ok(
                "POST",
                url + "/api/tasks",
                {"tool": "custom", "command": "true", "workingDirectory": str(tmp_path)},
                alice,
            )
            await wait_for(lambda: deliveries(receiver, "alert.firing", queued), what="queued")
        finally:
            os.kill(agent.popen.pid, signal.SIGCONT)

        await wait_for(
            lambda: (
                deliveries(receiver, "alert.resolved", offline)
                and deliveries(receiver, "alert.resolved", queued)
            ),
            what="both alerts resolved",
        )
        assert (await ok("GET", f"{url}/api/tasks/{task['taskId']}", token=alice))["task"][
            "status"
        ] in ("running", "completed")

        async def listed() -> list[dict[str, Any]] | None:
            alerts: list[dict[str, Any]] = (
                await ok("GET", gateways[2].url + "/api/alerts", token=root)
            )["alerts"]
            return (
                alerts
                if len(alerts) == 4
                and all(a["resolvedAt"] for a in alerts if a["status"] == "firing")
                else None
            )

        history = await wait_for(listed, what="the SQL history of both alerts")

        # Once each, signed, across three nodes.
        for key in (offline, queued):
            (fired,) = deliveries(receiver, "alert.firing", key)
            (resolved,) = deliveries(receiver, "alert.resolved", key)
            for delivery in (fired, resolved):
                assert signed(delivery, SECRET)
                assert delivery.headers["X-Orchestra-Event"] == delivery.json["type"]
                assert delivery.headers["X-Orchestra-Delivery"] == delivery.json["id"]
            assert fired.json["alert"]["id"] == resolved.json["alert"]["id"]
            assert fired.json["alert"]["status"] == "firing"
            assert resolved.json["alert"]["resolvedAt"] >= fired.json["alert"]["since"]
            rows = [a for a in history if a["key"] == key]
            assert [r["status"] for r in rows] == ["resolved", "firing"]
            assert {r["alertId"] for r in rows} == {fired.json["alert"]["id"]}
        assert fired.json["alert"]["details"]["tool"] == "custom"
        assert len(receiver.of("alerts")) == 4
        logs = "".join(g.log() for g in gateways)
        assert logs.count(f"alert firing: {offline}") == 1
        assert logs.count(f"alert resolved: {offline}") == 1

        # Filters; nothing firing now; administrators only.
        only = await ok("GET", url + "/api/alerts?status=resolved&limit=1", token=root)
        assert [a["status"] for a in only["alerts"]] == ["resolved"] and only["firing"] == []
        (await api("GET", url + "/api/alerts?status=sideways", token=root)).refused(
            400, "PARAM_001"
        )
        (await api("GET", url + "/api/alerts", token=alice)).refused(403, "AUTH_002")
    finally:
        await watcher.close()
        await redis.aclose()
