"""Three gateway nodes on one Redis while one of them is SIGKILLed every few seconds:
every actor message is handled, once, in each sender's order (DESIGN.md §2)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from actors import ActorEnv, ActorSystem, Address, Scripts
from orchestra import redis_client
from orchestra.db import Store
from orchestra.settings import Settings
from tests.support.processes import Deployment, Gateway, wait_for

ACTORS = 100
SENDERS = 4
MESSAGES = 10_000
SEND_SECONDS = 15.0  # the senders spread their messages over this long
KILL_EVERY_S = (2.0, 4.0)


# The SQL backend plays no part here: SQLite only (tests/db and the REST tests cover both).
pytestmark = pytest.mark.sqlite_only


async def test_every_message_is_handled_once_in_order_while_nodes_are_killed(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.extra_env["ORCHESTRA_LEASE_TTL_S"] = "3"
    nodes: dict[str, Gateway] = {}
    for name in ("gw1", "gw2", "gw3"):
        nodes[name] = await deployment.start_gateway(name)

    client = redis_client.connect(deployment.redis_url)
    settings = Settings.load({}, redis_url=deployment.redis_url, data_dir=tmp_path,
                             jwt_secret="x" * 32, node_id="sender")  # fmt: skip
    sender = ActorSystem(  # sends only: it takes no partitions
        ActorEnv(client, Scripts(client), Store(deployment.database_url), settings, _NoSockets()),
        {},
    )
    probes = [Address("probe", f"p{i}") for i in range(ACTORS)]
    state_keys = {p: p.state_key(deployment.partitions) for p in probes}
    per_sender = MESSAGES // SENDERS
    rng = random.Random(7)
    kills = 0

    async def send(name: str) -> None:
        # Each sender numbers its messages per actor, so order is checked per actor.
        numbers = dict.fromkeys(probes, 0)
        pause_s = SEND_SECONDS / per_sender
        for i in range(per_sender):
            probe = probes[(i * 7 + hash(name)) % ACTORS]
            numbers[probe] += 1
            await sender.tell(probe, "ping", {"sender": name, "n": numbers[probe]})
            await asyncio.sleep(pause_s)

    async def killer(stop: asyncio.Event) -> None:
        nonlocal kills
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
            name = rng.choice(sorted(nodes))
            victim = nodes[name]
            victim.kill()  # SIGKILL: no lease released, no goodbye
            kills += 1
            nodes[name] = await deployment.start_gateway(name, port=victim.port)

    async def handled() -> int:
        counts = await asyncio.gather(*(client.hget(state_keys[p], "count") for p in probes))
        return sum(int(c or 0) for c in counts)

    stop = asyncio.Event()
    chaos = asyncio.create_task(killer(stop))
    started = time.monotonic()
    try:
        await asyncio.gather(*(send(f"s{k}") for k in range(SENDERS)))
        await wait_for(
            lambda: _at_least(handled(), MESSAGES), what=f"{MESSAGES} messages handled",
            timeout_s=240, interval_s=0.5,
        )  # fmt: skip
    finally:
        stop.set()
        await chaos
    assert kills >= 3, f"only {kills} nodes were killed in {time.monotonic() - started:.0f} s"
    assert await handled() == MESSAGES  # once each: no message counted twice
    for probe in probes:
        state = await client.hgetall(state_keys[probe])
        assert "outOfOrder" not in state, f"{probe} saw messages out of order: {state}"
    await client.aclose()


async def _at_least(value: object, expected: int) -> bool:
    return await value >= expected  # type: ignore[misc, no-any-return]


class _NoSockets:
    async def to_agent(self, agent_id: str, event: str, data: dict[str, object]) -> None:
        return None

    async def to_room(self, room: str, event: str, data: dict[str, object]) -> None:
        return None

    async def disconnect_agent(self, socket_id: str) -> None:
        return None
