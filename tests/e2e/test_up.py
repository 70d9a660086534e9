"""`orchestra up` from an empty folder: one command runs everything, Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from orchestra.redis_server import free_port
from tests.support.processes import wait_for
from tests.support.web import WebClient, login


def orchestra_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def children_using(folder: Path) -> list[psutil.Process]:
    """Processes whose command line names the folder: our Redis, gateway and agents."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if str(folder) in cmdline or process.info["cwd"] == str(
                folder / ".orchestra" / "redis"
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found if p.pid != os.getpid()]


async def test_up_runs_everything_and_a_second_agent_can_join(tmp_path: Path) -> None:
    port = free_port()
    env = orchestra_env()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "orchestra", "up", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        banner = await wait_for(
            lambda: re.search(r"admin:\s+admin / (\S+)", log_path.read_text()),
            what="orchestra up to print the admin's credentials",
            timeout_s=90,
        )
        password = banner.group(1)
        url = f"http://127.0.0.1:{port}"
        assert url in log_path.read_text()
        # Secrets at rest: the data folder and the database are the owner's only.
        data = tmp_path / ".orchestra"
        assert data.stat().st_mode & 0o777 == 0o700
        assert (data / "orchestra.db").stat().st_mode & 0o777 == 0o600
        token = await login(url, "admin", password)

        client = WebClient()
        await client.connect(url, token)

        async def agents() -> list[dict[str, object]]:
            return list((await client.ok("agents:list", {}))["agents"])

        async def online(name: str) -> bool:
            return any(a["name"] == name and a["status"] == "online" for a in await agents())

        await wait_for(lambda: online("local"), what="the local agent")
        local = next(a for a in await agents() if a["name"] == "local")
        started = await client.ok(
            "worker:start",
            {"agentId": local["id"], "tool": "custom", "command": "echo hello from up"},
        )
        await client.ok("session:join", {"sessionId": started["sessionId"]})
        line = await client.wait_for_event("task:stream")
        assert line["data"] == "hello from up"
        result = await client.wait_for_event("task:result")
        assert result["success"] is True

        # `orchestra status` from the same folder finds up's private Redis by itself.
        status = subprocess.run(
            [sys.executable, "-m", "orchestra", "status", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        cluster = json.loads(status.stdout)
        assert cluster["leader"] == "up", cluster
        assert [n["id"] for n in cluster["nodes"]] == ["up"]
        assert cluster["partitions"]["unheld"] == []
        [agent] = cluster["agents"]
        assert agent["name"] == "local" and agent["status"] == "online", agent

        # A second terminal: create an agent and run it against the same gateway.
        created = subprocess.run(
            [sys.executable, "-m", "orchestra", "agent", "create", "laptop",
             "--secret-file", "laptop.secret"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        agent_id = re.search(r"agent id:\s+(\S+)", created.stdout).group(1)  # type: ignore[union-attr]
        with open(tmp_path / "laptop.log", "wb") as log:
            laptop = subprocess.Popen(
                [sys.executable, "-m", "orchestra", "agent", "--server", url,
                 "--agent-id", agent_id, "--secret-file", "laptop.secret"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await wait_for(lambda: online("laptop"), what="the second agent")
        finally:
            laptop.send_signal(signal.SIGINT)
            await asyncio.to_thread(laptop.wait, 30)
        await client.close()

        # And a user made with the command line can log in.
        subprocess.run(
            [sys.executable, "-m", "orchestra", "user", "create", "carol",
             "--password", "carol's password"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert await login(url, "carol", "carol's password")

        ours = children_using(tmp_path)
        assert any("redis-server" in " ".join(p.cmdline()) for p in ours), "a private Redis runs"
    finally:
        # Ctrl-C: everything stops, nothing is left behind.
        up.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(up.wait, 60)
    assert code == 0, log_path.read_text()[-3000:]
    await wait_for(lambda: not children_using(tmp_path), what="no process of ours left")
