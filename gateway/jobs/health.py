"""The cluster-wide health check: ping every online agent (original design §5.2.2).

The job only tells each online agent's actor `ping`; the actor notes the ping, sets its
timeout and has it emitted to the agent's socket on whichever node holds it, and the pong
comes back to the actor from that node (`actors/agent_health.py`). So a job run twice, or
by two nodes while the leadership moves, costs one more ping per agent and nothing else.

It replaces the ping that used to answer each heartbeat: that one came as often as the
agent chose to beat, from whichever node held the socket, and nothing noticed a missing
pong. One ping per agent per `agent_ping_interval_s` from the leader, with a timeout kept
by the actor's timer (which outlives any node), is the design's check.
"""

from __future__ import annotations

from redis.asyncio import Redis

from actors import ActorSystem, agent_address
from actors.values import text
from orchestra import keys


async def ping_agents(redis: Redis, system: ActorSystem) -> int:
    """Tell every online agent's actor to ping its agent; how many were told."""
    agent_ids = sorted(text(a) for a in await redis.smembers(keys.agents_online(system.partitions)))
    for agent_id in agent_ids:
        await system.tell(agent_address(agent_id), "ping", {}, sender="health-check")
    return len(agent_ids)
