"""Agents that went silent: no heartbeat for three intervals.

An agent's socket normally tells us when it goes (the namespace's disconnect handler),
but not when the gateway node holding it dies, nor when a network hangs without closing
anything. This cluster-wide job reads the last heartbeat of every agent listed online
and tells the silent ones' actors, which take them offline (starting their grace period)
and close their sockets. The actor checks again in its own turn, so a heartbeat that
lands between this look and that turn wins.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from actors import ActorSystem, agent_address
from actors.values import read_fields, text
from orchestra import keys
from orchestra.codec import parse_timestamp

SILENT_AFTER_INTERVALS = 3


async def find_silent_agents(
    redis: Redis, system: ActorSystem, heartbeat_interval_s: float
) -> None:
    silent_after_s = SILENT_AFTER_INTERVALS * heartbeat_interval_s
    now = time.time()
    partitions = system.partitions
    agent_ids = [text(a) for a in await redis.smembers(keys.agents_online(partitions))]
    states = await read_fields(
        redis,
        [agent_address(a).state_key(partitions) for a in agent_ids],
        ["lastHeartbeat", "socketId"],
    )
    for agent_id, state in zip(agent_ids, states, strict=True):
        heard_at = state.get("lastHeartbeat")
        if (
            isinstance(heard_at, str)
            and now - parse_timestamp(heard_at).timestamp() < silent_after_s
        ):
            continue
        await system.ref(agent_address(agent_id)).tell(
            "heartbeat:missed",
            {"socketId": state.get("socketId"), "silentAfterS": silent_after_s},
        )
