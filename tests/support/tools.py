"""The real AI CLIs for tests: where they are installed, and a driver for stream-json ones.

`tool_path("claude")` (or "qwen", "codex", "gemini") finds an installed CLI: in the folder
that env `ORCHESTRA_TEST_TOOLS_BIN` names, else in ~/.cache/orchestra-tools/node_modules/.bin.
Tests that need one skip when it is missing:

    CLAUDE = tool_path("claude")
    pytestmark = pytest.mark.skipif(CLAUDE is None, reason="claude CLI not installed")

`claude_argv`, `claude_env`, `user_message`, `control_request`, `control_response`,
`allow_tool` and `deny_tool` are the Claude Code stream-json pieces (as TOOLS.md describes
them). `OutboundSink` is a proxy that refuses every connection and remembers its first
line: give it to a CLI as HTTPS_PROXY to see whether it tries to reach the internet.

`claude_rig` gives a test the real `claude` against the fake Anthropic API (see
tests/e2e/test_claude_cli_facts.py): HOME and cwd in a folder, no way out to the internet.

`JsonLinesProcess` runs a CLI that reads and prints JSON lines (Claude Code and Qwen Code
in stream-json mode): it keeps every line printed and every line sent, and waits for lines
by condition. With `record_to`, `close()` writes them as `<name>.jsonl` (what the CLI
printed, verbatim) and `<name>.host.jsonl` (what the host sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.model_api import Conversation, FakeModelServer, Reply, anthropic

__all__ = [
    "CLAUDE_QUIET_ENV",
    "DEFAULT_TOOLS_BIN",
    "FAKE_BIN",
    "ClaudeRig",
    "JsonLinesProcess",
    "Line",
    "OutboundSink",
    "allow_tool",
    "claude_argv",
    "claude_env",
    "claude_rig",
    "control_request",
    "control_response",
    "deny_tool",
    "tool_path",
    "user_message",
]

DEFAULT_TOOLS_BIN = Path.home() / ".cache" / "orchestra-tools" / "node_modules" / ".bin"
# Our fakes of the CLIs (`claude`, `codex`, `gemini`), for what the real ones cannot be made
# to do on demand: executables that speak the real protocols.
FAKE_BIN = Path(__file__).resolve().parent.parent / "fixtures" / "bin"
STREAM_LIMIT = 64 * 1024 * 1024  # one stream-json line may carry megabytes

Line = dict[str, Any]


def tool_path(name: str) -> Path | None:
    """The installed CLI `name`, or None when it is not installed."""
    folder = os.environ.get("ORCHESTRA_TEST_TOOLS_BIN")
    path = (Path(folder) if folder else DEFAULT_TOOLS_BIN) / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


# Each of these keeps Claude Code off the internet; CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC
# alone already does (no connection attempt seen through a proxy).
CLAUDE_QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
}


def claude_argv(executable: Path | str, *extra: str) -> list[str]:
    return [
        str(executable),
        "--output-format", "stream-json", "--verbose",
        "--input-format", "stream-json",
        "--permission-prompt-tool", "stdio",
        *extra,
    ]  # fmt: skip


def claude_env(
    home: Path, base_url: str | None, api_key: str | None, **extra: str
) -> dict[str, str]:
    """A minimal environment: PATH, HOME, the fake API and the quiet settings."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env |= CLAUDE_QUIET_ENV
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    return env | extra


def user_message(text: str) -> Line:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": "default",
    }


def control_request(request_id: str, subtype: str, **fields: Any) -> Line:
    return {
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": subtype, **fields},
    }


def control_response(request_id: str, response: dict[str, Any]) -> Line:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    }


def allow_tool(ask: Line, updated_input: dict[str, Any] | None = None, **extra: Any) -> Line:
    """The answer to a `can_use_tool` request `ask` that lets the tool run (with its input,
    or `updated_input`); `extra` may add `updatedPermissions`."""
    tool_input = updated_input if updated_input is not None else ask["request"]["input"]
    return control_response(
        ask["request_id"], {"behavior": "allow", "updatedInput": tool_input, **extra}
    )


def deny_tool(ask: Line, message: str, interrupt: bool = False) -> Line:
    body = {"behavior": "deny", "message": message, "interrupt": interrupt}
    return control_response(ask["request_id"], body)


class OutboundSink:
    """A local 'proxy' that refuses every connection; `attempts` holds each first line."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode(errors="replace").strip())
        writer.close()

    async def __aenter__(self) -> OutboundSink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()

    def env(self) -> dict[str, str]:
        """Proxy settings sending everything but 127.0.0.1 here."""
        return {"HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "NO_PROXY": "127.0.0.1,localhost"}


class JsonLinesProcess:
    """A CLI on JSON lines. `lines` holds what it printed (non-JSON lines as
    `{"_raw": text}`), `sent` what the host sent; `expect` waits for the next line that fits."""

    def __init__(self, process: asyncio.subprocess.Process, record_to: Path | None) -> None:
        self.process = process
        self.record_to = record_to
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self.sent: list[Line] = []
        self.stderr = bytearray()
        self.cursor = 0
        self.started = time.monotonic()
        self._changed = asyncio.Condition()
        self._eof = False
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str],
        cwd: Path,
        record_to: Path | None = None,
    ) -> JsonLinesProcess:
        process = await asyncio.create_subprocess_exec(
            *[str(a) for a in argv],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            limit=STREAM_LIMIT,
            start_new_session=True,
        )
        return cls(process, record_to)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                item = json.loads(text)
            except ValueError:
                item = None
            async with self._changed:
                self.raw.append(text)
                self.lines.append(item if isinstance(item, dict) else {"_raw": text})
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr += chunk

    def send(self, item: Line) -> None:
        """Write one JSON line to the CLI's stdin."""
        assert self.process.stdin is not None
        self.sent.append(item)
        self.process.stdin.write((json.dumps(item) + "\n").encode())

    async def expect(
        self, predicate: Callable[[Line], Any], *, timeout_s: float = 30.0, what: str = ""
    ) -> Line:
        """The next line after the cursor for which `predicate` is true; moves the cursor
        past it. Fails at the deadline or when the CLI's stdout ends first."""

        def found() -> int | None:
            for index in range(self.cursor, len(self.lines)):
                with contextlib.suppress(KeyError, TypeError, AttributeError):
                    if predicate(self.lines[index]):
                        return index
            return None

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: found() is not None or self._eof), timeout_s
                )
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout_s:g} s waiting for {what or 'a line'}; "
                    f"lines since the cursor: {self.lines[self.cursor :]}"
                ) from None
            index = found()
            if index is None:
                raise AssertionError(
                    f"stdout ended before {what or 'the line'}; stderr: {self.stderr[-2000:]!r}"
                )
            self.cursor = index + 1
            return self.lines[index]

    def types(self, since: int = 0) -> list[str]:
        """`type` or `type/subtype` of each line from `since`, for shape checks."""
        out = []
        for line in self.lines[since:]:
            kind = str(line.get("type", "_raw"))
            sub = line.get("subtype") or (line.get("request") or {}).get("subtype")
            out.append(f"{kind}/{sub}" if sub else kind)
        return out

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        if not self.process.stdin.is_closing():
            self.process.stdin.close()

    async def wait_exit(self, timeout_s: float = 15.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def close(self, *, name: str | None = None, grace_s: float = 10.0) -> int | None:
        """Close stdin and wait for the exit (then SIGTERM, SIGKILL); write the transcript."""
        self.close_stdin()
        code: int | None = None
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
            try:
                code = await asyncio.wait_for(self.process.wait(), grace_s)
                break
            except TimeoutError:
                continue
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        if self.record_to is not None and name is not None:
            self.write_transcript(self.record_to, name)
        return code

    def write_transcript(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jsonl").write_text("".join(f"{r}\n" for r in self.raw))
        host = "".join(json.dumps(s) + "\n" for s in self.sent)
        (folder / f"{name}.host.jsonl").write_text(host)


@dataclass
class ClaudeRig:
    """The fake Anthropic API, an outbound sink, HOME and cwd folders, the CLIs started."""

    executable: Path
    server: FakeModelServer
    sink: OutboundSink
    home: Path
    cwd: Path
    api_key: str
    record_to: Path | None = None
    started: list[JsonLinesProcess] = field(default_factory=list)

    async def claude(
        self, *args: str, key: bool = True, api: bool = True, initialize: bool = True, **env: str
    ) -> JsonLinesProcess:
        """Start `claude` with `args` (and `env`); without `key` or `api`, no
        ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL. Sends `initialize` and waits for its answer."""
        url = self.server.url if api else None
        environment = claude_env(self.home, url, self.api_key if key else None, **env)
        cli = await JsonLinesProcess.start(
            claude_argv(self.executable, *args),
            env=environment | self.sink.env(),
            cwd=self.cwd,
            record_to=self.record_to,
        )
        self.started.append(cli)
        if initialize:
            cli.send(control_request("req_init", "initialize", hooks=None))
            await cli.expect(
                lambda line: line["type"] == "control_response", what="the initialize answer"
            )
        return cli

    def model_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.server.requests if r.path == "/v1/messages"]

    def last_conversation(self) -> Conversation:
        return anthropic.parse_conversation(self.model_requests()[-1])


@contextlib.asynccontextmanager
async def claude_rig(
    executable: Path, folder: Path, api_key: str, *, record_to: Path | None = None
) -> AsyncIterator[ClaudeRig]:
    """A `ClaudeRig` in `folder`; at the end every CLI is stopped, and it fails if the key
    reached a CLI's stdout or a CLI tried to reach the internet."""
    server = FakeModelServer(lambda _c: Reply.text("hello from the fake model"))
    anthropic.install(server)
    for name in ("home", "work"):
        (folder / name).mkdir(exist_ok=True)
    async with server, OutboundSink() as sink:
        rig = ClaudeRig(
            executable, server, sink, folder / "home", folder / "work", api_key, record_to
        )
        try:
            yield rig
        finally:
            for cli in rig.started:
                await cli.close()
                assert not any(api_key in raw for raw in cli.raw), "the key leaked to stdout"
        assert sink.attempts == [], f"the CLI tried to reach the internet: {sink.attempts}"
