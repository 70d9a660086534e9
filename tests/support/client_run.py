"""A `printer` worker watched through `orchestra.client`: the run that tests break things
under (a gateway, Redis) to see that the client carries on by itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestra.client import Client
from tests.support.processes import wait_for
from tests.support.workers import printer


@dataclass
class ClientRun:
    client: Client
    started: dict[str, Any]
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async for event, data in self.client.events():
            self.received.append((event, data))

    def has_line(self, text: str) -> bool:
        return any(d.get("data") == text for e, d in self.received if e == "task:stream")

    def lines(self) -> list[dict[str, Any]]:
        return [d for e, d in self.received if e == "task:stream"]

    async def finished(self, timeout_s: float) -> None:
        await wait_for(
            lambda: any(e == "task:result" for e, _ in self.received),
            what="the result", timeout_s=timeout_s,
        )  # fmt: skip

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.client.close()


async def start_printing(
    url: str, token: str, agent_id: str, lines: int, working_directory: Path
) -> ClientRun:
    """Start a worker printing `lines` lines, watch it, and return once line 5 is in."""
    client = Client(url, token)
    await client.connect()
    started = await client.start(
        tool="custom", agent_id=agent_id, command=printer(lines),
        working_directory=str(working_directory),
    )  # fmt: skip
    run = ClientRun(client, started)
    run.reader = asyncio.create_task(run._read())
    await client.join(started["sessionId"])
    await wait_for(lambda: run.has_line("line 5"), what="line 5")
    return run
