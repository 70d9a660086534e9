"""The codex worker, driven with a RecordingHost: (a) against the fake `codex`
(tests/fixtures/bin/codex) through every scenario it plays, (b) against the real Codex CLI
and the fake OpenAI Responses API (skipped when the CLI is not installed)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent_client.workers import PermissionDecision, WorkerExit, WorkerSpec, codex_items
from agent_client.workers.codex import CodexWorker
from agent_client.workers.registry import discover
from tests.fixtures.model_api import Conversation, FakeModelServer, Reply, openai_responses
from tests.support.tools import OutboundSink, tool_path
from tests.support.worker_host import RecordingHost

from .conftest import eventually, group_gone

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "bin" / "codex"
REAL = tool_path("codex")
KEY = "sk-proj-orchestra-codex-worker-secret-1234"
END_S = 30.0


@dataclass
class Rig:
    """Workers on the fake codex, their host, HOME, working directory and the fake's log."""

    tmp: Path
    started: list[CodexWorker] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    @property
    def work(self) -> Path:
        return self.tmp / "work"

    @property
    def record(self) -> Path:
        return self.tmp / "codex.record"

    def worker(
        self,
        prompt: str | None = None,
        *,
        key: str | None = KEY,
        host: RecordingHost | None = None,
        executable: Path = FAKE,
        env: dict[str, str] | None = None,
        **parameters: Any,
    ) -> tuple[CodexWorker, RecordingHost]:
        task_env = {"HOME": str(self.home), "FAKE_CODEX_RECORD": str(self.record)} | (env or {})
        spec = WorkerSpec(
            task_id="t1",
            tool="codex",
            working_directory=self.work,
            stop_grace_s=2.0,
            parameters={"prompt": prompt, "env": task_env, **parameters},
            executable=str(executable),
            secrets={"apiKey": key} if key else {},
        )
        host = host or RecordingHost()
        worker = CodexWorker(spec, host)
        self.started.append(worker)
        return worker, host

    def received(self) -> list[dict[str, Any]]:
        """What the fake codex read, as JSON (the lines it received)."""
        lines = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [json.loads(e["received"]) for e in lines if "received" in e]

    def starts(self) -> list[dict[str, Any]]:
        """The fake's start entries: argv, env names, the key's sha256."""
        lines = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [e for e in lines if "argv" in e]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path)
    rig.home.mkdir()
    rig.work.mkdir()
    yield rig
    for worker in rig.started:
        if worker.pid is not None:
            await worker.stop("kill")
            await asyncio.wait_for(worker.wait(), END_S)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text


async def finish(worker: CodexWorker) -> WorkerExit:
    await worker.send_input("", eof=True)
    return await asyncio.wait_for(worker.wait(), END_S)


def texts(host: RecordingHost, kind: str) -> list[str]:
    return [str(i["content"]) for i in host.of_type(kind)]


def assert_no_key_anywhere(host: RecordingHost) -> None:
    assert KEY not in json.dumps([r.fields for r in host.records])


# -- the fake codex: answers, tools, usage ------------------------------------------------


def test_tool_names_and_version() -> None:
    assert (CodexWorker.tool, CodexWorker.executable_name) == ("codex", "codex")
    assert CodexWorker.version_of("codex-cli 0.171.0\n") == "0.171.0"
    assert CodexWorker.check({"permissionMode": "sideways"}) is not None
    assert CodexWorker.check({"prompt": 3}) is not None
    assert CodexWorker.check({"permissionMode": "acceptEdits", "prompt": "hi"}) is None


async def test_discover_finds_the_fake_with_its_version() -> None:
    found = await discover({"codex": CodexWorker}, env={"PATH": str(FAKE.parent)})
    assert [(t.name, t.version, t.executable) for t in found] == [("codex", "0.171.0", str(FAKE))]


async def test_plain_answer_items_usage_and_the_end_on_eof(rig: Rig) -> None:
    worker, host = rig.worker("scenario:plain", model="gpt-fake")
    await worker.start()
    result = await host.wait_for_output("result")
    system, user, answer = (
        host.of_type("system")[0],
        host.of_type("user")[0],
        host.of_type("assistant")[0],
    )
    thread_id = system["details"]["workerSessionId"]
    assert system["details"]["model"] == "gpt-fake" and system["details"]["resumed"] is False
    assert system["details"]["approvalPolicy"] == "untrusted"
    assert user["content"] == "scenario:plain" and user["details"]["messageId"]
    assert answer["content"] == "plain answer" and answer["details"]["messageId"].startswith("msg_")
    assert result["content"] == "plain answer"
    assert result["details"]["isError"] is False and result["details"]["status"] == "completed"
    assert result["usage"] == {"inputTokens": 80, "outputTokens": 20, "cacheReadTokens": 20}
    assert result["stats"]["turns"] == 1 and isinstance(result["stats"]["durationMs"], int)
    assert [o["type"] for o in host.outputs] == ["system", "user", "assistant", "result"]
    assert all(o["timestamp"].endswith("Z") for o in host.outputs)
    logs = [r.fields["data"] for r in host.records if r.event == "task:stream"]
    assert any("bubblewrap" in line for line in logs)
    ended = await finish(worker)
    assert (ended.exit_code, ended.stopped, ended.error) == (0, False, None)
    assert ended.result == {"workerSessionId": thread_id, "usage": result["usage"]}
    assert ended.resource_usage is not None and ended.resource_usage["cpuTimeS"] >= 0
    sent = [m.get("method") for m in rig.received()]
    assert sent == ["initialize", "initialized", "thread/start", "turn/start"]
    start = rig.received()[2]["params"]
    assert start == {
        "cwd": str(rig.work),
        "approvalPolicy": "untrusted",
        "sandbox": "workspace-write",
        "model": "gpt-fake",
    }
    assert_no_key_anywhere(host)


async def test_tools_become_tool_and_tool_result_items(rig: Rig) -> None:
    worker, host = rig.worker("scenario:tools")
    await worker.start()
    result = await host.wait_for_output("result")
    kinds = [o["type"] for o in host.outputs]
    assert kinds == [
        "system",
        "user",
        "thinking",
        *["tool", "tool-result"] * 4,
        "assistant",
        "result",
    ]
    assert texts(host, "thinking") == ["thinking about tools"]
    calls, results = host.of_type("tool"), host.of_type("tool-result")
    assert [c["details"]["name"] for c in calls] == [
        "commandExecution",
        "commandExecution",
        "fileChange",
        "mcp__docs__search",
    ]
    for call, outcome in zip(calls, results, strict=True):
        assert call["details"]["toolUseId"] == outcome["details"]["toolUseId"]
    assert calls[0]["details"]["input"] == {
        "command": "/bin/bash -lc 'ls -la'",
        "cwd": str(rig.work),
    }
    assert calls[2]["details"]["input"]["changes"][0]["path"] == "hello.txt"
    assert calls[3]["details"]["input"] == {"q": "codex"}
    assert [r["content"] for r in results] == [
        "total 0\n",
        "boom\n",
        "completed: hello.txt",
        "found it",
    ]
    assert [r["details"]["isError"] for r in results] == [False, True, False, False]
    assert [r["details"].get("exitCode") for r in results] == [0, 1, None, None]
    assert result["usage"] == {"inputTokens": 160, "outputTokens": 40, "cacheReadTokens": 40}
    assert result["stats"]["turns"] == 2


def test_long_tool_output_is_cut_and_long_text_split() -> None:
    item = {
        "type": "commandExecution",
        "id": "c1",
        "status": "completed",
        "exitCode": 0,
        "aggregatedOutput": "é" * 100,
    }
    out = codex_items.tool_result(item, "", 51)
    assert out["details"]["truncated"] is True and out["content"] == "é" * 25
    pieces = codex_items.text_items("assistant", "aé" * 10, "m1", 7)
    assert "".join(p["content"] for p in pieces) == "aé" * 10
    assert all(len(p["content"].encode()) <= 7 for p in pieces)


async def test_the_key_is_in_the_environment_only(rig: Rig) -> None:
    worker, host = rig.worker("scenario:plain", baseUrl="http://127.0.0.1:9/v1")
    await worker.start()
    await host.wait_for_output("result")
    await finish(worker)
    start = rig.starts()[0]
    assert start["apiKeySha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    assert "OPENAI_API_KEY" in start["env"] and "ORCHESTRA_TASK_ID" in start["env"]
    assert not [n for n in start["env"] if n.startswith("ORCHESTRA_") and n != "ORCHESTRA_TASK_ID"]
    argv = " ".join(start["argv"])
    assert KEY not in argv and 'model_provider="orchestra"' in argv
    assert 'base_url = "http://127.0.0.1:9/v1"' in argv and 'env_key = "OPENAI_API_KEY"' in argv
    for setting in (
        "check_for_update_on_startup=false",
        "analytics.enabled=false",
        "features.plugins=false",
    ):
        assert setting in start["argv"]
    assert KEY not in rig.record.read_text().replace(start["apiKeySha256"], "")
    assert_no_key_anywhere(host)


async def test_without_key_or_base_url_codex_keeps_its_own_login(rig: Rig) -> None:
    worker, host = rig.worker("scenario:plain", key=None, env={"OPENAI_API_KEY": ""})
    await worker.start()
    await host.wait_for_output("result")
    await finish(worker)
    argv = rig.starts()[0]["argv"]
    assert not any("model_provider" in a for a in argv)


# -- permissions ------------------------------------------------------------------------


async def test_permission_allowed_once(rig: Rig) -> None:
    worker, host = rig.worker("scenario:permission")
    await worker.start()
    ask = await host.wait_for_control("worker:permission")
    assert ask["permissionId"] == "0" and ask["tool"] == "commandExecution"
    assert ask["input"]["command"] == "/bin/bash -lc 'touch allowed.txt'"
    assert ask["input"]["cwd"] == str(rig.work) and ask["input"]["itemId"]
    assert ask["title"] == "Run /bin/bash -lc 'touch allowed.txt'"
    assert host.of_type("tool")[0]["details"]["toolUseId"] == ask["input"]["itemId"]
    assert not (rig.work / "allowed.txt").exists()
    await worker.decide(PermissionDecision("0", "allow"))
    result = await host.wait_for_output("result")
    assert (rig.work / "allowed.txt").exists() and result["content"] == "the command ran"
    assert host.of_type("tool-result")[0]["details"]["isError"] is False
    await worker.decide(PermissionDecision("0", "allow"))  # a second answer: dropped
    await worker.decide(PermissionDecision("77", "deny"))  # an unknown request: dropped
    assert (await finish(worker)).error is None  # the fake exits 3 on an answer not pending
    answers = [m for m in rig.received() if "method" not in m]
    assert answers == [{"jsonrpc": "2.0", "id": 0, "result": {"decision": "accept"}}]


async def test_permission_allowed_for_the_session_is_not_asked_again(rig: Rig) -> None:
    worker, host = rig.worker("scenario:permission")
    await worker.start()
    await host.wait_for_control("worker:permission")
    await worker.decide(PermissionDecision("0", "allow", scope="session"))
    await host.wait_for_output("result")
    await worker.send_input("scenario:permission again")
    second = await host.wait_for_output("result", count=2)
    assert second["content"] == "the command ran" and len(host.controls("worker:permission")) == 1
    await finish(worker)
    answers = [m["result"] for m in rig.received() if "method" not in m]
    assert answers == [{"decision": "acceptForSession"}]


async def test_permission_denied(rig: Rig) -> None:
    worker, host = rig.worker("scenario:permission")
    await worker.start()
    await host.wait_for_control("worker:permission")
    await worker.decide(PermissionDecision("0", "deny", message="not now"))
    result = await host.wait_for_output("result")
    assert result["content"] == "the command was declined" and result["details"]["isError"] is False
    outcome = host.of_type("tool-result")[0]["details"]
    assert (outcome["isError"], outcome["status"]) == (True, "declined")
    assert not (rig.work / "allowed.txt").exists()
    await finish(worker)


async def test_a_refused_request_is_declined_at_once(rig: Rig) -> None:
    refusing = RecordingHost(
        refuse=lambda e, _f: ("AUTH_002", "no") if e == "worker:permission" else None
    )
    worker, host = rig.worker("scenario:permission", host=refusing)
    await worker.start()
    result = await host.wait_for_output("result")
    assert result["content"] == "the command was declined"
    await worker.decide(PermissionDecision("0", "allow"))  # too late: dropped
    await finish(worker)
    answers = [m["result"] for m in rig.received() if "method" not in m]
    assert answers == [{"decision": "decline"}]


async def test_a_request_withdrawn_by_codex_is_cancelled(rig: Rig) -> None:
    worker, host = rig.worker("scenario:cancel")
    await worker.start()
    ask = await host.wait_for_control("worker:permission")
    cancelled = await host.wait_for_control("worker:permission:cancelled")
    assert cancelled == {"permissionId": ask["permissionId"], "reason": "withdrawn by codex"}
    await worker.decide(PermissionDecision(ask["permissionId"], "allow"))  # dropped
    result = await host.wait_for_output("result")
    assert result["content"] == "the request was withdrawn"
    assert (await finish(worker)).error is None  # the fake exits 3 on an answer after a withdrawal


async def test_a_file_change_permission(rig: Rig) -> None:
    worker, host = rig.worker("scenario:file-permission")
    await worker.start()
    ask = await host.wait_for_control("worker:permission")
    assert ask["tool"] == "fileChange" and ask["title"] == "Change hello.txt"
    assert ask["input"]["changes"][0]["diff"] == "+hello\n"
    assert ask["input"]["reason"] == "write hello.txt"
    await worker.decide(PermissionDecision(ask["permissionId"], "allow"))
    assert (await host.wait_for_output("result"))["content"] == "file change accept"
    assert (rig.work / "hello.txt").read_text() == "hello\n"
    await finish(worker)


async def test_interrupt_while_asking_cancels_the_request(rig: Rig) -> None:
    worker, host = rig.worker("scenario:wait-permission")
    await worker.start()
    ask = await host.wait_for_control("worker:permission")
    await worker.send_input("queued while asking")
    await worker.interrupt()
    result = await host.wait_for_output("result")
    assert result["details"]["interrupted"] is True and result["details"]["isError"] is False
    cancelled = await host.wait_for_control("worker:permission:cancelled")
    assert cancelled["permissionId"] == ask["permissionId"]
    assert cancelled["reason"] == "the turn ended (interrupted)"
    await worker.decide(PermissionDecision(ask["permissionId"], "allow"))  # dropped
    queued = await host.wait_for_output("result", count=2)  # the queued input's own turn
    assert queued["content"] == "echo: queued while asking (I remember 1 earlier messages)"
    assert texts(host, "user") == ["scenario:wait-permission", "queued while asking"]
    assert (await finish(worker)).error is None


# -- turns: queueing, interrupt, resume, eof, failures ------------------------------------


async def test_input_during_a_turn_waits_for_it(rig: Rig) -> None:
    worker, host = rig.worker("scenario:wait-permission")
    await worker.start()
    await host.wait_for_control("worker:permission")
    await worker.send_input("second message")
    await eventually(lambda: rig.received()[-1].get("method") == "turn/start", what="turn 1")
    assert [m.get("method") for m in rig.received()].count("turn/start") == 1
    await worker.decide(PermissionDecision("0", "allow"))
    second = await host.wait_for_output("result", count=2)
    assert second["content"].startswith("echo: second message")
    assert [m.get("method") for m in rig.received()].count("turn/start") == 2


async def test_interrupt_then_follow_up(rig: Rig) -> None:
    worker, host = rig.worker("scenario:slow")
    await worker.start()
    await host.wait_for_output("user")
    await worker.interrupt()
    result = await host.wait_for_output("result")
    assert result["details"]["interrupted"] is True and result["details"]["status"] == "interrupted"
    partial = host.of_type("assistant")[0]
    assert partial["details"]["partial"] is True and partial["content"].startswith("tick 0 ")
    await worker.send_input("and now?")
    follow = await host.wait_for_output("result", count=2)
    assert follow["content"] == "echo: and now? (I remember 1 earlier messages)"
    ended = await finish(worker)
    assert (ended.exit_code, ended.error) == (0, None)
    interrupts = [m for m in rig.received() if m.get("method") == "turn/interrupt"]
    assert len(interrupts) == 1 and interrupts[0]["params"]["threadId"]


async def test_resume_by_thread_id(rig: Rig) -> None:
    first, host = rig.worker("remember me")
    await first.start()
    await host.wait_for_output("result")
    thread_id = host.of_type("system")[0]["details"]["workerSessionId"]
    await finish(first)
    second, host2 = rig.worker("what do you remember?", workerSessionId=thread_id)
    await second.start()
    result = await host2.wait_for_output("result")
    system = host2.of_type("system")[0]
    assert (
        system["details"]["resumed"] is True and system["details"]["workerSessionId"] == thread_id
    )
    assert result["content"] == "echo: what do you remember? (I remember 1 earlier messages)"
    resumed = await finish(second)
    assert resumed.result is not None and resumed.result["workerSessionId"] == thread_id
    methods = [m.get("method") for m in rig.received()]
    assert methods.count("thread/resume") == 1 and methods.count("thread/start") == 1


async def test_resume_of_an_unknown_thread_ends_the_task_with_an_error(rig: Rig) -> None:
    worker, host = rig.worker("hello", workerSessionId="no-such-thread")
    await worker.start()
    ended = await asyncio.wait_for(worker.wait(), END_S)
    missing = "no rollout found for thread id no-such-thread"
    assert ended.error == f"codex could not resume thread no-such-thread: {missing}"
    result = host.of_type("result")[0]
    assert result["details"]["isError"] is True and result["content"] == ended.error
    assert not host.of_type("user") and ended.exit_code == 0


async def test_eof_ends_after_the_running_and_queued_turns(rig: Rig) -> None:
    worker, host = rig.worker("scenario:plain")
    await worker.start()
    await worker.send_input("second", eof=True)
    await worker.send_input("after eof")  # dropped
    ended = await asyncio.wait_for(worker.wait(), END_S)
    assert (ended.exit_code, ended.stopped, ended.error) == (0, False, None)
    assert texts(host, "user") == ["scenario:plain", "second"]
    assert len(host.of_type("result")) == 2


async def test_kill_ends_it_at_once(rig: Rig) -> None:
    worker, host = rig.worker("scenario:slow")
    await worker.start()
    await host.wait_for_output("user")
    await worker.stop("kill")
    ended = await asyncio.wait_for(worker.wait(), END_S)
    assert (ended.exit_code, ended.stopped, ended.error) == (-signal.SIGKILL, True, None)
    last = host.of_type("result")[-1]
    assert last["details"] == {
        "isError": False,
        "status": "stopped",
        "turnId": last["details"]["turnId"],
    }
    await eventually(lambda: group_gone(worker.pid or 0), deadline_s=5, what="group gone")


async def test_terminate_between_turns(rig: Rig) -> None:
    worker, host = rig.worker("scenario:plain")
    await worker.start()
    await host.wait_for_output("result")
    await worker.stop("terminate")
    ended = await asyncio.wait_for(worker.wait(), END_S)
    assert (ended.exit_code, ended.stopped, ended.error) == (0, True, None)


async def test_a_crash_ends_the_task_with_an_error(rig: Rig) -> None:
    worker, host = rig.worker("scenario:crash")
    await worker.start()
    ended = await asyncio.wait_for(worker.wait(), END_S)
    assert ended.exit_code == 2 and not ended.stopped
    assert ended.error == "codex app-server ended unexpectedly: the worker exited with code 2"
    result = host.of_type("result")[-1]
    assert result["details"]["isError"] is True and "code 2" in result["content"]
    stderr = [r.fields["data"] for r in host.records if r.fields.get("type") == "stderr"]
    assert "thread 'main' panicked: fake crash" in stderr


async def test_an_authentication_error_is_fatal(rig: Rig) -> None:
    worker, host = rig.worker("scenario:error")
    await worker.start()
    await worker.send_input("never run")
    ended = await asyncio.wait_for(worker.wait(), END_S)
    message = "unexpected status 401 Unauthorized: Incorrect API key provided."
    assert (ended.exit_code, ended.stopped, ended.error) == (0, False, message)
    result = host.of_type("result")[0]
    assert result["content"] == message and result["details"]["isError"] is True
    assert result["details"]["codexErrorInfo"] == {"httpConnectionFailed": {"httpStatusCode": 401}}
    assert texts(host, "user") == ["scenario:error"]
    logs = [r.fields["data"] for r in host.records if r.fields.get("type") == "log"]
    assert any("Reconnecting... 1/5" in line for line in logs)


async def test_no_key_for_our_provider_is_fatal(rig: Rig) -> None:
    worker, host = rig.worker(
        "hello", key=None, baseUrl="http://127.0.0.1:9/v1", env={"OPENAI_API_KEY": ""}
    )
    await worker.start()
    ended = await asyncio.wait_for(worker.wait(), END_S)
    assert ended.error == "Missing environment variable: `OPENAI_API_KEY`."
    assert host.of_type("result")[0]["details"]["isError"] is True


async def test_a_failed_turn_is_not_fatal_but_the_last_turn_counts(rig: Rig) -> None:
    worker, host = rig.worker("scenario:fail")
    await worker.start()
    failed = await host.wait_for_output("result")
    assert failed["details"]["isError"] is True
    assert failed["details"]["codexErrorInfo"] == "contextWindowExceeded"
    await worker.send_input("still there?")
    assert (await host.wait_for_output("result", count=2))["details"]["isError"] is False
    assert (await finish(worker)).error is None
    again, host2 = rig.worker("scenario:fail")
    await again.start()
    await host2.wait_for_output("result")
    ended = await finish(again)
    assert ended.error == "Codex ran out of room in the model's context window."


async def test_a_line_over_one_mib(rig: Rig) -> None:
    worker, host = rig.worker("scenario:big")
    await worker.start()
    await host.wait_for_output("result")
    pieces = host.of_type("assistant")
    text = "é" * 300_000 + "x" * 600_000 + "END"
    assert len(text.encode()) > 1024 * 1024
    assert "".join(p["content"] for p in pieces) == text
    assert all(len(p["content"].encode()) <= 64 * 1024 for p in pieces)
    assert [p["details"]["part"] for p in pieces] == list(range(1, len(pieces) + 1))
    assert {p["details"]["parts"] for p in pieces} == {len(pieces)}
    assert len({p["details"]["messageId"] for p in pieces}) == 1
    await finish(worker)


async def test_noise_lines_become_log_items(rig: Rig) -> None:
    worker, host = rig.worker("scenario:noise")
    await worker.start()
    await host.wait_for_output("result")
    await finish(worker)
    logs = [r.fields["data"] for r in host.records if r.fields.get("type") == "log"]
    for line in ("fake codex: some startup noise", "[WARN] not JSON either", "{not json"):
        assert line in logs
    assert texts(host, "assistant") == ["plain answer"]


def test_the_fake_rejects_what_the_real_one_would_not_take(tmp_path: Path) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"clientInfo": {"name": "t", "title": None, "version": "1"}},
    }
    for lines in (
        [{"jsonrpc": "2.0", "id": 1, "method": "thread/start", "params": {}}],
        [init, {"jsonrpc": "2.0", "id": 5, "result": {"decision": "accept"}}],
        [init, {"jsonrpc": "2.0", "id": 2, "method": "thread/start", "params": {}}],
    ):
        stdin = "".join(json.dumps(line) + "\n" for line in lines)
        done = subprocess.run(
            [sys.executable, str(FAKE), "app-server"],
            input=stdin,
            text=True,
            capture_output=True,
            timeout=30,
            env={"HOME": str(tmp_path)},
        )
        assert done.returncode == 3 and "protocol error" in done.stderr


# -- the real Codex CLI against the fake Responses API -------------------------------------

real = pytest.mark.skipif(REAL is None, reason="the codex CLI is not installed")


@dataclass
class RealRig:
    server: FakeModelServer
    sink: OutboundSink
    rig: Rig

    def worker(self, prompt: str, **parameters: Any) -> tuple[CodexWorker, RecordingHost]:
        assert REAL is not None
        env = self.sink.env() | {"HOME": str(self.rig.home)}
        return self.rig.worker(
            prompt,
            executable=REAL,
            env=env,
            model="fake-model",
            baseUrl=f"{self.server.url}/v1",
            **parameters,
        )


@pytest_asyncio.fixture
async def real_rig(rig: Rig) -> AsyncIterator[RealRig]:
    server = FakeModelServer(lambda _c: Reply.text("hello from the fake model"))
    openai_responses.install(server)
    async with server, OutboundSink() as sink:
        yield RealRig(server, sink, rig)
        for worker in rig.started:  # end them before the server goes
            if worker.pid is not None:
                await worker.stop("kill")
                await asyncio.wait_for(worker.wait(), END_S)
    assert sink.attempts == [], f"codex tried to reach the internet: {sink.attempts}"


@real
async def test_real_codex_plain_answer(real_rig: RealRig) -> None:
    worker, host = real_rig.worker("say hello")
    await worker.start()
    result = await host.wait_for_output("result")
    assert [o["type"] for o in host.outputs] == ["system", "user", "assistant", "result"]
    assert host.of_type("system")[0]["details"]["model"] == "fake-model"
    assert texts(host, "assistant") == ["hello from the fake model"]
    assert result["usage"] == {"inputTokens": 11, "outputTokens": 7}
    assert result["details"]["isError"] is False
    ended = await finish(worker)
    assert (ended.exit_code, ended.error) == (0, None)
    request = real_rig.server.requests[-1]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert_no_key_anywhere(host)


@real
async def test_real_codex_permission_allowed(real_rig: RealRig) -> None:
    def script(conversation: Conversation) -> Reply:
        if conversation.tool_results:
            return Reply.text("done")
        return Reply.tool("exec_command", {"cmd": "touch made.txt"})

    real_rig.server.script = script
    worker, host = real_rig.worker("make the file")
    await worker.start()
    ask = await host.wait_for_control("worker:permission")
    assert ask["tool"] == "commandExecution" and ask["permissionId"] == "0"
    assert ask["input"]["command"] == "/bin/bash -lc 'touch made.txt'"
    await worker.decide(PermissionDecision(ask["permissionId"], "allow"))
    result = await host.wait_for_output("result")
    assert result["content"] == "done" and result["stats"]["turns"] == 2
    assert (real_rig.rig.work / "made.txt").exists()
    outcome = host.of_type("tool-result")[0]["details"]
    assert (outcome["isError"], outcome["exitCode"]) == (False, 0)
    await finish(worker)


@real
async def test_real_codex_resume(real_rig: RealRig) -> None:
    real_rig.server.script = lambda c: Reply.text(f"seen: {' | '.join(c.user_texts[-3:])}")
    first, host = real_rig.worker("my colour is blue")
    await first.start()
    await host.wait_for_output("result")
    thread_id = host.of_type("system")[0]["details"]["workerSessionId"]
    await finish(first)
    second, host2 = real_rig.worker("what is my colour?", workerSessionId=thread_id)
    await second.start()
    result = await host2.wait_for_output("result")
    assert host2.of_type("system")[0]["details"]["workerSessionId"] == thread_id
    assert "my colour is blue" in result["content"]
    assert (await finish(second)).error is None
