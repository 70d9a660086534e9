"""A running deployment: alice, her agent, a gateway and the agent daemon, with the agent
online (the `running` fixture of `tests/conftest.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Deployment, Gateway, Process, wait_for
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

    async def client(self) -> WebClient:
        client = WebClient()
        await client.connect(self.gateway.url, self.token)
        return client


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
