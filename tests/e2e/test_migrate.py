"""Upgrading a deployment from key layout 1 (before issue 13) to layout 2, on data the
layout-1 code itself wrote (`tests/fixtures/layout1/`): a gateway of this version refuses
that Redis; `orchestra redis migrate` moves it; then the old session's history, its queued
task and the agent's outbox are all there. `orchestra up` migrates its own folder."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.keyspace import LAYOUT_1_PATTERNS, partitions_key
from orchestra import keys
from orchestra.placement import partition_of
from orchestra.redis_server import RedisServer, free_port
from tests.e2e.test_rest import ok
from tests.e2e.test_up import orchestra_env
from tests.support.layout1 import layout1_deployment, layout1_redis, manifest, unpack_database
from tests.support.processes import Deployment, wait_for
from tests.support.running import PASSWORD
from tests.support.web import WebClient, login

pytestmark = pytest.mark.sqlite_only  # (the SQL store plays no part in the moves)


async def history(url: str, token: str, session_id: str) -> list[dict[str, Any]]:
    page = await ok("GET", f"{url}/api/sessions/{session_id}/events?limit=1000", None, token)
    events: list[dict[str, Any]] = page["events"]
    return events


def lines(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [
        e["data"]["data"]
        for e in events
        if e["event"] == "task:stream" and e["data"]["taskId"] == task_id
    ]


async def task_status(url: str, token: str, task_id: str) -> str:
    answer = await ok("GET", f"{url}/api/tasks/{task_id}", None, token)
    return str(answer["task"]["status"])


async def all_keys(redis: Any) -> dict[str, Any]:
    """Every key with its type and contents' size (what a second run must not change)."""
    found: dict[str, Any] = {}
    async for key in redis.scan_iter("*"):
        kind = await redis.type(key)
        size = {"stream": redis.xlen, "hash": redis.hlen, "zset": redis.zcard}.get(kind)
        found[key] = (kind, await size(key) if size else None)
    return found


async def test_a_layout_1_deployment_is_refused_then_migrated_and_runs_on(
    tmp_path: Path,
) -> None:
    facts = manifest()
    agent_id = facts["agentId"]
    async with layout1_redis(tmp_path) as server:
        deployment = layout1_deployment(tmp_path, server.url)
        redis: Any = Redis.from_url(server.url, decode_responses=True)
        try:
            await _refused_migrated_and_running(deployment, redis, facts, agent_id)
        finally:
            deployment.stop_all()
            await redis.aclose()


async def _refused_migrated_and_running(
    deployment: Deployment, redis: Any, facts: dict[str, Any], agent_id: str
) -> None:
    partitions = deployment.partitions
    # 1. This version's gateway refuses the old data: one line, no traceback, status 2.
    refused = subprocess.run(
        [sys.executable, "-m", "orchestra", "gateway", "--port", str(free_port())],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "orchestra redis migrate" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    said = [line for line in refused.stderr.splitlines() if line.startswith("orchestra:")]
    assert len(said) == 1 and "orchestra redis migrate" in said[0], refused.stderr
    assert await redis.get(keys.keyspace()) is None

    # 2. A dry run says what it would do and changes nothing.
    before = await all_keys(redis)
    dry = deployment.orchestra("redis", "migrate", "--dry-run")
    assert "would" in dry and "nothing changed" in dry, dry
    assert await all_keys(redis) == before

    # 3. The migration.
    done = deployment.orchestra("redis", "migrate")
    assert re.search(r"moved \d+ keys to layout 2", done), done
    assert await redis.get(keys.keyspace()) == keys.LAYOUT
    assert int(await redis.get(partitions_key()) or 0) == partitions
    for pattern in LAYOUT_1_PATTERNS:
        assert not [k async for k in redis.scan_iter(pattern)], f"layout-1 keys {pattern} left"
    assert not await redis.exists("orch:agents:online")
    outbox = keys.agent_outbox(agent_id, partitions)
    assert [f["event"] for _, f in await redis.xrange(outbox)] == ["task:assign"]
    grace = keys.timers(partition_of(f"agent:{agent_id}", partitions), partitions)
    assert any("grace:expired" in m for m in await redis.zrange(grace, 0, -1))
    queued = facts["queued"]
    queue = keys.dispatch_queue("normal", partitions)
    assert await redis.zrange(queue, 0, -1) == [f"{queued['sessionId']}/{queued['taskId']}"]
    for partition in range(partitions):  # fencing tokens never go back
        assert int(await redis.get(keys.lease_fence(partition, partitions)) or 0) >= 1

    # 4. The new gateway starts on it, and the old session's history is whole.
    gateway = await deployment.start_gateway("gw1")
    token = await login(gateway.url, facts["user"], facts["password"])
    finished = facts["finished"]
    events = await history(gateway.url, token, finished["sessionId"])
    assert lines(events, finished["taskId"]) == facts["lines"]
    assert await task_status(gateway.url, token, finished["taskId"]) == "completed"
    assert await task_status(gateway.url, token, queued["taskId"]) == "queued"

    # 5. The agent comes back (its state folder lost): its outbox still holds the task
    # assigned to it while it was stopped, which it now runs.
    secret_file = deployment.root / "box.secret"
    secret_file.write_text(facts["agentSecret"] + "\n")
    deployment.start_agent(agent_id, secret_file, gateway.url)
    waiting = facts["outbox"]

    async def outbox_task_ran() -> bool:
        events = await history(gateway.url, token, waiting["sessionId"])
        return lines(events, waiting["taskId"]) == [waiting["line"]] and (
            await task_status(gateway.url, token, waiting["taskId"]) == "completed"
        )

    await wait_for(outbox_task_ran, what="the task waiting in the outbox to run")
    await wait_for(lambda: _empty(redis, outbox), what="the outbox acknowledged")

    # 6. An agent with the capability the queued task waits for takes it.
    async with deployment.store() as store:
        owner = await store.get_user_by_name(facts["user"])
        assert owner is not None
        gpu, gpu_secret = await store.create_agent("gpu-box", owner.id, ["custom", "gpu"])
    gpu_file = deployment.root / "gpu.secret"
    gpu_file.write_text(gpu_secret + "\n")
    deployment.start_agent(
        gpu.id, gpu_file, gateway.url, env={"ORCHESTRA_AGENT_CAPABILITIES": "gpu"}
    )

    async def queued_task_ran() -> bool:
        return await task_status(gateway.url, token, queued["taskId"]) == "completed"

    await wait_for(queued_task_ran, what="the queued task to run on the new agent")
    events = await history(gateway.url, token, queued["sessionId"])
    assert lines(events, queued["taskId"]) == ["gpu-ran"]
    assert lines(events, finished["taskId"]) == facts["lines"]  # still once each, in order

    # 7. Everything stopped, a second migration finds nothing to do and changes nothing.
    deployment.stop_all()
    after = await all_keys(redis)
    again = deployment.orchestra("redis", "migrate")
    assert "nothing to migrate" in again, again
    assert await all_keys(redis) == after


async def _empty(redis: Any, stream: str) -> bool:
    return int(await redis.xlen(stream)) == 0


async def test_orchestra_up_migrates_its_own_folder(tmp_path: Path) -> None:
    """A data folder of `orchestra up` of layout 1: the next `up` moves its data itself
    (it owns the only node) and says so in one line; the old session is there."""
    facts = manifest()
    data = tmp_path / ".orchestra"
    data.mkdir(mode=0o700)
    # `up`'s own Redis (append-only) holding the fixture's keys, as its folder would.
    own = RedisServer(data_dir=data / "redis", appendonly=True)
    async with layout1_redis(tmp_path / "fixture") as fixture:
        source: Any = Redis.from_url(fixture.url)
        await own.start()
        target = Redis.from_url(own.url)
        try:
            async for key in source.scan_iter("*"):
                ttl_ms = await source.pttl(key)
                await target.restore(key, max(int(ttl_ms), 0), await source.dump(key))
        finally:
            await own.stop()
            await source.aclose()
            await target.aclose()
    unpack_database(data / "orchestra.db")
    port = free_port()
    env = orchestra_env() | {"ORCHESTRA_SECRETS_KEY": facts["secretsKey"]}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "up", "--port", str(port), "--no-agent"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_for(
            lambda: "Orchestra is running" in log_path.read_text(),
            what="orchestra up to start",
            timeout_s=90,
        )
        said = log_path.read_text()
        assert re.search(r"orchestra up: Redis data migrated: moved \d+ keys", said)
        url = f"http://127.0.0.1:{port}"
        token = await login(url, facts["user"], facts["password"])
        finished = facts["finished"]
        events = await history(url, token, finished["sessionId"])
        assert lines(events, finished["taskId"]) == facts["lines"]
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(up.wait, 30)
            except subprocess.TimeoutExpired:
                up.kill()


async def test_a_new_partition_count_is_refused_then_migrated(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Data of 4 partitions, written by this version's nodes: a node set to 8 refuses it
    until `orchestra redis migrate --partitions 8` moves it; then the session's history
    is whole and its queued task runs."""
    deployment.extra_env["ORCHESTRA_PARTITIONS"] = "4"
    await deployment.create_user("alice", PASSWORD)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url)
    client = WebClient()
    await client.connect(gateway.url, await login(gateway.url, "alice", PASSWORD))
    program = "for n in range(1, 31): print(f'line {n}')"
    try:
        await wait_for(lambda: client.agent_status_is("online", agent_id), what="agent online")
        done = await client.ok(
            "worker:start", {"tool": "custom", "command": [sys.executable, "-c", program]}
        )
        sid = done["sessionId"]
        await client.ok("session:join", {"sessionId": sid})
        await client.wait_for_event("task:result", lambda d: d["taskId"] == done["taskId"])
        queued = await client.ok(
            "worker:start",
            {"sessionId": sid, "tool": "custom", "command": "echo gpu-ran",
             "requiredCapabilities": ["gpu"]},
        )  # fmt: skip
        await client.wait_for_event(
            "worker:status", lambda d: d["taskId"] == queued["taskId"] and d.get("message")
        )
    finally:
        await client.close()
    agent.stop()
    gateway.stop()

    deployment.extra_env["ORCHESTRA_PARTITIONS"] = "8"
    refused = subprocess.run(
        [sys.executable, "-m", "orchestra", "gateway", "--port", str(free_port())],
        env=deployment.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "placed for 4 partitions" in refused.stderr and "--partitions 8" in refused.stderr
    moved = deployment.orchestra("redis", "migrate", "--partitions", "8")
    assert "moving the keys from 4 to 8 partitions" in moved, moved

    gateway = await deployment.start_gateway("gw2")
    token = await login(gateway.url, "alice", PASSWORD)
    events = await history(gateway.url, token, sid)
    assert lines(events, done["taskId"]) == [f"line {n}" for n in range(1, 31)]
    async with deployment.store() as store:
        owner = await store.get_user_by_name("alice")
        assert owner is not None
        gpu, gpu_secret = await store.create_agent("gpu-box", owner.id, ["custom", "gpu"])
    gpu_file = tmp_path / "gpu.secret"
    gpu_file.write_text(gpu_secret + "\n")
    deployment.start_agent(
        gpu.id, gpu_file, gateway.url, env={"ORCHESTRA_AGENT_CAPABILITIES": "gpu"}
    )

    async def queued_task_ran() -> bool:
        return await task_status(gateway.url, token, queued["taskId"]) == "completed"

    await wait_for(queued_task_ran, what="the queued task to run after the move")
    assert lines(await history(gateway.url, token, sid), queued["taskId"]) == ["gpu-ran"]
