"""Malformed Engine.IO / Socket.IO frames, written by hand, against a real gateway process
(GitHub issue 9), before authentication (right after the Engine.IO open, no namespace
connected) and after (`/web` or `/agent` connected).

What a malformed frame must get: the connection closed (a close packet, or the websocket
ends), or an error answer (CONNECT_ERROR, a Response with `success: false`, an `error`
event); never silence, never a traceback in the gateway's log. An `/agent` handshake with
bad fields gets `44/agent,{"code":"AUTH_001",...}`, every time. Afterwards the gateway
serves a fresh connection and GET /health, and its log grew by few warning lines: the
warnings about malformed frames are rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e import test_fuzz_payloads as payloads
from tests.e2e.test_fuzz_payloads import Target, gateway_log_problems
from tests.e2e.test_handshake import agent_auth
from tests.support.fuzz import Tally, describe
from tests.support.processes import http
from tests.support.raw_socketio import (
    ACK,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    Packet,
    Raw,
    RawSocketIO,
    dumps,
    open_namespace,
)

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.orchestra_env(
        ORCHESTRA_RATE_LIMIT_REQUESTS="1000000", ORCHESTRA_HEARTBEAT_INTERVAL_S="600"
    ),
]

target = payloads.target  # the fixture: a gateway, alice, root and alice's agent

PARALLEL = 12  # connections at a time
PROBE_ID = 424242  # the ack id of the probe request; no frame below uses it
PROBE_TIMEOUT_S = 10.0
GRACE_S = 1.0  # for an `error` event, which comes through Redis, after the probe's answer
MAX_WARNING_LINES = 50
PLACEHOLDER_0 = '{"_placeholder":true,"num":0}'


@dataclass
class Frames:
    """Frames to send on one fresh connection, and what must come of them.

    `phase`: `open` (nothing connected), `web` or `agent` (that namespace connected).
    `expect`:
      - `closed_or_error`: the connection ends, or an error answer comes;
      - `agent_refused` / `web_refused`: a CONNECT_ERROR `{code: AUTH_001, message}` on
        that namespace (an ended connection is not enough: never silence);
      - `connect_or_refused`: a handshake that may be accepted (CONNECT) or refused
        (CONNECT_ERROR AUTH_001), but is answered;
      - `answered`: anything but silence (an ack, an error, a close);
      - `tolerated`: odd but harmless; anything but a traceback.
    Frames are text, `bytes` (a binary frame), or `Invalid` (a text frame of raw bytes).
    """

    name: str
    phase: str
    frames: list[Any]
    expect: str = "closed_or_error"


@dataclass(frozen=True)
class Invalid:
    """A text frame whose bytes are sent as they are (not UTF-8, say)."""

    data: bytes


@dataclass(frozen=True)
class Agent:
    """An agent's credentials. The gateway lets an agent hold only so many sockets at once
    (`max_sockets_per_agent`), so each connection at a time gets an agent of its own."""

    agent_id: str
    secret: str


def agent_handshake(agent: Agent | Target, **changes: Any) -> dict[str, Any]:
    """A correctly signed `/agent` auth, with fields then replaced by `changes`."""
    return agent_auth(agent.agent_id, agent.secret) | changes


def signed_with(agent: Agent, *, agent_id: Any = None, nonce: Any = None) -> dict[str, Any]:
    """An auth signed over odd values, as a client that does not check them would."""
    agent_id = agent.agent_id if agent_id is None else agent_id
    nonce = secrets.token_hex(16) if nonce is None else nonce
    timestamp = int(time.time() * 1000)
    message = f"{agent_id}:{timestamp}:{nonce}".encode("utf-8", "surrogatepass")
    signature = hmac.new(agent.secret.encode(), message, hashlib.sha256).hexdigest()
    return {"agentId": agent_id, "timestamp": timestamp, "nonce": nonce, "signature": signature}


def frame_cases(target: Target) -> list[Frames]:
    cases: list[Frames] = []
    token = target.token

    # -- Engine.IO: not a packet type, empty, not UTF-8, binary nobody announced --------
    engine = ["7", "9", "x", "", " ", "8", "-1", "42", "4", "\x00", "0", "0{}"]
    binary = [b"\x00\x01", b"", b"4", b'42/web,["agents:list",{}]', b"\xff" * 64]
    for phase in ("open", "web", "agent"):
        for text in engine:
            cases.append(Frames(f"engine {text!r}", phase, [text]))
        for data in binary:
            cases.append(Frames(f"binary {data[:12]!r} unannounced", phase, [data]))
        cases.append(Frames("text frame not UTF-8", phase, [Invalid(b"42\xff\xfe")]))
        cases.append(Frames("text frame, lone surrogate bytes", phase, [Invalid(b"4\xed\xa0\x80")]))

    # -- Socket.IO packets, in every phase (the namespace is the phase's) -----------------
    deep = "[" * 100_000
    for phase in ("open", "web", "agent"):
        ns = "/agent" if phase == "agent" else "/web"
        event = "agent:heartbeat" if phase == "agent" else "agents:list"
        packets = {
            # unknown packet types
            "type 7": "47",
            "type 9": "49",
            "type x": "4x",
            "type 8 with namespace": f"48{ns},",
            "type -1": "4-1",
            "namespace without type": f'4{ns},1["{event}",{{}}]',
            "CONNECT_ERROR from a client": f'44{ns},{{"message":"x"}}',
            # truncated JSON
            "truncated payload": f'42{ns},1["{event}",{{',
            "truncated array": f'42{ns},1["{event}"',
            "only a bracket": f"42{ns},1[",
            "truncated object": f'42{ns},1{{"a":',
            "a comma only": f"42{ns},",
            "trailing garbage": f'42{ns},1["{event}",{{}}]xyz',
            "two arrays": f'42{ns},1["{event}",{{}}][]',
            # bad escapes
            "escape \\x": f'42{ns},1["{event}",{{"a":"\\x"}}]',
            "escape \\u12": f'42{ns},1["{event}",{{"a":"\\u12"}}]',
            "lone backslash": f'42{ns},1["{event}",{{"a":"\\',
            "control char in a string": f'42{ns},1["{event}",{{"a":"\x01"}}]',
            "single quotes": f"42{ns},1['{event}',{{}}]",
            # nesting past the recursion limit
            "nesting 100000, unclosed": f'42{ns},1["{event}",' + deep,
            "nesting 100000": f"42{ns},1" + deep + "]" * 100_000,
            "objects nested 20000": f'42{ns},1["{event}",'
            + '{"a":' * 20_000
            + "1"
            + "}" * 20_000
            + "]",
            # events without a name
            "event []": f"42{ns},[]",
            "event {}": f"42{ns},{{}}",
            'event "x"': f'42{ns},"x"',
            "event [1]": f"42{ns},[1]",
            "event [] with ack": f"42{ns},1[]",
            "event null": f"42{ns},null",
            "event 1": f"42{ns},1",
            "event [null]": f"42{ns},[null]",
            "event [{}]": f"42{ns},[{{}}]",
            "event [[]]": f"42{ns},[[]]",
            "event true": f"42{ns},true",
            "event [{}] with ack": f"42{ns},7[{{}}]",
            "event name an object": f'42{ns},7[{{"a":1}},{{}}]',
            "event name a list": f'42{ns},7[["{event}"],{{}}]',
            # namespaces that do not exist
            "CONNECT /nope": "40/nope,",
            "CONNECT /nope with auth": '40/nope,{"token":"x"}',
            "CONNECT /web/../agent": "40/web/../agent,",
            "event to /nope": '42/nope,1["agents:list",{}]',
            "event to /": '421["agents:list",{}]',
            # ack ids
            "ack id of 150 digits": f'42{ns},{"9" * 150}["{event}",{{}}]',
            "ack id negative": f'42{ns},-1["{event}",{{}}]',
            # binary attachments announced and not sent, or wrong
            "attachment announced, none sent": f'451-{ns},1["{event}",{PLACEHOLDER_0}]',
            "attachments: too many": f'459999999999-{ns},1["{event}",{{}}]',
            "attachments: a dash and no count": f'45-{ns},1["{event}",{{}}]',
            "attachments: zero": f'450-{ns},1["{event}",{{}}]',
            "binary ack from a client": f"461-{ns},1[{PLACEHOLDER_0}]",
        }
        for name, text in packets.items():
            cases.append(Frames(name, phase, [text]))
        placeholder = '{{"_placeholder":true,"num":{}}}'
        for num in ("5", '"x"', "-1", "null", "1.5", "99999999999999999999"):
            text = f'451-{ns},1["{event}",{placeholder.format(num)}]'
            cases.append(Frames(f"placeholder num {num}", phase, [text, b"\x00\x01"]))
        text = f'452-{ns},1["{event}",{placeholder.format(0)},{placeholder.format(1)}]'
        cases.append(Frames("two attachments announced, one sent", phase, [text, b"\x00"]))

    # -- huge but well-formed ack ids: answered like any other ---------------------------
    for phase, ns, event in (("web", "/web", "agents:list"), ("agent", "/agent", "pong")):
        for digits in (19, 20, 26, 99):
            cases.append(
                Frames(
                    f"ack id of {digits} digits",
                    phase,
                    [f'42{ns},{"9" * digits}["{event}",{{}}]'],
                    "answered",
                )
            )

    # -- odd but harmless -----------------------------------------------------------------
    # An Engine.IO close with data after it: the session ends; the client closes the socket.
    cases.append(Frames("engine close with data", "web", ["1x"], "tolerated"))
    for phase in ("open", "web"):
        # The default namespace: PROTOCOL.md has no use for it; refused or let in, answered.
        cases.append(Frames("CONNECT /", phase, ["40"], "answered"))
        cases.append(Frames("CONNECT / with a comma", phase, ["40/,"], "answered"))
    cases.append(Frames("ack for an id never sent", "web", ['43/web,5["x"]'], "tolerated"))
    cases.append(Frames("disconnect /nope", "web", ["41/nope,"], "tolerated"))
    cases.append(Frames("CONNECT /web twice", "web", [f'40/web,{{"token":"{token}"}}'], "answered"))

    # -- /web handshakes with auth that is not an object, or no token ---------------------
    for raw in (
        '"tok"',
        "[]",
        "1",
        "null",
        "true",
        '{"token":5}',
        '{"token":["a"]}',
        '{"token":{"a":1}}',
        '{"token":"\\ud800"}',
        '{"token":"é"}',
        '{"token":NaN}',
        '{"token":1e400}',
        '{"token":"' + "x" * 50_000 + '"}',
        f'[{{"token":"{token}"}}]',
        '{"token":"Bearer x.y.z"}',
    ):
        cases.append(
            Frames(
                f"/web CONNECT auth {describe(raw, 40)}", "open", [f"40/web,{raw}"], "web_refused"
            )
        )

    # -- /agent handshakes with bad fields: CONNECT_ERROR AUTH_001, every time ------------
    def agent(name: str, auth: Any, expect: str = "agent_refused") -> None:
        """A CONNECT on /agent with the auth `auth(agent)` makes when it is sent (fresh
        nonce, fresh timestamp), for the agent the connection was given."""
        frame = lambda agent: "40/agent," + dumps(auth(agent))  # noqa: E731
        cases.append(Frames(f"/agent CONNECT {name}", "open", [frame], expect))

    label: str
    value: Any
    for label, value in (
        ("Infinity", Raw("Infinity")),
        ("-Infinity", Raw("-Infinity")),
        ("NaN", Raw("NaN")),
        ("1e400", Raw("1e400")),
        ("-1e400", Raw("-1e400")),
        ("10**400", Raw("1" + "0" * 400)),
        ("10**30", 10**30),
        ("-2**70", -(2**70)),
        ("a string", "yesterday"),
        ("'1e12'", "1e12"),
        ("an empty string", ""),
        ("a list", [1]),
        ("an object", {"ms": 1}),
        ("null", None),
        ("true", True),
        ("a float in seconds", time.time()),
        ("-1", -1),
        ("0", 0),
    ):
        agent(f"timestamp {label}", lambda a, value=value: agent_handshake(a, timestamp=value))
    for label, value in (
        ("non-ASCII", "é" * 64),
        ("fullwidth", "\uff41" * 64),
        ("a lone surrogate", "\ud800" * 64),
        ("NUL bytes", "\x00" * 64),
        ("a number", 12345),
        ("null", None),
        ("a list", ["a"]),
        ("an object", {}),
        ("empty", ""),
        ("not hex", "g" * 64),
        ("10 KiB", "a" * 10_240),
    ):
        agent(f"signature {label}", lambda a, value=value: agent_handshake(a, signature=value))
    agent(
        "signature upper case",
        lambda agent: (a := agent_handshake(agent)) | {"signature": a["signature"].upper()},
    )
    agent(
        "signature with a space",
        lambda agent: (a := agent_handshake(agent)) | {"signature": a["signature"] + " "},
    )
    for label, value in (
        ("an object", {"id": target.agent_id}),
        ("a list", [target.agent_id]),
        ("a number", 5),
        ("null", None),
        ("empty", ""),
        ("1000 chars", "x" * 1000),
        ("a lone surrogate", "\ud800"),
        ("non-ASCII", "é"),
        ("with a NUL", target.agent_id + "\x00"),
        ("upper case", target.agent_id.upper()),
        ("with % and _", "%_%"),
        ("SQL", "' OR '1'='1"),
    ):
        agent(f"agentId {label}", lambda a, value=value: agent_handshake(a, agentId=value))
    for label, value in (
        ("a lone surrogate", "\ud800" * 10),
        ("non-ASCII", "é" * 10),
        ("a number", 12345678901),
        ("a list", ["abcdefghij"]),
        ("empty", ""),
        ("10 KiB", "n" * 10_240),
        ("NaN", Raw("NaN")),
    ):
        agent(f"nonce {label}", lambda a, value=value: agent_handshake(a, nonce=value))
    agent("signed over a lone surrogate nonce", lambda a: signed_with(a, nonce="\ud800abcdefgh"))
    # A nonce is a string: a non-ASCII one, correctly signed, may well be let in.
    agent(
        "signed over a non-ASCII nonce",
        lambda a: signed_with(a, nonce="ééééééééé"),
        "connect_or_refused",
    )
    agent(
        "signed over a non-ASCII agentId",
        lambda a: signed_with(a, agent_id="é" + target.agent_id),
    )
    for label, raw in (
        ("a list", "[1]"),
        ("a string", '"agent"'),
        ("a number", "5"),
        ("null", "null"),
        ("NaN", "NaN"),
    ):
        cases.append(
            Frames(f"/agent CONNECT auth {label}", "open", [f"40/agent,{raw}"], "agent_refused")
        )
    # Socket.IO reads the leading digit as a packet id, leaving `e400`, which is not JSON:
    # a malformed packet, not a handshake.
    cases.append(Frames("/agent CONNECT auth 1e400", "open", ["40/agent,1e400"], "closed_or_error"))
    cases.append(Frames("/agent CONNECT no auth", "open", ["40/agent,"], "agent_refused"))
    cases.append(
        Frames("/agent CONNECT auth truncated", "open", ['40/agent,{"agentId":'], "closed_or_error")
    )
    cases.append(
        Frames(
            "/agent CONNECT auth bad escape",
            "open",
            ['40/agent,{"agentId":"\\x"}'],
            "closed_or_error",
        )
    )
    cases.append(
        Frames(
            "/agent CONNECT auth nested 100000",
            "open",
            ["40/agent," + "[" * 100_000],
            "closed_or_error",
        )
    )
    for label, value in (
        ("a string", "zstd"),
        ("odd items", [1, {}, None]),
        ("an object", {"zstd": True}),
        ("NaN", Raw("NaN")),
    ):
        agent(
            f"compression {label}",
            lambda a, value=value: agent_handshake(a, compression=value),
            "connect_or_refused",
        )
    agent(
        "an unknown field",
        lambda a: agent_handshake(a, __proto__={"admin": True}),
        "connect_or_refused",
    )

    # -- random truncations of valid frames: what is left is not JSON ---------------------
    rng = random.Random(9)
    valid = [
        ("web", '42/web,1["agents:list",{"id":"r1","x":[1,2,{"y":"z"}]}]'),
        ("web", '42/web,1["session:join",{"sessionId":"s","lastEventId":"1-0"}]'),
        (
            "agent",
            f'42/agent,1["agent:heartbeat",{{"agentId":"{target.agent_id}","systemInfo":{{"cpu":1}}}}]',
        ),
        ("open", f'40/web,{{"token":"{token}"}}'),
    ]
    for _ in range(40):
        phase, text = rng.choice(valid)
        head = text.index("[") if "[" in text else text.index("{")
        cut = rng.randrange(head + 1, len(text) - 1)
        truncated = text[:cut]
        if phase == "open":
            cases.append(
                Frames(f"truncated CONNECT at {cut}", phase, [truncated], "closed_or_error")
            )
        else:
            with contextlib.suppress(ValueError):
                json.loads(truncated[truncated.index("1[") + 1 :])
                continue  # still JSON: not malformed
            cases.append(
                Frames(f"truncated at {cut}: {describe(truncated[-20:], 24)}", phase, [truncated])
            )
    return cases


# -- sending one case on its own connection ------------------------------------------------


@dataclass
class Outcome:
    closed: bool
    answers: list[Packet]  # what came back for the frames (before the probe's answer)
    probe_answered: bool

    def errors(self) -> list[Packet]:
        return [p for p in self.answers if _is_error(p)]

    def show(self) -> str:
        shown = [p.raw[:160] for p in self.answers[:4]]
        return f"closed={self.closed} answers={shown} probe answered={self.probe_answered}"


def _is_error(packet: Packet) -> bool:
    if packet.type in (CONNECT_ERROR, DISCONNECT):
        return True
    if packet.event == "error":
        return True
    if packet.type == ACK and isinstance(packet.data, list) and packet.data:
        answer = packet.data[0]
        return isinstance(answer, dict) and answer.get("success") is False
    return False


class FrameFuzzer:
    def __init__(self, target: Target, tally: Tally, agents: list[Agent]) -> None:
        self.target = target
        self.tally = tally
        self.limit = asyncio.Semaphore(PARALLEL)
        self.agents: asyncio.Queue[Agent] = asyncio.Queue()
        for agent in agents:
            self.agents.put_nowait(agent)

    async def _connected(self, phase: str, agent: Agent) -> RawSocketIO:
        if phase == "web":
            return await open_namespace(self.target.url, "/web", {"token": self.target.token})
        if phase == "agent":
            return await open_namespace(self.target.url, "/agent", agent_handshake(agent))
        return await RawSocketIO.open(self.target.url)

    async def _send(self, client: RawSocketIO, frame: Any) -> None:
        if isinstance(frame, Invalid):
            await client.send_text(frame.data)
        elif isinstance(frame, bytes):
            await client.send_binary(frame)
        else:
            await client.send_text(frame)

    async def _probe(
        self, client: RawSocketIO, case: Frames, frames_text: str, agent: Agent
    ) -> Packet | None:
        """A valid request after the frames: its answer says they were all handled."""
        if case.phase == "open":
            namespace = "/agent" if "/web" in frames_text else "/web"
            auth = agent_handshake(agent) if namespace == "/agent" else {"token": self.target.token}
            start = len(client.packets)
            await client.connect(namespace, auth)
            return await client.wait_for(
                lambda p: p.namespace == namespace and p.type in (CONNECT, CONNECT_ERROR),
                PROBE_TIMEOUT_S,
                start,
            )
        namespace = "/" + case.phase
        payload = {"agentId": agent.agent_id} if case.phase == "agent" else {}
        event = "agent:heartbeat" if case.phase == "agent" else "agents:list"
        start = len(client.packets)
        await client.send_packet(f"2{namespace},{PROBE_ID}{dumps([event, payload])}")
        return await client.wait_for(
            lambda p: p.type == ACK and p.namespace == namespace and p.id == PROBE_ID,
            PROBE_TIMEOUT_S,
            start,
        )

    async def run(self, case: Frames) -> None:
        async with self.limit:
            agent = await self.agents.get()
            try:
                try:
                    client = await self._connected(case.phase, agent)
                except Exception as exc:  # the gateway refused a valid connection
                    self.tally.problem("could not connect", f"{case.phase}: {exc!r}"[:300])
                    return
                try:
                    await self._run(client, case, agent)
                finally:
                    await client.close()
            finally:
                self.agents.put_nowait(agent)

    async def _run(self, client: RawSocketIO, case: Frames, agent: Agent) -> None:
        self.tally.sent += len(case.frames)
        start = len(client.packets)
        texts: list[str] = []
        try:
            for frame in case.frames:
                if callable(frame):
                    frame = frame(agent)
                texts.append(frame if isinstance(frame, str) else repr(frame))
                await self._send(client, frame)
            text = " ".join(texts)
            probe = None if client.ended else await self._probe(client, case, text, agent)
        except Exception:  # the gateway closed the connection under us
            probe = None
        end = next((i for i, p in enumerate(client.packets) if p is probe), len(client.packets))
        if probe is not None and not any(_is_error(p) for p in client.packets[start:end]):
            # An `error` event comes through Redis: a moment after the probe's answer.
            await client.wait_for(lambda p: p.event == "error", GRACE_S, end)
        answers = [
            p
            for i, p in enumerate(client.packets[start:], start)
            if i < end or (p.event == "error")
        ]
        closed = client.ended or any(p.type == DISCONNECT for p in answers)
        outcome = Outcome(closed, answers, probe is not None)
        self.judge(case, outcome, " ".join(texts))

    def judge(self, case: Frames, outcome: Outcome, texts: str) -> None:
        label = f"[{case.phase}] {case.name}: {describe(texts, 120)}"
        kind = (
            "closed"
            if outcome.closed
            else "error"
            if outcome.errors()
            else "answered"
            if outcome.answers
            else "silence"
        )
        self.tally.count(f"{case.expect}: {kind}")
        if case.expect == "tolerated":
            return
        # Silence comes in two kinds: ignored (the valid request after it was answered),
        # or hung (it was not, yet the connection stays open: dead, but not closed).
        silence = (
            "silence: ignored, the connection serves on"
            if outcome.probe_answered
            else "silence: hung, neither closed nor answering the next request"
        )
        if case.expect == "answered":
            if kind == "silence":
                self.tally.problem(silence, f"{label} -> {outcome.show()}")
            return
        if case.expect == "closed_or_error":
            if kind == "silence":
                self.tally.problem(silence, f"{label} -> {outcome.show()}")
            elif kind not in ("closed", "error"):
                self.tally.problem(f"{kind} (not closed, no error)", f"{label} -> {outcome.show()}")
            return
        namespace = "/agent" if case.expect in ("agent_refused", "connect_or_refused") else "/web"
        answer = next(
            (
                p
                for p in outcome.answers
                if p.namespace == namespace and p.type in (CONNECT, CONNECT_ERROR)
            ),
            None,
        )
        if answer is None:
            self.tally.problem(
                f"handshake: no answer ({'closed' if outcome.closed else 'silence'})",
                f"{label} -> {outcome.show()}",
            )
            return
        if answer.type == CONNECT:
            if case.expect != "connect_or_refused":
                self.tally.problem("handshake accepted", f"{label} -> {answer.raw[:200]}")
            return
        data = answer.data
        if not (isinstance(data, dict) and data.get("code") == "AUTH_001" and data.get("message")):
            self.tally.problem(
                "CONNECT_ERROR without {code: AUTH_001, message}", f"{label} -> {answer.raw[:200]}"
            )


def warning_lines(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line) or line.startswith("Traceback")
    ]


async def test_malformed_frames_close_or_are_refused_and_the_gateway_serves_on(
    target: Target,
) -> None:
    url = target.url
    # The control: the raw client's valid flow, connect and a request with its ack.
    web = await open_namespace(url, "/web", {"token": target.token})
    answer = await web.call("/web", "agents:list", {})
    assert answer["success"], answer
    await web.close()
    agent = await open_namespace(url, "/agent", agent_handshake(target))
    answer = await agent.call("/agent", "agent:heartbeat", {"agentId": target.agent_id})
    assert answer["success"], answer
    await agent.close()
    refused = await RawSocketIO.open(url)
    await refused.connect("/agent", agent_handshake(target, signature="0" * 64))
    got = await refused.connected("/agent")
    assert got is not None and got.type == CONNECT_ERROR, got
    assert got.data.get("code") == "AUTH_001", got.raw
    await refused.close()

    # An agent for each connection at a time, and a few to spare.
    agents = []
    for number in range(PARALLEL + 4):
        status, made = await asyncio.to_thread(
            http, "POST", url + "/api/agents", {"name": f"frames-{number}"}, target.token
        )
        assert status == 201, made
        agents.append(Agent(made["agentId"], made["agentSecret"]))

    log = target.gateway.log()
    log_from, warnings_before = len(log), len(warning_lines(log))
    tally = Tally("malformed frames")
    fuzzer = FrameFuzzer(target, tally, agents)
    cases = frame_cases(target)
    started = time.monotonic()
    await asyncio.gather(*(fuzzer.run(case) for case in cases))
    tally.counts["(seconds)"] = round(time.monotonic() - started)
    tally.counts["(connections)"] = len(cases)

    # Still serving: a fresh valid connection on each namespace, and /health.
    wrong: list[str] = []
    try:
        web = await open_namespace(url, "/web", {"token": target.token})
        answer = await web.call("/web", "agents:list", {}, 20)
        if not answer.get("success"):
            wrong.append(f"agents:list on a fresh /web connection: {answer}")
        await web.close()
        agent = await open_namespace(url, "/agent", agent_handshake(target))
        answer = await agent.call("/agent", "agent:heartbeat", {"agentId": target.agent_id}, 20)
        if not answer.get("success"):
            wrong.append(f"agent:heartbeat on a fresh /agent connection: {answer}")
        await agent.close()
    except AssertionError as exc:
        wrong.append(f"a fresh connection: {exc}"[:600])
    status, health = await asyncio.to_thread(http, "GET", url + "/health")
    if not (status == 200 and health.get("status") == "healthy"):
        wrong.append(f"GET /health: {status} {health}")

    await asyncio.sleep(0.5)
    log = target.gateway.log()
    grown = warning_lines(log)[warnings_before:]
    tally.counts["(log lines written)"] = len(log[log_from:].splitlines())
    tally.counts["(warning lines written)"] = len(grown)
    if len(grown) >= MAX_WARNING_LINES:
        wrong.append(
            f"the log grew by {len(grown)} warning lines for {tally.sent} malformed frames "
            f"(rate-limit them: under {MAX_WARNING_LINES}); the first: " + " | ".join(grown[:5])
        )
    for lines in gateway_log_problems(target.gateway, log_from):
        wrong.append("the gateway's log shows a bug:\n" + lines)
    summary = tally.summary(first=60)
    print(summary)
    for line in wrong:
        print("!", line[:2000])
    assert not tally.problems and not wrong, (
        summary + "\n" + "\n".join(f"! {line[:2000]}" for line in wrong)
    )
