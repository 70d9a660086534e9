"""Malformed payloads against a real gateway process (GitHub issue 9): every event of `/web`
and `/agent` and every REST route, property-based.

What a malformed request must get (PROTOCOL.md §1, §2, §6):
- over a socket, with an ack: exactly one Response `{requestId, success: false, error}` whose
  code is one of §2's and not SYS_001; without an ack, one `error` event with the ErrorInfo;
- not strict JSON (NaN, Infinity, 1e400, integers past 64 bits, lone surrogates, nesting
  deeper than 64, binary attachments): PARAM_001, and the connection stays open and usable;
- a reserved event name (`connect`, `disconnect`, ...) sent as an event: PARAM_001, and no
  lifecycle handler runs (the agent stays online, the web socket keeps its user);
- over REST: an HTTP status and `{"error": ErrorInfo}` whose code matches the status, never
  a 5xx, a stack only for SYS_001 and only to an authenticated caller;
- afterwards the gateway is healthy and its log holds no traceback and no internal error.

Each test records every answer and fails once, at the end, with a summary: the counts per
code and the first offending requests with what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client as http_client
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.test_handshake import agent_auth
from tests.support.fuzz import (
    HUGE,
    LONE_SURROGATES,
    MAX_DEPTH,
    MAX_PAYLOAD,
    ODD_STRINGS,
    RESERVED_EVENTS,
    SOCKET_REFUSALS,
    STATUS_CODES,
    Case,
    LoopBridge,
    Tally,
    compressed_reason,
    describe,
    error_info_problem,
    fuzz_settings,
    json_length,
    malformed,
    nested,
    response_problem,
)
from tests.support.processes import Deployment, Gateway, http, wait_for
from tests.support.raw_socketio import ACK, Raw, RawSocketIO, dumps, open_namespace
from tests.support.running import PASSWORD
from tests.support.web import login

pytestmark = [
    # The SQL backend plays no part here.
    pytest.mark.sqlite_only,
    # Thousands of requests from one user; and the hand-driven agent socket sends no
    # heartbeats of its own, so the gateway must not think it silent meanwhile.
    pytest.mark.orchestra_env(
        ORCHESTRA_RATE_LIMIT_REQUESTS="1000000", ORCHESTRA_HEARTBEAT_INTERVAL_S="600"
    ),
]

ROOT_PASSWORD = "root's own long password"
MARKER = "fuzz:marker"  # an unknown event: its ack says every frame before it was handled
ANSWER_TIMEOUT_S = 60.0
ERROR_EVENT_TIMEOUT_S = 10.0
FINAL_TIMEOUT_S = 20.0


# -- the gateway under attack --------------------------------------------------------------


@dataclass
class Target:
    deployment: Deployment
    gateway: Gateway
    token: str  # alice's
    admin_token: str  # root's
    user_id: str
    admin_id: str
    agent_id: str
    secret: str
    ids: dict[str, str] = field(default_factory=dict)  # real ids to aim at

    @property
    def url(self) -> str:
        return self.gateway.url


async def rest(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    status, answer = await asyncio.to_thread(http, method, url, body, token)
    assert 200 <= status < 300, (method, url, status, answer)
    return answer


@pytest_asyncio.fixture
async def target(deployment: Deployment) -> Target:
    await deployment.create_user("alice", PASSWORD)
    await deployment.create_user("root", ROOT_PASSWORD, admin=True)
    gateway = await deployment.start_gateway("gw1")
    token = await login(gateway.url, "alice", PASSWORD)
    admin_token = await login(gateway.url, "root", ROOT_PASSWORD)
    me = await rest("GET", gateway.url + "/api/auth/me", token=token)
    root = await rest("GET", gateway.url + "/api/auth/me", token=admin_token)
    agent = await rest(
        "POST", gateway.url + "/api/agents", {"name": "fuzzbox", "capabilities": ["custom"]}, token
    )
    return Target(
        deployment,
        gateway,
        token,
        admin_token,
        me["user"]["id"],
        root["user"]["id"],
        agent["agentId"],
        agent["agentSecret"],
    )


def gateway_log_problems(gateway: Gateway, since: int = 0) -> list[str]:
    """Lines of the gateway's log (after offset `since`) that show a bug."""
    text = gateway.log()[since:]
    lines = text.splitlines()
    bad = [
        i
        for i, line in enumerate(lines)
        if "Traceback" in line or "SYS_001" in line or "internal error" in line.lower()
    ]
    return ["\n".join(lines[max(0, i - 2) : i + 12]) for i in bad[:5]]


async def healthy(gateway: Gateway) -> dict[str, Any]:
    status, health = await asyncio.to_thread(http, "GET", gateway.url + "/health")
    assert status == 200 and health.get("status") == "healthy", (status, health)
    return health


# -- templates: a valid payload of every event, which the fuzzing then breaks ---------------


def web_templates(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    session, task, agent = ids["sessionId"], ids["taskId"], ids["agentId"]
    return {
        "agents:list": {},
        "user:sync": {},
        "session:join": {"sessionId": session, "lastEventId": "0-0", "epoch": "e", "batch": True},
        "session:leave": {"sessionId": session},
        "worker:start": {
            "sessionId": session,
            "agentId": agent,
            "tool": "custom",
            "command": ["true"],
            "workingDirectory": "/tmp",
            "initialPrompt": "hi",
            "model": "m",
            "permissionMode": "default",
            "allowedTools": ["Read"],
            "env": {"A": "b"},
            "pty": False,
            "timeoutS": 10,
            "priority": "normal",
            "requiredCapabilities": ["custom"],
            "strategy": "least-loaded",
            "id": "req-1",
            "version": "1.1",
        },
        "worker:input": {"taskId": task, "input": "more", "eof": False},
        "worker:stop": {"taskId": task, "mode": "interrupt"},
        "worker:permission": {
            "taskId": task,
            "permissionId": "perm-1",
            "decision": "allow",
            "scope": "once",
            "message": "ok",
            "updatedInput": {"a": 1},
        },
    }


def agent_templates(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    agent, task = ids["agentId"], ids["taskId"]
    ref = {"taskId": task, "agentId": agent, "attempt": 1}
    return {
        "agent:register": {
            "agentId": agent,
            "name": "fuzzbox",
            "capabilities": ["custom"],
            "tools": [{"name": "custom", "version": "1"}],
            "agentVersion": "0.1",
            "metadata": {"os": "linux"},
            "maxConcurrency": 4,
            "lastCommandId": 0,
            "runningTasks": [{"taskId": task, "attempt": 1, "lastSeq": 0}],
        },
        "agent:heartbeat": {
            "agentId": agent,
            "timestamp": 1_700_000_000_000,
            "systemInfo": {"cpu": 1.5, "memory": 20, "disk": 30},
        },
        "task:accepted": {**ref, "estimatedDuration": 5},
        "task:rejected": {**ref, "reason": "busy", "code": "AGENT_001"},
        "task:progress": {**ref, "progress": 50, "currentStep": "s", "estimatedRemaining": 3},
        "task:result": {
            **ref,
            "success": True,
            "result": {"x": {"__type": "BigInt", "value": "123"}},
            "duration": 12,
            "resourceUsage": {"cpu": 1},
        },
        "worker:output": {
            **ref,
            "seq": 1,
            "type": "assistant",
            "content": "hello",
            "details": {"messageId": "m"},
            "usage": {"inputTokens": 1, "outputTokens": 2},
            "stats": {"durationMs": 3},
        },
        "task:stream": {
            **ref,
            "seq": 1,
            "items": [{"type": "stdout", "data": "x", "timestamp": "2024-01-01T00:00:00.000Z"}],
        },
        "worker:status": {**ref, "status": "running", "message": "m"},
        "worker:permission": {
            **ref,
            "permissionId": "perm-1",
            "tool": "Bash",
            "input": {"command": "ls"},
            "title": "t",
            "suggestions": [],
        },
        "worker:permission:cancelled": {**ref, "permissionId": "perm-1", "reason": "gave up"},
        "pong": {"timestamp": 1_700_000_000_000},
    }


# -- driving both namespaces ---------------------------------------------------------------


def _is_ack(namespace: str, ack_id: int | None) -> Any:
    return lambda p: p.type == ACK and p.namespace == namespace and p.id == ack_id


class SocketFuzzer:
    """One long-lived raw connection per namespace (reopened, and the fact recorded, when
    the gateway ends one); sends a request, reads what comes back, checks and tallies it."""

    def __init__(self, target: Target, tally: Tally) -> None:
        self.target = target
        self.tally = tally
        self.clients: dict[str, RawSocketIO] = {}
        self.templates: dict[str, dict[str, dict[str, Any]]] = {}
        # Requests sent without an ack, each owed one `error` event; those events come
        # through Redis, a little after the acks, so they are matched up at the end, in
        # order, with the error events of every connection used.
        self.without_ack: dict[str, list[tuple[str, set[str], str]]] = {"/web": [], "/agent": []}
        self.old_error_events: dict[str, list[Any]] = {"/web": [], "/agent": []}

    async def open(self, namespace: str) -> RawSocketIO:
        old = self.clients.pop(namespace, None)
        if old is not None:
            self.old_error_events[namespace] += old.events(namespace, "error")
            await old.close()
        if namespace == "/web":
            client = await open_namespace(self.target.url, "/web", {"token": self.target.token})
        else:
            client = await open_namespace(
                self.target.url, "/agent", agent_auth(self.target.agent_id, self.target.secret)
            )
            answer = await client.call(
                "/agent",
                "agent:register",
                {
                    "agentId": self.target.agent_id,
                    "name": "fuzzbox",
                    "capabilities": ["custom"],
                    "tools": [{"name": "custom"}],
                    "agentVersion": "0.1",
                    "maxConcurrency": 64,
                },
            )
            assert answer["success"], answer
        self.clients[namespace] = client
        return client

    async def start(self) -> None:
        await self.open("/web")
        await self.open("/agent")
        # The control: the raw client gets valid requests answered.
        answer = await self.clients["/web"].call("/web", "agents:list", {})
        assert answer["success"], answer
        assert self.agent_status(answer) == "online", answer
        # A task of this agent's and its session, for requests to aim at.
        started = await self.call_ok(
            "/web",
            "worker:start",
            {"agentId": self.target.agent_id, "tool": "custom", "command": "true"},
        )
        ids = {
            "agentId": self.target.agent_id,
            "taskId": started["taskId"],
            "sessionId": started["sessionId"],
        }
        self.target.ids.update(ids)
        self.templates = {"/web": web_templates(ids), "/agent": agent_templates(ids)}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    def agent_status(self, answer: dict[str, Any]) -> str | None:
        for agent in answer.get("data", {}).get("agents", []):
            if agent.get("id") == self.target.agent_id:
                return str(agent.get("status"))
        return None

    async def call_ok(self, namespace: str, event: str, payload: Any) -> dict[str, Any]:
        answer = await self.clients[namespace].call(namespace, event, payload, ANSWER_TIMEOUT_S)
        assert isinstance(answer, dict) and answer.get("success") is True, (event, answer)
        data: dict[str, Any] = answer["data"]
        return data

    def expectation(self, namespace: str, event: Any, case: Case) -> tuple[set[str] | None, str]:
        """The codes the request must be refused with (None: any refusal of
        SOCKET_REFUSALS, or success), and why."""
        reason = case.non_strict()
        if reason:
            return {"PARAM_001"}, f"not strict JSON: {reason}"
        if not isinstance(event, str) or event not in self.templates[namespace]:
            return {"PARAM_001"}, "not an event of this namespace"
        if json_length(case.args) > MAX_PAYLOAD:
            return {"RES_001", "PARAM_001"}, "over the size limit"
        if len(case.args) >= 1 and not isinstance(case.args[0], dict):
            return {"PARAM_001"}, "the payload is not an object"
        if len(case.args) >= 1:
            well_formed, _ = compressed_reason(case.args[0])
            if case.args[0].get("compressed") is True and not well_formed:
                return {"PARAM_001", "RES_001"}, "a broken compressed payload"
        return None, ""

    async def send(self, namespace: str, event: Any, case: Case, ack: bool = True) -> None:
        """One request, its answer checked and tallied. A request sent without an ack
        (only one sure to be refused) goes out twice: first with an ack, whose refusal
        says what the `error` event of the second must say (see `error_events`)."""
        expected, why = self.expectation(namespace, event, case)
        # An event name that is not a string makes a malformed packet, which the gateway
        # may answer by closing the connection (test_fuzz_frames.py) instead of PARAM_001.
        may_close = not isinstance(event, str)
        code = await self._request(namespace, event, case, expected, why, may_close)
        if ack or expected is None:
            return
        label = f"{namespace} {describe(event, 60)} ({case.what}) {describe(case.args)}"
        client = self.clients[namespace]
        self.tally.sent += 1
        self.tally.count(f"{namespace} sent without ack")
        await client.emit(namespace, event, *case.args, ack=False)
        if not await self._handled(namespace, client, label, may_close):
            return
        if code is not None and code != "success":
            self.without_ack[namespace].append((label, {code}, f"refused {code} with an ack"))

    async def _handled(
        self, namespace: str, client: RawSocketIO, label: str, may_close: bool = False
    ) -> bool:
        """Whether the gateway went on to answer the next request (an unknown event with an
        ack, so everything sent before it was handled), with the connection still up."""
        start = len(client.packets)
        marker = await client.emit(namespace, MARKER, {})
        got_marker = await client.wait_for(_is_ack(namespace, marker), ANSWER_TIMEOUT_S, start)
        ended = client.ended or client.disconnected(namespace)
        if ended and may_close:
            self.tally.count(f"{namespace} closed on a malformed packet")
            await self.open(namespace)
            return False
        if got_marker is None:
            kind = "connection ended" if ended else "no answer at all (gateway stuck?)"
            self.tally.problem(kind, f"{label} -> close code {client.close_code}")
            self.tally.count(f"{namespace} {kind}")
            await self.open(namespace)
            return False
        if client.disconnected(namespace):
            self.tally.problem(
                "namespace disconnected", f"{label} -> {client.packets[-1].raw[:200]}"
            )
            self.tally.count(f"{namespace} disconnected")
            await self.open(namespace)
            return False
        return True

    async def _request(
        self,
        namespace: str,
        event: Any,
        case: Case,
        expected: set[str] | None,
        why: str,
        may_close: bool = False,
    ) -> str | None:
        """Send with an ack; the answer's code ("success" if none), None without one."""
        client = self.clients[namespace]
        self.tally.sent += 1
        payload = case.args[0] if len(case.args) == 1 else None
        # The requestId must echo an `id` the gateway could read: that of one payload
        # object in strict JSON (a payload it refuses unread may get an id of its own).
        request_id = (
            payload["id"]
            if isinstance(payload, dict)
            and isinstance(payload.get("id"), str)
            and case.non_strict() is None
            else None
        )
        label = f"{namespace} {describe(event, 60)} ({case.what}) {describe(case.args)}"
        start = len(client.packets)
        ack_id = await client.emit(namespace, event, *case.args)
        if not await self._handled(namespace, client, label, may_close):
            return None
        acks = [p for p in client.packets[start:] if p.type == ACK and p.id == ack_id]
        if not acks:
            self.tally.problem("no ack", f"{label} -> silence (the next request was answered)")
            self.tally.count(f"{namespace} no ack")
            return None
        if len(acks) > 1:
            self.tally.problem("more than one ack", f"{label} -> {[a.raw[:100] for a in acks]}")
        data = acks[0].data
        if not (isinstance(data, list) and len(data) == 1):
            self.tally.problem("ack is not one Response", f"{label} -> {acks[0].raw[:300]}")
            self.tally.count(f"{namespace} odd ack")
            return None
        answer = data[0]
        problem = response_problem(answer, request_id)
        if problem:
            self.tally.problem("malformed Response", f"{label} -> {problem}: {describe(answer)}")
        success = isinstance(answer, dict) and answer.get("success") is True
        error = answer.get("error") if isinstance(answer, dict) else None
        code = "success" if success else str((error or {}).get("code"))
        self.tally.count(f"{namespace} {code}")
        self._judge(label, expected, why, success, code, describe(answer))
        return code

    async def error_events(self) -> None:
        """Every request sent without an ack whose twin with an ack was refused got one
        `error` event, with the same code, and there were no others."""
        for namespace, owed in self.without_ack.items():
            client = self.clients[namespace]

            def received(client: RawSocketIO = client, namespace: str = namespace) -> list[Any]:
                return self.old_error_events[namespace] + client.events(namespace, "error")

            def enough(received: Any = received, owed: list[Any] = owed) -> bool:
                return len(received()) >= len(owed)

            with contextlib.suppress(AssertionError):  # too few: said below
                await wait_for(enough, timeout_s=ERROR_EVENT_TIMEOUT_S)
            await asyncio.sleep(0.3)  # and none too many
            events = received()
            if len(events) != len(owed):
                self.tally.problem(
                    "error events do not match the refused requests without an ack",
                    f"{namespace}: {len(events)} error events for {len(owed)} requests "
                    "without an ack (refused when sent with one); the requests: "
                    + "; ".join(label for label, _, _ in owed[:8])
                    + "; the events: "
                    + "; ".join(e.raw[:160] for e in events[:8]),
                )
            paired = len(events) == len(owed)  # else there is no telling which is whose
            for index, event in enumerate(events):
                label = owed[index][0] + " (no ack)" if paired else f"an error event on {namespace}"
                info = event.args[0] if event.args else None
                problem = error_info_problem(info, stack_allowed=True)
                if problem:
                    self.tally.problem(
                        "malformed error event", f"{label} -> {problem}: {event.raw[:300]}"
                    )
                code = str(info.get("code")) if isinstance(info, dict) else "?"
                self.tally.count(f"{namespace} error event {code}")
                if paired:
                    _, expected, why = owed[index]
                    self._judge(label, expected, why, False, code, event.raw[:300])

    def _judge(
        self, label: str, expected: set[str] | None, why: str, success: bool, code: str, got: str
    ) -> None:
        if code == "SYS_001":
            self.tally.problem("SYS_001", f"{label} -> {got}")
        elif expected is None:
            if not success and code not in SOCKET_REFUSALS:
                self.tally.problem(f"unexpected {code}", f"{label} -> {got}")
        elif success:
            self.tally.problem(f"accepted although {why}", f"{label} -> {got}")
        elif code not in expected:
            self.tally.problem(
                f"{code} instead of {'/'.join(sorted(expected))} ({why.split(':')[0]})",
                f"{label} -> {got}",
            )

    async def still_serving(self, check_sync: bool = True) -> list[str]:
        """On the same connections: valid requests answered, the agent online, the web
        socket still its user's. What is wrong, if anything."""
        wrong: list[str] = []
        web, agent = self.clients["/web"], self.clients["/agent"]
        for client, namespace in ((web, "/web"), (agent, "/agent")):
            if client.ended or client.disconnected(namespace):
                wrong.append(f"the {namespace} connection has ended")
        if not wrong:
            try:
                await self._still_serving(web, agent, wrong, check_sync)
            except AssertionError as exc:  # no answer in time
                wrong.append(str(exc)[:600])
        return wrong

    async def _still_serving(
        self, web: RawSocketIO, agent: RawSocketIO, wrong: list[str], check_sync: bool
    ) -> None:
        listed = await web.call("/web", "agents:list", {}, FINAL_TIMEOUT_S)
        if not (isinstance(listed, dict) and listed.get("success")):
            wrong.append(f"agents:list on the same /web connection: {describe(listed)}")
        elif self.agent_status(listed) != "online":
            wrong.append(f"the agent is {self.agent_status(listed)!r}, not online")
        beat = await agent.call(
            "/agent", "agent:heartbeat", {"agentId": self.target.agent_id}, FINAL_TIMEOUT_S
        )
        if not (isinstance(beat, dict) and beat.get("success")):
            wrong.append(f"agent:heartbeat on the same /agent connection: {describe(beat)}")
        if not check_sync:
            return
        synced = await web.call("/web", "user:sync", {}, FINAL_TIMEOUT_S)
        if not (isinstance(synced, dict) and synced.get("success")):
            wrong.append(f"user:sync on the same /web connection: {describe(synced)}")
        elif (synced["data"].get("user") or {}).get("id") != self.target.user_id:
            wrong.append(f"user:sync answers for another user: {describe(synced)}")


async def finish(target: Target, fuzzer: SocketFuzzer | None, tally: Tally, log_from: int) -> None:
    """The checks after the fuzzing; fails with the tally's summary if anything is wrong."""
    wrong: list[str] = []
    if fuzzer is not None:
        await fuzzer.error_events()
        wrong += await fuzzer.still_serving()
        await fuzzer.close()
    status, health = await asyncio.to_thread(http, "GET", target.url + "/health")
    if not (status == 200 and health.get("status") == "healthy"):
        wrong.append(f"GET /health: {status} {health}")
    await asyncio.sleep(0.5)  # the last log lines
    for lines in gateway_log_problems(target.gateway, log_from):
        wrong.append("the gateway's log shows a bug:\n" + lines)
    summary = tally.summary()
    print(summary)
    for line in wrong:
        print("!", line)
    assert not tally.problems and not wrong, (
        summary + "\n" + "\n".join(f"! {line}" for line in wrong)
    )


# -- the socket tests ----------------------------------------------------------------------

OTHER_EVENT_NAMES = [
    "",
    " ",
    "agents:list ",
    "AGENTS:LIST",
    "agents_list",
    "on_agents_list",
    "__init__",
    "__class__",
    "trigger_event",
    "emit",
    "send",
    "error",
    "message",
    "a" * 5000,
    "agents:list\x00",
    "名前",
]
ODD_EVENT_NAMES: list[Any] = [5, -1, 1.5, None, True, {}, {"a": 1}, [], ["agents:list"]]


@st.composite
def socket_cases(draw: st.DrawFn, fuzzer: SocketFuzzer) -> tuple[str, Any, Case, bool]:
    namespace = draw(st.sampled_from(["/web", "/agent"]))
    other = "/agent" if namespace == "/web" else "/web"
    own = sorted(fuzzer.templates[namespace])
    event = draw(
        st.one_of(
            st.sampled_from(own),
            st.sampled_from(own),
            st.sampled_from(own),
            st.sampled_from(own),
            st.sampled_from(own),
            st.sampled_from(sorted(fuzzer.templates[other]) + OTHER_EVENT_NAMES),
            st.text(max_size=24),
            st.sampled_from(ODD_EVENT_NAMES),
        )
    )
    template = fuzzer.templates[namespace].get(event, {}) if isinstance(event, str) else {}
    case = draw(malformed(template, binary=True))
    ack = draw(st.sampled_from([True, True, True, True, False]))
    return namespace, event, case, ack


async def test_malformed_event_payloads_are_refused_and_the_connections_serve_on(
    target: Target,
) -> None:
    """Hypothesis-made payloads for every event of both namespaces (and names that are
    not events), one long-lived connection per namespace."""
    log_from = len(target.gateway.log())
    tally = Tally("socket events")
    fuzzer = SocketFuzzer(target, tally)
    await fuzzer.start()
    bridge = LoopBridge(asyncio.get_running_loop())

    @fuzz_settings(max_examples=600)
    @given(socket_cases(fuzzer))
    def example(drawn: tuple[str, Any, Case, bool]) -> None:
        namespace, event, case, ack = drawn
        exercised.add((namespace, event if isinstance(event, str) else ""))
        bridge.run(fuzzer.send(namespace, event, case, ack), ANSWER_TIMEOUT_S * 3)

    exercised: set[tuple[str, str]] = set()
    started = time.monotonic()
    await asyncio.to_thread(example)
    tally.counts["(seconds)"] = round(time.monotonic() - started)
    every = {(ns, event) for ns, templates in fuzzer.templates.items() for event in templates}
    tally.counts["(events exercised)"] = len(every & exercised)
    assert every <= exercised, f"events the fuzzing never sent: {sorted(every - exercised)}"
    await finish(target, fuzzer, tally, log_from)


async def test_reserved_event_names_are_param_001_and_run_no_lifecycle_handler(
    target: Target,
) -> None:
    """`connect`, `disconnect` and the like sent as events are PARAM_001; no lifecycle
    handler runs: checked after each name, the agent still online, the web socket still
    its user's."""
    log_from = len(target.gateway.log())
    tally = Tally("reserved event names")
    fuzzer = SocketFuzzer(target, tally)
    await fuzzer.start()
    query = {"QUERY_STRING": f"token={target.token}"}
    for namespace in ("/web", "/agent"):
        auth = (
            {"token": target.token}
            if namespace == "/web"
            else agent_auth(target.agent_id, target.secret)
        )
        for name in [*RESERVED_EVENTS, "message", "*"]:
            argument_lists: list[list[Any]] = [[{}], [], [auth], [query], ["x"], [None], [{}, {}]]
            for args in argument_lists:
                await fuzzer.send(namespace, name, Case("reserved", args))
            await fuzzer.send(namespace, name, Case("reserved", [{}]), ack=False)
            await fuzzer.send(namespace, name, Case("reserved", [auth]), ack=False)
            wrong = await fuzzer.still_serving(check_sync=False)
            for line in wrong:
                tally.problem(f"after {namespace} {name!r}", line)
            if wrong:  # start again from a sound state, to see what the next name does
                await fuzzer.open("/web")
                await fuzzer.open("/agent")
    await finish(target, fuzzer, tally, log_from)


NON_STRICT_VALUES: list[tuple[str, Any]] = [
    ("NaN", Raw("NaN", "NaN")),
    ("Infinity", Raw("Infinity", "Infinity")),
    ("-Infinity", Raw("-Infinity", "-Infinity")),
    ("1e400", Raw("1e400", "1e400")),
    ("-1e400", Raw("-1e400", "-1e400")),
    ("10**30", 10**30),
    ("-2**70", -(2**70)),
    ("2**63", 2**63),
    ("lone high surrogate", LONE_SURROGATES[0]),
    ("lone low surrogate", LONE_SURROGATES[1]),
    ("surrogates reversed", LONE_SURROGATES[2]),
    (f"nesting {MAX_DEPTH + 6}", nested(MAX_DEPTH + 6)),
    ("nesting 500", nested(500, {}, "dict")),
    ("binary", b"\x00\x01binary\xff"),
]


def _state_changing_last(event: str) -> tuple[bool, str]:
    """Reports that end or hand back the task go last: a gateway that wrongly accepts one
    would make every later report about the task a different refusal."""
    return event in ("task:rejected", "task:result", "worker:status"), event


async def test_non_strict_json_is_param_001_and_the_connection_stays_usable(
    target: Target,
) -> None:
    """Written by hand into the frames (a JSON library would not write most of these): in
    a field of every event of both namespaces, as an unknown field, and without an ack."""
    log_from = len(target.gateway.log())
    tally = Tally("non-strict JSON")
    fuzzer = SocketFuzzer(target, tally)
    await fuzzer.start()
    for namespace in ("/web", "/agent"):
        templates = fuzzer.templates[namespace]
        for turn, event in enumerate(sorted(templates, key=_state_changing_last)):
            template = templates[event]
            fields = sorted(template) or ["extra"]
            for index, (name, value) in enumerate(NON_STRICT_VALUES):
                where = fields[(turn + index) % len(fields)]
                await fuzzer.send(namespace, event, Case(name, [{**template, where: value}]))
                await fuzzer.send(namespace, event, Case(name, [{**template, "zzz": [value]}]))
        for name, value in NON_STRICT_VALUES[::3]:
            event = sorted(templates)[0]
            await fuzzer.send(namespace, event, Case(name, [{"x": value}]), ack=False)
        # A binary attachment as the whole payload, and the payload a bare non-strict number.
        await fuzzer.send(namespace, sorted(templates)[0], Case("binary", [b"\x00" * 16]))
        # Every field of a payload binary: dozens of attachments, refused like one.
        many = {f"f{n}": bytes([n]) * 4 for n in range(40)}
        await fuzzer.send(namespace, sorted(templates)[0], Case("40 attachments", [many]))
        for raw in ("NaN", "Infinity", "-Infinity", "1e400", "1" * 40):
            await fuzzer.send(namespace, sorted(templates)[-1], Case(raw, [Raw(raw, raw)]))
    await finish(target, fuzzer, tally, log_from)


# -- REST ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {session}, {task}, {agent}, {config}, {webhook}, {user}, {junk}
    body: dict[str, Any] | None = None  # a valid body to break; None: the route takes none
    auth: str = "user"  # public | user | admin
    query: tuple[str, ...] = ()


ROUTES = [
    Route("POST", "/api/auth/login", {"username": "alice", "password": "wrong password"}, "public"),
    Route("POST", "/api/auth/refresh", {"refreshToken": "not-a-jwt"}, "public"),
    Route("POST", "/api/auth/logout"),  # never with a valid token: it would end the sign-in
    Route("GET", "/api/auth/me"),
    Route("GET", "/api/agents/"),
    Route("POST", "/api/agents/", {"name": "fuzzed", "capabilities": ["custom"]}),
    Route("DELETE", "/api/agents/{junk}"),
    Route("POST", "/api/agents/{junk}/rotate-secret"),
    Route("GET", "/api/ai-configs/"),
    Route(
        "POST",
        "/api/ai-configs/",
        {"name": "c", "tool": "claude", "model": "m", "apiKey": "k", "settings": {}},
    ),
    Route("GET", "/api/ai-configs/{config}"),
    Route("PATCH", "/api/ai-configs/{config}", {"name": "c2", "model": "m2", "settings": {}}),
    Route("PUT", "/api/ai-configs/{config}", {"name": "c3", "tool": "claude"}),
    Route("DELETE", "/api/ai-configs/{junk}"),
    Route("GET", "/api/sessions/"),
    Route("POST", "/api/sessions/", {"title": "t", "agentId": None}),
    Route("GET", "/api/sessions/{session}"),
    Route("POST", "/api/sessions/{junk}/end"),
    Route("POST", "/api/sessions/{session}/participants", {"userId": "{user}"}),
    Route("GET", "/api/sessions/{session}/events", query=("after", "limit")),
    Route("GET", "/api/tasks/", query=("status", "sessionId")),
    Route("POST", "/api/tasks/", {"tool": "custom", "command": "true", "priority": "low"}),
    Route("GET", "/api/tasks/{task}"),
    Route("POST", "/api/tasks/{junk}/cancel"),
    Route("GET", "/api/webhooks/"),
    Route(
        "POST",
        "/api/webhooks/",
        {"url": "https://example.com/hook", "events": ["task.completed"], "secret": "s" * 20},
    ),
    Route("GET", "/api/webhooks/{webhook}"),
    Route("PATCH", "/api/webhooks/{webhook}", {"active": True, "events": ["task.failed"]}),
    Route("DELETE", "/api/webhooks/{junk}"),
    Route("GET", "/api/users/", auth="admin"),
    Route(
        "POST",
        "/api/users/",
        {"username": "fuzzed", "password": "long enough password", "isAdmin": False},
        "admin",
    ),
    Route("GET", "/api/users/{user}", auth="admin"),
    Route("PATCH", "/api/users/{junk}", {"isAdmin": False, "disabled": False}, "admin"),
    Route("POST", "/api/users/{junk}/password", {"password": "another long one"}, "admin"),
    Route("DELETE", "/api/users/{junk}", auth="admin"),
    Route(
        "GET",
        "/api/audit/",
        auth="admin",
        query=("limit", "before", "action", "actorId", "targetId"),
    ),
    Route("GET", "/health", auth="public"),
    Route("GET", "/health/agents", auth="public"),
    Route("GET", "/metrics", auth="public"),
]

EVENTS_ROUTE = next(r for r in ROUTES if r.path.endswith("/events"))

QUERY_VALUES = [
    "99999999999999999999999-1",
    "18446744073709551615-18446744073709551615",
    "18446744073709551616-0",
    "1-18446744073709551616",
    "-1",
    "0",
    "0-0",
    "1-",
    "-",
    "abc",
    "",
    str(10**30),
    "1e3",
    "NaN",
    "Infinity",
    " 5",
    "+1",
    "0x10",
    "1.5",
    "٣",
    "٣-٣",
    "²",
    "²-1",
    "1-²",
    "completed",
    "queued",
    "2024-01-01T00:00:00",
    "2024-13-45T99:99:99",
    "9999999999999999999",
    "99999999999999999999",
    "x" * 5000,
]

RAW_BODIES: list[tuple[str, bytes, str | None]] = [
    # (what, body, why it cannot be accepted: None when it may be)
    ("empty", b"", None),
    ("not UTF-8", b"\xff\xfe\xfd", "not JSON"),
    ("truncated", b'{"name": "x"', "not JSON"),
    ("open bracket", b"[", "not JSON"),
    ("bad escape", b'{"name": "\\x"}', "not JSON"),
    ("trailing comma", b'{"name": "x",}', "not JSON"),
    ("single quotes", b"{'name': 'x'}", "not JSON"),
    ("null", b"null", "not an object"),
    ("array", b"[]", "not an object"),
    ("array of object", b'[{"name": "x"}]', "not an object"),
    ("string", b'"x"', "not an object"),
    ("number", b"1", "not an object"),
    ("bare NaN", b"NaN", "not strict JSON"),
    ("bare 1e400", b"1e400", "not strict JSON"),
    ("NaN field", b'{"name": "x", "username": NaN}', "not strict JSON"),
    ("Infinity field", b'{"title": Infinity, "name": "x"}', "not strict JSON"),
    ("-Infinity extra", b'{"zzz": -Infinity}', "not strict JSON"),
    ("1e400 extra", b'{"zzz": 1e400}', "not strict JSON"),
    ("big int extra", b'{"zzz": 100000000000000000000000000000}', "not strict JSON"),
    ("-2**70 extra", b'{"zzz": -1180591620717411303424}', "not strict JSON"),
    ("lone surrogate", b'{"name": "\\ud800", "username": "\\udfff"}', "not strict JSON"),
    ("lone surrogate key", b'{"\\ud800": 1}', "not strict JSON"),
    ("deep 100", b'{"zzz": ' + b"[" * 100 + b"]" * 100 + b"}", "not strict JSON"),
    ("deep 100000", b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ("unclosed deep", b"[" * 100_000, "not JSON"),
    ("NUL", b'{"name": "a\x00b"}', "not JSON"),
    ("BOM", b'\xef\xbb\xbf{"name": "x"}', None),
    ("UTF-16", '{"name": "x"}'.encode("utf-16"), "not JSON"),
    ("form", b"name=x&username=y", "not JSON"),
    ("huge", b'{"name": "' + b"x" * HUGE + b'"}', "over the size limit"),
]

CONTENT_TYPES: list[str | None] = [
    "application/json",
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]


def forged_tokens(target: Target) -> list[bytes]:
    secret = target.deployment.env["ORCHESTRA_JWT_SECRET"]
    now = int(time.time())
    claims = {"sub": target.user_id, "typ": "access", "iat": now, "exp": now + 600}
    return [
        jwt.encode(claims, None, algorithm="none").encode(),  # type: ignore[arg-type]
        jwt.encode(claims, "another key " + "k" * 32, algorithm="HS256").encode(),
        jwt.encode({**claims, "exp": now - 60}, secret, algorithm="HS256").encode(),
        jwt.encode({**claims, "typ": "refresh"}, secret, algorithm="HS256").encode(),
        jwt.encode({**claims, "sub": 12345, "exp": 10**30}, secret, algorithm="HS256").encode(),
        jwt.encode({**claims, "exp": "soon"}, secret, algorithm="HS256").encode(),
        jwt.encode(
            {**claims, "sub": ["x"], "ver": "x", "fam": {}}, secret, algorithm="HS256"
        ).encode(),
        b"a.b.c",
        b"e30.e30.",
        b"x" * 4000,
    ]


def authorizations(target: Target) -> list[tuple[str, bytes | None]]:
    """(kind, Authorization header): kind `user`/`admin` for a valid token, `bad` else."""
    valid = [("user", f"Bearer {target.token}".encode())] * 6
    valid += [("admin", f"Bearer {target.admin_token}".encode())] * 3
    bad: list[tuple[str, bytes | None]] = [
        ("none", None),
        ("bad", b"Bearer \xff\xfe\xe9"),
        ("bad", "Bearer é".encode("latin-1")),
        ("bad", "Bearer 名前".encode()),
        ("bad", b"Bearer " + target.token.encode() + b"\xff"),
        ("bad", b"\xff\xfe"),
        ("bad", b"Bearer"),
        ("bad", b"Bearer "),
        ("bad", b"Bearer \x00" + target.token.encode()),
        ("bad", b"Basic YWxpY2U6cGFzcw=="),
        ("bad", b"Bearer " + target.token.encode()[:-4]),
        ("bad", b"Token " + target.token.encode()),
        ("bad", b"Bearer  " + target.token.encode() + b" extra"),
    ]
    bad += [("bad", b"Bearer " + token) for token in forged_tokens(target)]
    return valid + bad


@dataclass
class RestCase:
    method: str
    path: str
    route: Route
    auth: str  # user | admin | bad | none
    authorization: bytes | None
    content_type: str | None
    body: bytes | None
    body_kind: str  # how the body was made
    body_refusal: str | None  # why the body must be refused, if it must


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="", errors="surrogatepass")


@st.composite
def rest_cases(draw: st.DrawFn, target: Target) -> RestCase:
    route = draw(st.sampled_from(ROUTES))
    ids = {
        "session": target.ids["sessionId"],
        "task": target.ids["taskId"],
        "agent": target.agent_id,
        "config": target.ids.get("configId", "none"),
        "webhook": target.ids.get("webhookId", "none"),
        "user": target.user_id,
    }
    junk_segment = st.one_of(
        st.text(max_size=40),
        st.sampled_from([*ODD_STRINGS, *LONE_SURROGATES, "..", ".", "%2F", "a/b", "x" * 3000]),
    )
    path = route.path
    for name in ("session", "task", "agent", "config", "webhook", "user", "junk"):
        placeholder = "{" + name + "}"
        if placeholder in path:
            real = name != "junk" and draw(st.booleans())
            value = ids[name] if real else draw(junk_segment)
            path = path.replace(placeholder, _segment(value))
    if route.query:
        values = st.one_of(st.sampled_from(QUERY_VALUES), st.text(max_size=30))
        chosen = draw(
            st.dictionaries(st.sampled_from(route.query), values, max_size=len(route.query))
        )
        if chosen:
            path += "?" + "&".join(f"{k}={_segment(v)}" for k, v in chosen.items())
    auth, authorization = draw(st.sampled_from(authorizations(target)))
    if route.path == "/api/auth/logout" and auth in ("user", "admin"):
        auth, authorization = "bad", b"Bearer " + forged_tokens(target)[2]
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    body: bytes | None = None
    body_kind, refusal = "none", None
    if route.body is not None:
        template = {k: (target.user_id if v == "{user}" else v) for k, v in route.body.items()}
        if draw(st.integers(0, 3)) == 0:
            body_kind, body, refusal = draw(st.sampled_from(RAW_BODIES))
        else:
            case = draw(malformed(template, binary=False))
            payload = case.args[0] if case.args else {}
            body = dumps(payload).encode()
            body_kind = case.what
            reason = case.non_strict()
            if reason:
                refusal = f"not strict JSON: {reason}"
            elif len(body) > MAX_PAYLOAD:
                refusal = "over the size limit"
            elif not isinstance(payload, dict):
                refusal = "not an object"
    elif draw(st.integers(0, 4)) == 0:
        body_kind, body, _ = draw(st.sampled_from(RAW_BODIES[:12]))
    method = route.method
    if draw(st.integers(0, 15)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"]))
    return RestCase(
        method, path, route, auth, authorization, content_type, body, body_kind, refusal
    )


def send_rest(port: int, case: RestCase) -> tuple[int, bytes]:
    """One request exactly as built: raw header bytes, raw body."""
    connection = http_client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    try:
        connection.putrequest(case.method, case.path, skip_accept_encoding=True)
        if case.authorization is not None:
            connection.putheader("Authorization", case.authorization)
        if case.content_type is not None:
            connection.putheader("Content-Type", case.content_type)
        connection.putheader("Content-Length", str(len(case.body or b"")))
        try:
            connection.endheaders(case.body or None)
        except ConnectionError:
            pass  # refused before the whole body was sent (413, say): its answer may be there
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (ConnectionError, http_client.HTTPException, TimeoutError) as exc:
        return -1, repr(exc).encode()
    finally:
        connection.close()


def judge_rest(case: RestCase, status: int, text: bytes, tally: Tally) -> None:
    shown = describe((case.body or b"")[:200].decode("latin-1"), 160)
    label = (
        f"{case.method} {case.path[:160]} auth={case.auth} "
        f"ctype={case.content_type} body[{case.body_kind}]={shown}"
    )
    got = f"{status} {text[:300]!r}"
    if status < 0:
        if len(case.body or b"") > MAX_PAYLOAD:
            tally.count("connection closed on a body over the limit")  # fair: 413 unread
        else:
            tally.count("no answer")
            tally.problem("no HTTP answer", f"{label} -> {got}")
        return
    tally.count(str(status))
    if status >= 500:
        tally.problem(f"HTTP {status}", f"{label} -> {got}")
    authenticated = case.auth in ("user", "admin")
    if status >= 400:
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        info = answer.get("error") if isinstance(answer, dict) else None
        code = str(info.get("code")) if isinstance(info, dict) else "no ErrorInfo"
        tally.count(f"{status} {code}")
        problem = error_info_problem(info, stack_allowed=authenticated)
        if problem:
            tally.problem(f"bad ErrorInfo: {problem.split(':')[0][:60]}", f"{label} -> {got}")
        if not isinstance(info, dict):
            return
        allowed = STATUS_CODES.get(status, {"PARAM_001"} if status < 500 else {"SYS_001"})
        if code not in allowed:
            tally.problem(f"{status} with {code}", f"{label} -> {got}")
        if code == "SYS_001":
            tally.problem("SYS_001", f"{label} -> {got}")
    # (An OPTIONS request may be a CORS preflight, which carries no credentials.)
    route_auth = "public" if case.method == "OPTIONS" else case.route.auth
    if route_auth != "public" and not authenticated and 200 <= status < 300:
        tally.problem("served without valid credentials", f"{label} -> {got}")
    if route_auth != "public" and not authenticated and status == 403:
        tally.problem("403 instead of 401 for bad credentials", f"{label} -> {got}")
    if case.body_refusal and case.method == case.route.method:
        may_pass_body = route_auth == "public" or authenticated
        if may_pass_body and 200 <= status < 300:
            tally.problem(
                f"accepted although {case.body_refusal.split(':')[0]}", f"{label} -> {got}"
            )
        if route_auth == "public" and status == 401:
            tally.problem(
                f"a body that is {case.body_refusal.split(':')[0]} was read (401, not 400)",
                f"{label} -> {got}",
            )


async def test_rest_routes_answer_malformed_requests_with_error_infos(target: Target) -> None:
    """Every REST route (those still being written answer 404 TASK_002): malformed bodies,
    raw header bytes, odd query values, wrong methods."""
    log_from = len(target.gateway.log())
    url, token = target.url, target.token
    # Real things to aim at: a session and its task, an AI config, a webhook.
    started = await rest("POST", url + "/api/tasks", {"tool": "custom", "command": "true"}, token)
    target.ids.update(taskId=started["taskId"], sessionId=started["sessionId"])
    config = await rest("POST", url + "/api/ai-configs", {"name": "c", "tool": "claude"}, token)
    target.ids["configId"] = config.get("config", config).get("id", "none")
    status, hook = await asyncio.to_thread(
        http,
        "POST",
        url + "/api/webhooks",
        {"url": "https://example.com/hook", "events": ["task.completed"]},
        token,
    )
    if status == 201:
        target.ids["webhookId"] = hook.get("webhook", hook).get("id", "none")

    tally = Tally("REST")
    port = target.gateway.port

    @fuzz_settings(max_examples=500)
    @given(rest_cases(target))
    def example(case: RestCase) -> None:
        tally.sent += 1
        status, text = send_rest(port, case)
        judge_rest(case, status, text, tally)

    started_at = time.monotonic()
    await asyncio.to_thread(example)

    # And by hand: the eventIds and limits out of range, on the real session.
    events = f"/api/sessions/{target.ids['sessionId']}/events"
    for after in [*QUERY_VALUES[:12], "%ED%A0%80", "%FF"]:
        for limit in ("-1", "0", str(10**30), "abc", "50"):
            quoted = after if after.startswith("%") else _segment(after)
            case = RestCase(
                "GET",
                f"{events}?after={quoted}&limit={_segment(limit)}",
                EVENTS_ROUTE,
                "user",
                f"Bearer {token}".encode(),
                None,
                None,
                "none",
                None,
            )
            tally.sent += 1
            judge_rest(case, *await asyncio.to_thread(send_rest, port, case), tally)
    tally.counts["(seconds)"] = round(time.monotonic() - started_at)
    await finish(target, None, tally, log_from)
