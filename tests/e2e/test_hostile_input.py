"""Input that must not hurt (issue 9): what an attacker found the gateway let through, each
tried from outside against a real gateway process. Malformed frames and the wider fuzzing
are in test_fuzz_frames.py and test_fuzz_payloads.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import socketio

from tests.e2e.test_handshake import (
    Gate,
    agent_auth,
    call,
    refused_code,
    registered_agent,
    rest,
)
from tests.support.processes import wait_for

pytestmark = pytest.mark.sqlite_only


def strict(text: str) -> Any:
    """Parse JSON as a browser's JSON.parse would: NaN and Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def refused_as(answer: dict[str, Any], code: str) -> None:
    assert answer["success"] is False, answer
    assert answer["error"]["code"] == code, answer


async def raw_get(url: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, str]:
    """A GET whose headers are sent byte for byte (urllib refuses non-ASCII ones)."""

    def send() -> tuple[int, str]:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.putrequest("GET", path)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()

    return await asyncio.to_thread(send)


async def agent_status(gate: Gate) -> str:
    status, body = await rest("GET", gate.url + "/api/agents", token=gate.token)
    assert status == 200, body
    return next(str(a["status"]) for a in body["agents"] if a["id"] == gate.agent_id)


async def test_an_agent_cannot_store_nan_or_infinity(gate: Gate) -> None:
    """3. NaN and Infinity from an agent are refused (PARAM_001) and never reach a watcher:
    the agent list stays JSON a browser can parse."""
    sio = await registered_agent(gate)
    try:
        me = gate.agent_id
        attempts = [
            ("agent:heartbeat", {"agentId": me, "systemInfo": {"cpu": math.nan, "memory": 1}}),
            ("agent:heartbeat", {"agentId": me, "systemInfo": {"cpu": 1, "memory": math.inf}}),
            ("task:accepted", {"agentId": me, "taskId": "t", "estimatedDuration": math.inf}),
            (
                "agent:register",
                {"agentId": me, "name": "x", "capabilities": [], "metadata": {"load": -math.inf}},
            ),
            (
                "worker:output",
                {
                    "agentId": me,
                    "taskId": "t",
                    "seq": 1,
                    "type": "result",
                    "content": "",
                    "usage": {"inputTokens": math.nan},
                },
            ),
        ]
        for event, payload in attempts:
            refused_as(await call(sio, "/agent", event, payload), "PARAM_001")
        # The connection is still good for a valid report.
        beat = await call(
            sio,
            "/agent",
            "agent:heartbeat",
            {"agentId": me, "systemInfo": {"cpu": 12.5, "memory": 40.0, "disk": 70.0}},
        )
        assert beat["success"], beat
        status, text = await asyncio.to_thread(_get_text, gate.url + "/api/agents", gate.token)
        assert status == 200
        agents = strict(text)["agents"]
        assert [a["status"] for a in agents if a["id"] == me] == ["online"]
    finally:
        await sio.disconnect()


def _get_text(url: str, token: str) -> tuple[int, str]:
    import urllib.request

    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.read().decode()


async def test_handshake_fields_of_any_type_are_refused_with_auth_001(gate: Gate) -> None:
    """4. A handshake whose fields are out of range or of the wrong type gets a
    connect_error AUTH_001, every time, and the gateway serves on."""
    good = agent_auth(gate.agent_id, gate.secret)
    cases: dict[str, dict[str, Any]] = {
        "timestamp Infinity": {**good, "timestamp": math.inf},
        "timestamp NaN": {**good, "timestamp": math.nan},
        "timestamp 10**400": {**good, "timestamp": 10**400},
        "timestamp 1e300": {**good, "timestamp": 1e300},
        "timestamp negative": {**good, "timestamp": -(10**20)},
        "timestamp a list": {**good, "timestamp": [1]},
        "timestamp text": {**good, "timestamp": "soon"},
        "signature non-ASCII": {**good, "signature": "é" * 64},
        "signature a number": {**good, "signature": 7},
        "agentId an object": {**good, "agentId": {"$ne": ""}},
        "nonce a list": {**good, "nonce": ["a" * 16]},
    }
    for name, auth in cases.items():
        assert await refused_code(gate.url, "/agent", auth) == "AUTH_001", name
    assert await refused_code(gate.url, "/web", {"token": math.inf}) == "AUTH_001"
    # The real handshake still works.
    assert await refused_code(gate.url, "/agent", agent_auth(gate.agent_id, gate.secret)) is None


async def test_reserved_event_names_run_no_lifecycle_handler(gate: Gate) -> None:
    """5. `connect` and `disconnect` sent as events get PARAM_001; the agent stays online and
    the web socket keeps its user."""
    sio = await registered_agent(gate)
    web = socketio.AsyncClient(reconnection=False)
    await web.connect(gate.url, namespaces=["/web"], auth={"token": gate.token}, wait_timeout=30)
    try:
        await wait_for(lambda: _is(agent_status(gate), "online"), what="the agent online")
        for name in ("disconnect", "connect", "connect_error", "disconnecting"):
            refused_as(await call(sio, "/agent", name, {"agentId": gate.agent_id}), "PARAM_001")
            refused_as(await call(web, "/web", name, {}), "PARAM_001")
        assert await agent_status(gate) == "online"
        beat = await call(sio, "/agent", "agent:heartbeat", {"agentId": gate.agent_id})
        assert beat["success"], beat
        sync = await call(web, "/web", "user:sync", {})
        assert sync["success"] and sync["data"]["user"]["id"] == gate.user["id"], sync
    finally:
        await sio.disconnect()
        await web.disconnect()


async def _is(value: Any, expected: str) -> bool:
    return await value == expected


async def test_rest_answers_bad_headers_and_ids_with_a_code_not_a_500(gate: Gate) -> None:
    """7. A non-ASCII Authorization header is AUTH_001 and an out-of-range `after` is
    PARAM_001; neither answers 500, and no stack reaches an unauthenticated caller."""
    for value in (b"Bearer \xff\xfe\xe9", "Bearer é".encode(), b"\xff", b"Bearer " + b"a" * 5000):
        status, text = await raw_get(gate.url, "/api/auth/me", [(b"authorization", value)])
        assert status == 401, (value, status, text)
        info = strict(text)["error"]
        assert info["code"] == "AUTH_001" and "stack" not in info, info
    status, body = await rest("POST", gate.url + "/api/sessions", {"title": "t"}, gate.token)
    assert status == 201, body
    sid = body["session"]["id"]
    for after in (
        "18446744073709551615-18446744073709551615",
        "99999999999999999999999-1",
        "9223372036854775808-0",
        "\uff11\uff12-0",  # full-width digits: str.isdigit() says yes
        "-1",
        "1-2-3",
    ):
        status, text = await raw_get(
            gate.url,
            f"/api/sessions/{sid}/events?after={quote(after)}",
            [(b"authorization", f"Bearer {gate.token}".encode())],
        )
        assert status == 400, (after, status, text)
        assert strict(text)["error"]["code"] == "PARAM_001", text
    status, text = await raw_get(
        gate.url,
        f"/api/sessions/{sid}/events?after=9223372036854775807-9223372036854775807",
        [(b"authorization", f"Bearer {gate.token}".encode())],
    )
    assert status == 200 and strict(text)["events"] == [], text
    assert "Traceback" not in gate.gateway.log()


async def test_agent_events_with_bytes_or_huge_integers_are_param_001(gate: Gate) -> None:
    """8. Binary attachments and integers past 64 bits are refused with PARAM_001, not
    SYS_001, and the connection stays usable."""
    sio = await registered_agent(gate)
    try:
        me = gate.agent_id
        for event, payload in [
            (
                "worker:permission",
                {
                    "agentId": me,
                    "taskId": "t",
                    "permissionId": "p",
                    "tool": "Bash",
                    "input": {"command": b"\x00\x01"},
                },
            ),
            (
                "task:result",
                {
                    "agentId": me,
                    "taskId": "t",
                    "success": True,
                    "duration": 1,
                    "result": b"\xff" * 10,
                },
            ),
            (
                "agent:register",
                {"agentId": me, "name": "x", "capabilities": [], "lastCommandId": 10**30},
            ),
            (
                "agent:register",
                {"agentId": me, "name": "x", "capabilities": [], "lastCommandId": -(2**70)},
            ),
            (
                "task:stream",
                {"agentId": me, "taskId": "t", "seq": 2**64, "type": "stdout", "data": "x"},
            ),
        ]:
            refused_as(await call(sio, "/agent", event, payload), "PARAM_001")
        again = await call(
            sio,
            "/agent",
            "agent:register",
            {"agentId": me, "name": "bench", "capabilities": ["custom"], "lastCommandId": 0},
        )
        assert again["success"], again
    finally:
        await sio.disconnect()
    log = gate.gateway.log()
    assert "Traceback" not in log and "SYS_001" not in log
