"""Logs an operator can follow and share (issue 12, original design §7.2.2 and §8): real
gateway and agent processes logging JSON to their log files.

- A request's trace id, given by the caller (a socket payload's `traceId`, a REST call's
  `X-Trace-Id` or W3C `traceparent`) or made by the gateway (sent back in `X-Trace-Id`),
  is on the gateway's log lines for that request (the assignment, the task's end) and on
  the agent's (the worker's start, a stop asked for): one grep finds both.
- A run with secrets set (passwords, agent secrets, an AI config's API key, access and
  refresh tokens, the JWT secret, the secrets key) and failures around them (a wrong
  password, forged tokens, a reused refresh token, a wrongly signed agent) leaves none of
  them in any log line.
- Every line of every process's log is one JSON object, to the last one at shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import socketio

from tests.e2e.test_handshake import agent_auth
from tests.support.processes import Deployment, Gateway, Process, http, wait_for
from tests.support.redis import redis_server
from tests.support.running import PASSWORD
from tests.support.web import WebClient
from tests.support.workers import printer

pytestmark = pytest.mark.asyncio(loop_scope="module")

JWT_SECRET = secrets.token_urlsafe(48)
SECRETS_KEY = base64.b64encode(os.urandom(32)).decode()
API_KEY = "sk-ant-api03-" + secrets.token_urlsafe(40)
WRONG_PASSWORD = "wrong-" + secrets.token_urlsafe(12)
#: on every line; a gateway's name their node (`nodeId`), an agent's the agent (`agentId`)
FIELDS = (
    "timestamp", "level", "logger", "message",
    "traceId", "userId", "sessionId", "taskId", "agentId", "event",
)  # fmt: skip


@dataclass
class World:
    deployment: Deployment
    gateway: Gateway
    agent: Process
    agent_id: str
    agent_secret: str
    token: str
    refresh_token: str
    secrets: dict[str, str] = field(default_factory=dict)  # what no log line may hold

    def lines(self, process: Process) -> list[str]:
        return process.log().splitlines()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root: Path = tmp_path_factory.mktemp("trace-logs")
    async with redis_server(root) as redis:
        deployment = Deployment(
            root=root,
            redis_url=redis.url,
            database_url=f"sqlite+aiosqlite:///{root / 'o.db'}",
            extra_env={
                "ORCHESTRA_LOG_FORMAT": "json",
                "ORCHESTRA_LOG_LEVEL": "DEBUG",  # the most there is to leak
                "ORCHESTRA_JWT_SECRET": JWT_SECRET,
                "ORCHESTRA_SECRETS_KEY": SECRETS_KEY,
            },
        )
        try:
            await deployment.create_user("alice", PASSWORD)
            agent_id, secret_file = await deployment.create_agent("box", owner="alice")
            gateway = await deployment.start_gateway("gw1")
            agent = deployment.start_agent(agent_id, secret_file, gateway.url)
            status, tokens = await asyncio.to_thread(
                http,
                "POST",
                gateway.url + "/api/auth/login",
                {"username": "alice", "password": PASSWORD},
            )
            assert status == 200, tokens
            world = World(
                deployment,
                gateway,
                agent,
                agent_id,
                secret_file.read_text().strip(),
                tokens["accessToken"],
                tokens["refreshToken"],
            )
            client = await web_client(world)
            try:
                await wait_for(
                    lambda: client.agent_status_is("online", agent_id), what="the agent online"
                )
            finally:
                await client.close()
            yield world
        except BaseException as exc:
            exc.add_note(deployment.logs())
            raise
        finally:
            deployment.stop_all()
        # Stopped: what they said while shutting down is JSON too.
        for process in deployment.processes:
            assert not_json(process) == [], f"{process.name} wrote lines that are no JSON"


async def web_client(world: World) -> WebClient:
    client = WebClient()
    await client.connect(world.gateway.url, world.token)
    return client


def not_json(process: Process) -> list[str]:
    """The lines of a process's log that are not one JSON object with the fields of
    every line."""
    fields = {*FIELDS, "nodeId"} if isinstance(process, Gateway) else set(FIELDS)
    bad = []
    for line in process.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict) or not fields <= record.keys():
            bad.append(line)
    return bad


def with_trace(process: Process, trace_id: str) -> list[dict[str, Any]]:
    """The log lines of `process` that a grep of `trace_id` finds, as records."""
    return [json.loads(line) for line in process.log().splitlines() if trace_id in line]


def lines_saying(records: list[dict[str, Any]], pattern: str) -> list[dict[str, Any]]:
    return [r for r in records if re.search(pattern, r["message"])]


def call(
    method: str, url: str, body: Any = None, token: str | None = None, **headers: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A blocking JSON request with extra headers; (status, answer headers, body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


async def test_a_requests_trace_id_is_on_the_gateways_and_the_agents_log_lines(
    world: World,
) -> None:
    url = world.gateway.url
    client = await web_client(world)
    try:
        # A socket request with the caller's trace id (the envelope's optional traceId).
        trace_id = "e2e-" + secrets.token_hex(12)
        started = await client.ok(
            "worker:start",
            {"agentId": world.agent_id, "tool": "custom", "command": printer(3, 0.01),
             "workingDirectory": str(world.deployment.root), "traceId": trace_id},
        )  # fmt: skip
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        result = await client.wait_for_event(
            "task:result", lambda d: d["taskId"] == started["taskId"]
        )
        assert result["success"] is True, result

        def followed() -> bool:
            gateway, agent = with_trace(world.gateway, trace_id), with_trace(world.agent, trace_id)
            return bool(
                lines_saying(gateway, r"assigned to agent")
                and lines_saying(gateway, r": completed")  # the agent's report carried it back
                and lines_saying(agent, r"started a custom worker")
            )

        await wait_for(followed, what="the trace id in both logs", timeout_s=30)
        gateway, agent = with_trace(world.gateway, trace_id), with_trace(world.agent, trace_id)
        for record in gateway + agent:
            assert record["traceId"] == trace_id, record
        [assigned] = lines_saying(gateway, r"assigned to agent")
        assert assigned["taskId"] == started["taskId"] and assigned["nodeId"] == "gw1"
        [begun] = lines_saying(agent, r"started a custom worker")
        assert begun["taskId"] == started["taskId"] and begun["agentId"] == world.agent_id
        assert begun["event"] == "task:assign"
    finally:
        await client.close()

    # REST: the caller's X-Trace-Id, echoed; the agent's lines for the task carry it.
    rest_trace = "rest-" + secrets.token_hex(12)
    status, headers, body = await asyncio.to_thread(
        call,
        "POST",
        url + "/api/tasks",
        {"agentId": world.agent_id, "tool": "custom", "command": printer(600, 0.1),
         "workingDirectory": str(world.deployment.root)},
        world.token,
        X_Trace_Id=rest_trace,
    )  # fmt: skip
    assert status == 201, body
    assert headers["X-Trace-Id"] == rest_trace
    task_id = body["taskId"]
    await wait_for(
        lambda: lines_saying(with_trace(world.agent, rest_trace), r"started a custom worker"),
        what="the REST call's trace id on the agent's start",
    )
    # A W3C traceparent names the trace of the cancel, down to the agent's stop.
    w3c = secrets.token_hex(16)
    status, headers, body = await asyncio.to_thread(
        call,
        "POST",
        f"{url}/api/tasks/{task_id}/cancel",
        None,
        world.token,
        traceparent=f"00-{w3c}-{secrets.token_hex(8)}-01",
    )
    assert status == 200, body
    assert headers["X-Trace-Id"] == w3c
    await wait_for(
        lambda: lines_saying(with_trace(world.agent, w3c), rf"task {task_id}: stop requested"),
        what="the cancel's trace id on the agent's stop",
    )
    # No trace id given, or one that is not a plain id: the gateway makes one.
    for given in ({}, {"X_Trace_Id": "not a trace id!"}):
        status, headers, _ = await asyncio.to_thread(
            call, "GET", url + "/api/auth/me", None, world.token, **given
        )
        assert status == 200
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Trace-Id"]), headers
    # An error answer names its trace id too.
    status, headers, _ = await asyncio.to_thread(
        call, "GET", url + "/api/tasks/nope", None, world.token, X_Trace_Id="err-trace-1"
    )
    assert status >= 400 and headers["X-Trace-Id"] == "err-trace-1"

    for process in (world.gateway, world.agent):
        assert not_json(process) == [], process.name


async def test_no_secret_reaches_any_log_line(world: World) -> None:
    url = world.gateway.url
    token, refresh = world.token, world.refresh_token
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    found: dict[str, str] = {
        "alice's password": PASSWORD,
        "a wrong password": WRONG_PASSWORD,
        "the agent's secret": world.agent_secret,
        "the access token": token,
        "the first refresh token": refresh,
        "a forged token": forged,
        "the JWT secret": JWT_SECRET,
        "the secrets key": SECRETS_KEY,
        "the AI config's API key": API_KEY,
    }

    async def rest(method: str, path: str, body: Any = None, bearer: str | None = token) -> Any:
        return await asyncio.to_thread(http, method, url + path, body, bearer)

    # An AI config with a key, and a worker started with it (its key sealed to the agent).
    status, made = await rest(
        "POST", "/api/ai-configs", {"name": "k", "tool": "custom", "apiKey": API_KEY}
    )
    assert status == 201, made
    client = await web_client(world)
    try:
        started = await client.ok(
            "worker:start",
            {"agentId": world.agent_id, "tool": "custom", "command": printer(2, 0.01),
             "workingDirectory": str(world.deployment.root), "aiConfigId": made["aiConfig"]["id"]},
        )  # fmt: skip
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        await client.wait_for_event("task:result", lambda d: d["taskId"] == started["taskId"])
    finally:
        await client.close()

    # A second agent over REST, its secret rotated.
    status, second = await rest("POST", "/api/agents", {"name": "second"})
    assert status == 201, second
    found["a new agent's secret"] = second["agentSecret"]
    status, rotated = await rest("POST", f"/api/agents/{second['agentId']}/rotate-secret")
    assert status == 200, rotated
    found["a rotated agent secret"] = rotated["agentSecret"]

    # Tokens refreshed, then the used refresh token again (reuse: the family ends).
    status, renewed = await rest("POST", "/api/auth/refresh", {"refreshToken": refresh}, None)
    assert status == 200, renewed
    found["the second access token"] = renewed["accessToken"]
    found["the second refresh token"] = renewed["refreshToken"]
    status, _ = await rest("POST", "/api/auth/refresh", {"refreshToken": refresh}, None)
    assert status == 401

    # Failures: a wrong password, forged and revoked tokens, a wrongly signed agent.
    wrong = {"username": "alice", "password": WRONG_PASSWORD}
    assert (await rest("POST", "/api/auth/login", wrong, None))[0] == 401
    assert (await rest("GET", "/api/auth/me", bearer=forged))[0] == 401
    assert (await rest("GET", "/api/auth/me", bearer=token))[0] == 401  # the family ended
    assert (await rest("POST", "/api/auth/refresh", {"refreshToken": forged}, None))[0] == 401
    right = {"username": "alice", "password": PASSWORD}
    status, again = await rest("POST", "/api/auth/login", right, None)
    assert status == 200, again
    found["the third access token"] = again["accessToken"]
    found["the third refresh token"] = again["refreshToken"]
    change = {"currentPassword": WRONG_PASSWORD, "newPassword": "n-" + secrets.token_urlsafe(12)}
    found["an unused new password"] = change["newPassword"]
    assert (await rest("PATCH", "/api/auth/me", change, again["accessToken"]))[0] == 401
    for namespace, auth in (
        ("/web", {"token": forged}),
        ("/agent", agent_auth(world.agent_id, "not-" + world.agent_secret)),
    ):
        sio = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(url, namespaces=[namespace], auth=auth, wait_timeout=30)
        await sio.disconnect()

    lines = {p.name: p.log() for p in world.deployment.processes}
    assert all(lines.values()), "both processes logged"
    leaks = [
        f"{what} in the log of {name}"
        for what, secret in found.items()
        for name, text in lines.items()
        if secret in text
    ]
    assert leaks == []
    for process in world.deployment.processes:
        assert not_json(process) == [], process.name
