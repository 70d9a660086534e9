"""`GET /metrics` on two gateway nodes with a real agent: each node's page parses with
prometheus-client's parser, its counters move by exactly what flowed through that node
(and the sum over the nodes by exactly what flowed), and the cluster's figures are
exported by the leader alone, by the next leader once it dies."""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

TOKEN = "metrics-scrape-token-for-the-test"
CAP = 10  # events a session stream keeps
pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(
        ORCHESTRA_METRICS_INTERVAL_S="1",
        ORCHESTRA_METRICS_TOKEN=TOKEN,
        ORCHESTRA_SESSION_STREAM_MAX_EVENTS=str(CAP),
        ORCHESTRA_STREAM_TRIM_INTERVAL_S="1",
    ),
]

LINES = 20  # the worker prints these once told to go
ECHOES = 2  # then echoes this many more lines of input
INPUTS = 1 + ECHOES  # worker:input requests that reach the worker
BAD_INPUTS = 3  # worker:input requests refused with PARAM_001
WORKER = f"""
import sys
sys.stdin.readline()
for number in range({LINES}):
    print(f"line {{number}}", flush=True)
for _ in range({ECHOES}):
    print("echo " + sys.stdin.readline().strip(), flush=True)
"""
CLUSTER = ("orchestra_tasks", "orchestra_dispatch_queue_depth", "orchestra_archive_lag_events")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(gateway: Gateway, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(gateway.url + "/metrics")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def scrape(gateway: Gateway) -> tuple[set[str], Samples]:
    """The families a node exports (those with samples), and every sample's value."""
    status, text = await asyncio.to_thread(scrape_text, gateway)
    assert status == 200, text
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.samples:
            families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


async def test_each_node_counts_what_it_handled_and_the_leader_alone_the_cluster(
    deployment: Deployment, tmp_path: Path
) -> None:
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gw1 = await deployment.start_gateway("gw1")  # the first: it leads
    gw2 = await deployment.start_gateway("gw2")
    nodes = (gw1, gw2)
    deployment.start_agent(agent_id, secret_file, gw1.url)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)

    # Without the token, a scrape is refused (and counted as an error, on gw2).
    status, refused = await asyncio.to_thread(scrape_text, gw2, None)
    assert status == 401 and "AUTH_001" in refused

    token = await login(gw2.url, "alice", PASSWORD)
    web = WebClient()  # drives and watches through gw2; the agent is on gw1
    await web.connect(gw2.url, token)
    try:
        await wait_for(lambda: web.agent_status_is("online", agent_id), what="the agent online")

        async def settled() -> bool:  # every partition held, and each node's probe has run
            pages = [await scrape(node) for node in nodes]
            held = sum(value(s, "orchestra_partitions_held") for _, s in pages)
            probed = all(
                value(s, "orchestra_redis_round_trip_seconds_count") > 0
                and value(s, "orchestra_sql_round_trip_seconds_count") > 0
                for _, s in pages
            )
            return held == 16 and probed

        await wait_for(
            settled, what="both nodes settled, with their round trips timed", interval_s=0.3
        )
        before = [(await scrape(node))[1] for node in nodes]

        started = await web.ok(
            "worker:start",
            {
                "agentId": agent_id,
                "tool": "custom",
                "command": [sys.executable, str(worker)],
                "workingDirectory": str(tmp_path),
            },
        )
        session_id, task_id = started["sessionId"], started["taskId"]
        await web.ok("session:join", {"sessionId": session_id})
        replayed = len(_lines(web, session_id))
        await web.ok("worker:input", {"taskId": task_id, "input": "go"})
        await web.wait_for_event("task:stream", lambda d: d["data"] == f"line {LINES - 1}")
        for number in range(ECHOES):
            await web.ok("worker:input", {"taskId": task_id, "input": f"more {number}"})
        for bad in ({}, {"taskId": 5}, {"taskId": task_id, "input": 7}):
            refusal = await web.call("worker:input", bad)
            assert refusal["error"]["code"] == "PARAM_001", refusal
        await web.wait_for_event("task:result")
        # One REST request refused on gw2, its route a pattern without the session's id.
        status, _ = await asyncio.to_thread(
            http, "GET", f"{gw2.url}/api/sessions/{session_id}/events?limit=x", None, token
        )
        assert status == 400
        lines = _lines(web, session_id)
        assert len(lines) == LINES + ECHOES + replayed

        async def counted() -> list[Samples]:
            after = [(await scrape(node))[1] for node in nodes]
            sent = [
                value(a, "orchestra_events_sent_total", namespace="/web", event="task:stream")
                - value(b, "orchestra_events_sent_total", namespace="/web", event="task:stream")
                for a, b in zip(after, before, strict=True)
            ]
            return after if sent == [0, len(lines)] else []

        after = await wait_for(
            counted, what="gw2 to have counted every line it sent", interval_s=0.3
        )
        gw1_delta, gw2_delta = (_delta(a, b) for a, b in zip(after, before, strict=True))

        for name, labels, expected in [
            ("orchestra_events_received_total", {"namespace": "/web", "event": "worker:input"},
             INPUTS + BAD_INPUTS),
            ("orchestra_events_received_total", {"namespace": "/web", "event": "worker:start"}, 1),
            ("orchestra_events_received_total", {"namespace": "/web", "event": "session:join"}, 1),
            ("orchestra_event_duration_seconds_count",
             {"namespace": "/web", "event": "worker:input"}, INPUTS + BAD_INPUTS),
            ("orchestra_errors_total", {"code": "PARAM_001"}, BAD_INPUTS + 1),
            ("orchestra_output_latency_seconds_count", {}, len(lines) - replayed),
            ("orchestra_http_request_duration_seconds_count",
             {"method": "GET", "route": "/api/sessions/<session_id:str>/events", "status": "4xx"},
             1),
        ]:  # fmt: skip
            assert (gw1_delta(name, **labels), gw2_delta(name, **labels)) == (0, expected), name

        # The agent's output came in through gw1 only, in at most one frame per line.
        frames = gw1_delta(
            "orchestra_events_received_total", namespace="/agent", event="task:stream"
        )
        assert 1 <= frames <= LINES + ECHOES
        assert gw2_delta("orchestra_events_received_total", namespace="/agent") == 0
        # The task was assigned once, by whichever node runs its actor's partition; the
        # turns of its actors ran there too.
        assert (
            gw1_delta("orchestra_dispatch_wait_seconds_count")
            + gw2_delta("orchestra_dispatch_wait_seconds_count")
            == 1
        )
        assert (
            gw1_delta("orchestra_actor_turns_total", kind="task")
            + gw2_delta("orchestra_actor_turns_total", kind="task")
            >= INPUTS
        )
        assert value(after[0], "orchestra_connections", namespace="/agent") == 1
        assert value(after[1], "orchestra_connections", namespace="/agent") == 0
        assert value(after[0], "orchestra_connections", namespace="/web") == 0
        assert value(after[1], "orchestra_connections", namespace="/web") == 1
        assert value(after[1], "orchestra_errors_total", code="AUTH_001") >= 1
        # Labels hold no ids.
        for samples in after:
            for _, labels in samples:
                assert not any(
                    i in v for _, v in labels for i in (session_id, task_id, agent_id)
                ), labels

        # The stream was trimmed to its cap: each event removed counted once, on some node.
        async def trimmed_to_the_cap() -> bool:
            url = f"{gw2.url}/api/sessions/{session_id}/events?limit=500"
            status, page = await asyncio.to_thread(http, "GET", url, None, token)
            assert status == 200, page
            pages = [(await scrape(node))[1] for node in nodes]
            removed = sum(total(s, "orchestra_stream_trimmed_events_total") for s in pages)
            trims = sum(total(s, "orchestra_stream_trims_total") for s in pages)
            return trims >= 1 and removed == len(page["events"]) - CAP

        await wait_for(trimmed_to_the_cap, what="the stream trimmed to its cap", interval_s=0.3)

        # The cluster's figures: from the leader (gw1) alone.
        async def leader_counts() -> bool:
            families, samples = await scrape(gw1)
            return set(CLUSTER) <= families and (
                value(samples, "orchestra_tasks", status="completed") == 1
            )

        await wait_for(leader_counts, what="the leader's count of tasks", interval_s=0.3)
        _, samples = await scrape(gw1)
        assert value(samples, "orchestra_dispatch_queue_depth") == 0
        assert total(samples, "orchestra_tasks") == 1
        assert not set(CLUSTER) & (await scrape(gw2))[0]
    finally:
        await web.close()

    # gw1 dies: gw2 takes over its partitions (each counted once) and the lead.
    held_by_gw1 = value((await scrape(gw1))[1], "orchestra_partitions_held")
    takeovers = value((await scrape(gw2))[1], "orchestra_lease_takeovers_total")
    gw1.kill()
    assert 0 < held_by_gw1 < 16

    async def took_over() -> bool:
        families, samples = await scrape(gw2)
        return (
            value(samples, "orchestra_partitions_held") == 16
            and set(CLUSTER) <= families
            and value(samples, "orchestra_tasks", status="completed") == 1
        )

    await wait_for(
        took_over, what="gw2 to hold every partition and count the cluster", interval_s=0.3
    )
    _, samples = await scrape(gw2)
    assert value(samples, "orchestra_lease_takeovers_total") - takeovers == held_by_gw1


def _lines(web: WebClient, session_id: str) -> list[dict[str, Any]]:
    return [data for name, data in web.session_events(session_id) if name == "task:stream"]


def _delta(after: Samples, before: Samples) -> Any:
    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    return delta
