"""A running deployment: alice, her agent, a gateway and the agent daemon, with the agent
online (the `running` fixture of `tests/conftest.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import Deployment, Gateway, Process, http, wait_for
from tests.support.web import WebClient, login

PASSWORD = "correct horse battery staple"


@dataclass
class Running:
    deployment: Deployment
    gateway: Gateway
    agent: Process
    agent_id: str
    secret_file: Path
    token: str

    async def client(
        self, *, batch: bool = False, compression: list[str] | None = None
    ) -> WebClient:
        """A connected web client (see `WebClient` for `batch`)."""
        client = WebClient(batch=batch)
        await client.connect(self.gateway.url, self.token, compression=compression)
        return client

    async def task(self, task_id: str) -> dict[str, Any]:
        """The task's TaskView, over REST."""
        status, body = await asyncio.to_thread(
            http, "GET", f"{self.gateway.url}/api/tasks/{task_id}", None, self.token
        )
        assert status == 200, body
        task: dict[str, Any] = body["task"]
        return task


async def start_running(deployment: Deployment) -> Running:
    await deployment.create_user("alice", PASSWORD, admin=False)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url)
    token = await login(gateway.url, "alice", PASSWORD)
    running = Running(deployment, gateway, agent, agent_id, secret_file, token)
    client = await running.client()
    try:
        await wait_for(
            lambda: client.agent_status_is("online", agent_id), what="the agent to be online"
        )
    finally:
        await client.close()
    return running
