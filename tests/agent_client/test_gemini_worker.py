"""The gemini worker: against the fake `gemini` (tests/fixtures/bin/gemini) through every
scenario, and against the real Gemini CLI with only the model faked (skipped without it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from agent_client.workers import WorkerExit, WorkerSpec, WorkerStartError
from agent_client.workers.gemini import GeminiWorker, approval_note
from tests.fixtures.model_api import Conversation, FakeModelServer, Reply, gemini
from tests.support.tools import tool_path
from tests.support.worker_host import RecordingHost

from .conftest import eventually, group_gone

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "bin" / "gemini"
REAL = tool_path("gemini")
KEY = "gk-test-secret-4f2a9c17"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TURN_S = 30.0  # the fake answers at once; the real CLI takes about 3 s to start


def make(
    tmp_path: Path, prompt: str | None = None, *, executable: Path | None = FAKE,
    secrets: dict[str, str] | None = None, **params: Any,
) -> tuple[GeminiWorker, RecordingHost]:  # fmt: skip
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "FAKE_GEMINI_RECORD": str(tmp_path / "record.jsonl")}
    parameters: dict[str, Any] = {"env": env | params.pop("env", {})} | params
    if prompt is not None:
        parameters["prompt"] = prompt
    spec = WorkerSpec(
        task_id="t-gemini",
        tool="gemini",
        parameters=parameters,
        working_directory=work,
        stop_grace_s=2.0,
        executable=str(executable) if executable else None,
        secrets={"apiKey": KEY} if secrets is None else secrets,
    )
    host = RecordingHost()
    return GeminiWorker(spec, host), host


def recorded(tmp_path: Path) -> list[dict[str, Any]]:
    """What the fake gemini was run with: argv, stdin, env names, the key's sha256."""
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def logs(host: RecordingHost, kind: str) -> list[str]:
    return [r.fields["data"] for r in host.records
            if r.event == "task:stream" and r.fields["type"] == kind]  # fmt: skip


async def ended(worker: GeminiWorker, timeout_s: float = TURN_S) -> WorkerExit:
    return await asyncio.wait_for(worker.wait(), timeout_s)


async def test_plain_turn_items_usage_and_the_approval_note(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:plain")
    await worker.start()
    await worker.send_input("", eof=True)
    done = await ended(worker)

    assert done.exit_code == 0 and done.succeeded and not done.stopped and done.error is None
    assert [i["type"] for i in host.outputs] == ["user", "system", "assistant", "result"]
    assert all(isinstance(i["timestamp"], str) for i in host.outputs)
    user, system, assistant, result = host.outputs
    assert user["content"] == "scenario:plain"
    session = system["details"]["workerSessionId"]
    assert UUID.match(session) and system["details"]["model"] == "auto"
    assert assistant["content"] == "Hello from fake gemini"  # the deltas, whole
    assert assistant["details"]["messageId"]
    assert result["details"]["isError"] is False
    assert result["usage"] == {"inputTokens": 16, "outputTokens": 10, "cacheReadTokens": 4}
    assert result["stats"]["turns"] == 1 and isinstance(result["stats"]["durationMs"], int)
    assert done.result == {"workerSessionId": session, "turns": 1,
                           "usage": result["usage"]}  # fmt: skip
    assert done.resource_usage is not None and done.resource_usage["cpuTimeS"] >= 0
    status = host.controls("worker:status")
    assert status == [{"status": "running", "message": approval_note("default")}]
    assert "cannot ask for permission" in status[0]["message"]
    assert "approval mode default allows" in status[0]["message"]
    (run,) = recorded(tmp_path)
    assert run["stdin"] == "scenario:plain"  # the prompt goes on stdin, never in argv
    assert run["argv"] == ["-o", "stream-json", "--skip-trust", "--approval-mode=default"]
    assert logs(host, "stderr") == ["Warning: 256-color support not detected."]


async def test_follow_up_turns_resume_the_session_and_usage_adds_up(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "first", model="gemini-2.5-pro")
    await worker.start()
    first = await host.wait_for_output("result", timeout_s=TURN_S)
    await worker.send_input("second")
    second = await host.wait_for_output("result", count=2, timeout_s=TURN_S)
    await worker.send_input("", eof=True)
    done = await ended(worker)

    session = host.of_type("system")[0]["details"]["workerSessionId"]
    assert [s["details"]["workerSessionId"] for s in host.of_type("system")] == [session] * 2
    assert [u["content"] for u in host.of_type("user")] == ["first", "second"]
    assistant = host.of_type("assistant")
    assert assistant[1]["content"] == "echo: second (I remember 2 earlier messages)"
    assert assistant[0]["details"]["messageId"] != assistant[1]["details"]["messageId"]
    runs = recorded(tmp_path)
    assert "--model=gemini-2.5-pro" in runs[0]["argv"]
    assert not any(a.startswith("--resume") for a in runs[0]["argv"])
    assert runs[1]["argv"][-1] == f"--resume={session}"
    assert first["usage"] == second["usage"]
    assert done.result is not None and done.result["usage"]["inputTokens"] == 32
    assert done.exit_code == 0 and done.succeeded and done.result["turns"] == 2


async def test_no_prompt_waits_for_the_first_input_and_eof_ends_it(tmp_path: Path) -> None:
    worker, host = make(tmp_path)
    await worker.start()
    assert worker.pid is None and host.outputs == []
    await worker.send_input("hello there")
    await host.wait_for_output("result", timeout_s=TURN_S)
    await worker.send_input("", eof=True)
    done = await ended(worker)
    assert done.exit_code == 0 and done.succeeded
    assert host.of_type("assistant")[0]["content"].startswith("echo: hello there")
    assert worker.pid is None

    idle, idle_host = make(tmp_path / "idle")
    await idle.start()
    await idle.send_input("", eof=True)  # no turn at all: it ends well at once
    nothing = await ended(idle)
    assert nothing.exit_code == 0 and nothing.succeeded and idle_host.outputs == []
    assert nothing.result is not None and nothing.result["turns"] == 0


async def test_interrupt_ends_the_turn_not_the_worker_and_queued_input_runs_next(
    tmp_path: Path,
) -> None:
    worker, host = make(tmp_path, "scenario:slow")
    await worker.start()
    await host.wait_for_output("system", timeout_s=TURN_S)
    slow_pid = worker.pid
    assert slow_pid is not None
    await worker.send_input("queued while busy")  # waits for the turn to end
    await worker.interrupt()
    result = await host.wait_for_output("result", timeout_s=TURN_S)
    assert result["details"] == {"isError": False, "exitCode": 0, "interrupted": True}
    ticks = host.of_type("assistant")[0]["content"]
    assert ticks.startswith("tick ")  # what it said before the interrupt
    follow = await host.wait_for_output("result", count=2, timeout_s=TURN_S)
    assert follow["details"]["isError"] is False and "interrupted" not in follow["details"]
    # The session kept the interrupted prompt, as the real CLI does.
    assert host.of_type("assistant")[-1]["content"].endswith("(I remember 1 earlier messages)")
    await eventually(lambda: group_gone(slow_pid), what="the interrupted turn's group")

    await worker.interrupt()  # nothing runs: nothing happens
    await worker.send_input("one more")
    await host.wait_for_output("result", count=3, timeout_s=TURN_S)
    await worker.send_input("", eof=True)
    done = await ended(worker)
    assert done.exit_code == 0 and done.succeeded and done.error is None
    assert done.result is not None and done.result["turns"] == 3


async def test_kill_ends_the_turn_and_the_worker(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:slow")
    await worker.start()
    await host.wait_for_output("system", timeout_s=TURN_S)
    pid = worker.pid
    assert pid is not None
    await worker.send_input("never runs")
    await worker.stop("kill")
    done = await ended(worker)
    assert done.stopped and done.exit_code == -9 and not done.succeeded
    assert host.of_type("result") == []  # a stopped task has no turn result
    await eventually(lambda: group_gone(pid), what="the killed turn's group")
    assert len(recorded(tmp_path)) == 1
    await worker.send_input("too late")  # dropped, no error
    await worker.stop("kill")


async def test_terminate_is_graceful(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:slow")
    await worker.start()
    await host.wait_for_output("system", timeout_s=TURN_S)
    await worker.stop("terminate")
    done = await ended(worker)
    assert done.stopped and done.exit_code == 0  # SIGTERM: it exits 0, as the real one


async def test_a_crash_ends_the_task_with_an_error(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:crash")
    await worker.start()
    done = await ended(worker)
    assert done.exit_code == 2 and not done.succeeded and not done.stopped
    assert done.error == "gemini failed (exited with code 2): fatal: the fake crashed"
    assert host.of_type("assistant")[0]["content"] == "working"
    result = host.of_type("result")[0]
    assert result["content"] == done.error
    assert result["details"] == {"isError": True, "exitCode": 2}


async def test_an_error_result_fails_the_task_with_its_message(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:error")
    await worker.start()
    await worker.send_input("not run: the worker failed")
    done = await ended(worker)
    warning = host.of_type("system")[1]
    assert warning["content"] == "Invalid stream: the model said nothing"
    assert warning["details"] == {"severity": "error", "isError": True}
    (result,) = host.of_type("result")
    assert result["content"] == "Quota exceeded for gemini-fake"
    assert result["details"]["isError"] is True and result["details"]["errorType"] == "ApiError"
    assert done.exit_code == 1
    assert done.error == "gemini failed (exited with code 1): Quota exceeded for gemini-fake"
    assert len(recorded(tmp_path)) == 1  # the queued input never ran


async def test_a_message_over_one_mib_in_one_line(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:big")
    await worker.start()
    await worker.send_input("", eof=True)
    done = await ended(worker)
    assert done.exit_code == 0
    parts = host.of_type("assistant")
    assert "".join(p["content"] for p in parts) == "B" * (1536 * 1024)
    assert len(parts) == 24 and all(len(p["content"]) <= 64 * 1024 for p in parts)
    assert {p["details"]["messageId"] for p in parts} == {parts[0]["details"]["messageId"]}
    assert [p["details"]["part"] for p in parts] == list(range(1, 25))
    assert len(host.of_type("result")[0]["content"]) == 64 * 1024  # cut
    assert host.of_type("result")[0]["details"]["truncated"] is True


async def test_noise_goes_to_the_log_and_warnings_are_system_items(tmp_path: Path) -> None:
    worker, host = make(tmp_path, "scenario:noise")
    await worker.start()
    await worker.send_input("", eof=True)
    done = await ended(worker)
    assert done.exit_code == 0 and done.error is None
    assert logs(host, "log") == ["Loaded cached credentials.", "not json {"]
    assert "[DEBUG] some stderr noise" in logs(host, "stderr")
    warning = host.of_type("system")[1]
    assert warning["content"] == "Loop detected, stopping execution"
    assert warning["details"] == {"severity": "warning", "isError": False}
    assert host.of_type("assistant")[0]["content"] == "quiet now"


@pytest.mark.parametrize(
    ("params", "flag", "shell_runs"),
    [
        ({}, "--approval-mode=default", False),
        ({"permissionMode": "acceptEdits"}, "--approval-mode=auto_edit", False),
        ({"permissionMode": "bypassPermissions"}, "--approval-mode=yolo", True),
        ({"permissionMode": "plan"}, "--approval-mode=plan", False),
        ({"allowedTools": ["run_shell_command"]}, "--allowed-tools=run_shell_command", True),
    ],
)
async def test_tools_under_each_approval_mode(
    tmp_path: Path, params: dict[str, Any], flag: str, shell_runs: bool
) -> None:
    worker, host = make(tmp_path, "scenario:tools", **params)
    await worker.start()
    await worker.send_input("", eof=True)
    done = await ended(worker)
    assert done.exit_code == 0 and done.succeeded
    assert flag in recorded(tmp_path)[0]["argv"]
    shell, read = host.of_type("tool")
    assert shell["content"] == "run_shell_command: ls"
    call = {"toolUseId": "run_shell_command__fake_1", "name": "run_shell_command"}
    assert shell["details"] == call | {"input": {"command": "ls"}}
    shell_result, read_result = host.of_type("tool-result")
    assert shell_result["details"]["toolUseId"] == "run_shell_command__fake_1"
    if shell_runs:
        assert shell_result["content"] == "file-a\nfile-b"
        assert shell_result["details"] == {"toolUseId": "run_shell_command__fake_1",
                                           "isError": False}  # fmt: skip
    else:
        assert shell_result["content"].startswith('Tool "run_shell_command" not found')
        assert shell_result["details"]["isError"] is True
        assert shell_result["details"]["errorType"] == "tool_not_registered"
    assert read["details"]["input"] == {"file_path": "big.txt"}
    assert read_result["content"] == "x" * (64 * 1024)
    assert read_result["details"]["truncated"] is True
    assert [a["content"] for a in host.of_type("assistant")] == ["I will list the files.", "Done."]
    assert host.of_type("result")[0]["stats"]["toolCalls"] == 2
    mode = host.of_type("system")[0]["details"]["approvalMode"]
    assert f"approval mode {mode} allows" in host.controls("worker:status")[0]["message"]


async def test_the_key_is_in_the_environment_only(tmp_path: Path) -> None:
    worker, host = make(tmp_path, f"please repeat {KEY}", baseUrl="http://127.0.0.1:9")
    await worker.start()
    await worker.send_input("", eof=True)
    await ended(worker)
    (run,) = recorded(tmp_path)
    assert run["keySha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    assert {"GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"} <= set(run["env"])
    assert not any(k.startswith("ORCHESTRA_") and k != "ORCHESTRA_TASK_ID" for k in run["env"])
    assert not any(KEY in arg for arg in run["argv"])
    everything = json.dumps([r.fields for r in host.records])
    assert KEY not in everything  # not in any item, log line or status
    assert "please repeat [redacted]" in everything


async def test_without_a_key_the_task_fails_with_the_cli_s_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    worker, host = make(tmp_path, "hello", secrets={})
    await worker.start()
    done = await ended(worker)
    assert done.exit_code == 41 and not done.succeeded
    assert done.error is not None and done.error.startswith("gemini failed (exited with code 41)")
    assert "you must specify the GEMINI_API_KEY environment variable" in done.error
    assert "256-color" not in done.error  # the CLI's noise is left out
    assert host.of_type("result")[0]["details"]["isError"] is True


async def test_resuming_an_unknown_session_fails(tmp_path: Path) -> None:
    worker, _ = make(tmp_path, "hello", workerSessionId="no-such-session")
    await worker.start()
    done = await ended(worker)
    assert done.exit_code == 42
    assert done.error is not None and 'Invalid session identifier "no-such-session"' in done.error
    assert recorded(tmp_path)[0]["argv"][-1] == "--resume=no-such-session"


async def test_parameters_are_checked_and_decisions_dropped(tmp_path: Path) -> None:
    assert GeminiWorker.check({"permissionMode": "yolo", "model": "gemini-2.5-pro"}) is None
    assert GeminiWorker.check({"permissionMode": None}) is None
    assert "permissionMode" in (GeminiWorker.check({"permissionMode": "ask"}) or "")
    assert "model" in (GeminiWorker.check({"model": "--yolo"}) or "")
    assert "workerSessionId" in (GeminiWorker.check({"workerSessionId": "-r x"}) or "")
    assert "allowedTools" in (GeminiWorker.check({"allowedTools": "run_shell_command"}) or "")
    assert GeminiWorker.version_of("0.61.0\n") == "0.61.0"
    worker, _ = make(tmp_path, "hi", permissionMode="ask")
    with pytest.raises(WorkerStartError):
        await worker.start()
    missing, _ = make(tmp_path, "hi", executable=tmp_path / "no-gemini")
    with pytest.raises(WorkerStartError):
        await missing.start()


async def test_unknown_flags_make_the_fake_exit_2(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(FAKE), "-o", "stream-json", "--bogus", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), TURN_S)
    assert process.returncode == 2 and b"Unknown argument: --bogus" in err


# -- the real Gemini CLI, only the model faked ------------------------------------------

SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}}


@pytest_asyncio.fixture
async def model_api() -> AsyncIterator[FakeModelServer]:
    def script(conversation: Conversation) -> Reply:
        return Reply.text(f"I have seen {len(conversation.user_texts)} user messages")

    server = FakeModelServer(script)
    gemini.install(server)
    async with server:
        yield server


@pytest.mark.skipif(REAL is None, reason="gemini CLI not installed")
async def test_real_gemini_answers_and_resumes(tmp_path: Path, model_api: FakeModelServer) -> None:
    (tmp_path / "home" / ".gemini").mkdir(parents=True)
    (tmp_path / "home" / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    model_api.api_key = KEY
    worker, host = make(tmp_path, "Say hello", executable=REAL, baseUrl=model_api.url,
                        model="gemini-2.5-flash")  # fmt: skip
    await worker.start()
    first = await host.wait_for_output("result", timeout_s=60)
    await worker.send_input("And again")
    second = await host.wait_for_output("result", count=2, timeout_s=60)
    await worker.send_input("", eof=True)
    done = await ended(worker, 60)

    assert done.exit_code == 0 and done.succeeded and done.error is None
    system = host.of_type("system")
    session = system[0]["details"]["workerSessionId"]
    assert UUID.match(session) and system[0]["details"]["model"] == "gemini-2.5-flash"
    assert [s["details"]["workerSessionId"] for s in system] == [session, session]
    texts = [a["content"] for a in host.of_type("assistant")]
    assert texts == ["I have seen 1 user messages", "I have seen 2 user messages"]
    for result in (first, second):
        assert result["details"]["isError"] is False
        assert result["usage"] == {"inputTokens": 11, "outputTokens": 7, "cacheReadTokens": 0}
    assert done.result == {"workerSessionId": session, "turns": 2,
                           "usage": {"inputTokens": 22, "outputTokens": 14,
                                     "cacheReadTokens": 0}}  # fmt: skip
    main = [model_api.requests[i] for i in model_api.seen.main]
    assert len(main) == 2 and all(r.headers.get("x-goog-api-key") == KEY for r in main)
    assert KEY not in json.dumps([r.fields for r in host.records])


@pytest.mark.skipif(REAL is None, reason="gemini CLI not installed")
async def test_real_gemini_interrupted_in_a_shell_tool_leaves_nothing_running(
    tmp_path: Path, model_api: FakeModelServer
) -> None:
    marker = "56.7891"  # a sleep no one else runs

    def script(conversation: Conversation) -> Reply:
        if conversation.user_texts[-1].endswith("sleep"):
            return Reply.tool("run_shell_command", {"command": f"sleep {marker}"})
        return Reply.text("awake again")

    model_api.script = script
    (tmp_path / "home" / ".gemini").mkdir(parents=True)
    (tmp_path / "home" / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    worker, host = make(tmp_path, "sleep", executable=REAL, baseUrl=model_api.url,
                        model="gemini-2.5-flash", permissionMode="yolo")  # fmt: skip
    await worker.start()
    await host.wait_for_output("tool", timeout_s=60)
    await eventually(lambda: sleepers(marker), deadline_s=30, what="the shell tool")
    await worker.interrupt()
    result = await host.wait_for_output("result", timeout_s=60)
    assert result["details"]["interrupted"] is True and result["details"]["isError"] is False
    # The CLI leaves its shell tool running (a session of its own); the worker does not.
    await eventually(lambda: not sleepers(marker), deadline_s=30, what="the shell tool's end")
    await worker.send_input("wake up")
    follow = await host.wait_for_output("result", count=2, timeout_s=60)
    assert follow["details"]["isError"] is False
    assert host.of_type("assistant")[-1]["content"] == "awake again"
    await worker.send_input("", eof=True)
    done = await ended(worker, 60)
    assert done.exit_code == 0 and done.succeeded and done.error is None


def sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.info["cmdline"] == ["sleep", marker] and process.status() != "zombie":
                found.append(process)
    return found
