"""A running deployment for end-to-end tests: alice, her agent, a gateway, the agent daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from tests.support.processes import Deployment, Gateway, Process
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


@pytest_asyncio.fixture
async def running(deployment: Deployment) -> AsyncIterator[Running]:
    await deployment.create_user("alice", PASSWORD, admin=False)
    agent_id, secret_file = await deployment.create_agent("box", owner="alice")
    gateway = await deployment.start_gateway("gw1")
    agent = deployment.start_agent(agent_id, secret_file, gateway.url)
    token = await login(gateway.url, "alice", PASSWORD)
    running = Running(deployment, gateway, agent, agent_id, secret_file, token)
    client = await running.client()
    try:

        async def online() -> bool:
            agents = (await client.ok("agents:list", {}))["agents"]
            return any(a["id"] == agent_id and a["status"] == "online" for a in agents)

        from tests.support.processes import wait_for

        await wait_for(online, what="the agent to be online")
    finally:
        await client.close()
    yield running
