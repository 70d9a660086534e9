"""`orchestra status`: the cluster at a glance, read from Redis and SQL (no gateway asked).

The live gateway nodes (`orch:nodes`) and the actor partitions each holds (the partition
leases), the leader of the cluster-wide jobs, the agents that are not revoked and their
health (as `GET /health/agents` reports it), the dispatch queue, and the alerts firing.
`collect` gathers it as one JSON-ready dict; `render` makes the terminal's text of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from actors.dispatcher import PRIORITIES
from actors.values import read_states, text
from actors.views import agent_healthy, agent_view
from orchestra import keys
from orchestra.db import Store
from orchestra.errors import ConnectionFailed
from orchestra.redis_client import connect
from orchestra.settings import Settings


async def collect(settings: Settings) -> dict[str, Any]:
    """The cluster now; CONN_001 when Redis cannot be reached, DB_001 for SQL (saying no
    more than the kind of failure: a URL may carry a password)."""
    redis = connect(settings.redis_url, socket_timeout=10)
    try:
        async with Store(settings.database_url, secrets_key=settings.secrets_key) as store:
            status = await _from_redis(redis, settings.partitions)
            status["agents"] = await _agents(redis, store, settings.partitions)
            return status
    except RedisError as exc:
        raise ConnectionFailed(f"cannot reach Redis ({type(exc).__name__})") from None
    finally:
        await redis.aclose()


async def _from_redis(redis: Redis, partitions: int) -> dict[str, Any]:
    now_ms = time.time() * 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(keys.nodes(), now_ms, "+inf", withscores=True)
        pipe.get(keys.leader())
        for partition in range(partitions):
            pipe.get(keys.lease(partition, partitions))
        for priority in PRIORITIES:
            pipe.zcard(keys.dispatch_queue(priority, partitions))
            pipe.zrange(keys.dispatch_queue(priority, partitions), 0, 0, withscores=True)
        pipe.hgetall(keys.alerts_firing())
        replies = await pipe.execute()
    nodes, leader_token, *rest = replies
    leases, rest = rest[:partitions], rest[partitions:]
    queues, firing = rest[:-1], rest[-1]
    # A lease's value is "<node>:<fence>", the leader's "<node>:<token>".
    leader = _node_of(leader_token)
    held: dict[str, list[int]] = {}
    for partition, holder in enumerate(leases):
        if holder:
            held.setdefault(_node_of(holder) or "", []).append(partition)
    listed = [
        {
            "id": text(node),
            "partitions": held.get(text(node), []),
            "leader": text(node) == leader,
            "expiresInS": round(max(0.0, float(score) - now_ms) / 1000, 1),
        }
        for node, score in sorted(nodes)
    ]
    depth = {p: int(queues[2 * i]) for i, p in enumerate(PRIORITIES)}
    oldest = [float(entries[0][1]) for entries in queues[1::2] if entries]
    taken = {p for ps in held.values() for p in ps}
    return {
        "nodes": listed,
        "leader": leader,
        "partitions": {
            "total": partitions,
            "unheld": [p for p in range(partitions) if p not in taken],
        },
        "queue": {
            "depth": sum(depth.values()),
            "byPriority": depth,
            "oldestWaitS": round((now_ms - min(oldest)) / 1000, 1) if oldest else None,
        },
        "alerts": [_alert(field, value) for field, value in sorted(firing.items())],
    }


def _node_of(holder: Any) -> str | None:
    if not holder:
        return None
    return text(holder).rpartition(":")[0] or None


def _alert(field: str, value: str) -> dict[str, Any]:
    """One firing alert as the alerts job keeps it (JSON), or its name alone."""
    with contextlib.suppress(orjson.JSONDecodeError):
        alert = orjson.loads(value)
        if isinstance(alert, dict):
            return {"key": field, **alert}
    return {"key": field, "message": value}


async def _agents(redis: Redis, store: Store, partitions: int) -> list[dict[str, Any]]:
    records = [r for r in await store.list_agents() if not r.revoked]
    states = await read_states(redis, [keys.agent(r.id, partitions) for r in records])
    agents = []
    for record, state in zip(records, states, strict=True):
        view = agent_view({"id": record.id, "name": record.name, **state})
        agents.append(
            {
                "id": view.id,
                "name": view.name,
                "status": view.status,
                # Connected, and answering the health check's pings in time.
                "healthy": agent_healthy(state),
                "latencyMs": view.latency,
                "running": view.load.running,
                "max": view.load.max,
                "lastHeartbeat": view.last_heartbeat,
            }
        )
    return agents


# -- text ----------------------------------------------------------------------------------


def render(status: dict[str, Any]) -> str:
    nodes, agents, queue, alerts = (
        status["nodes"],
        status["agents"],
        status["queue"],
        status["alerts"],
    )
    unheld = status["partitions"]["unheld"]
    waiting = ", ".join(f"{p} {n}" for p, n in queue["byPriority"].items())
    oldest = "" if queue["oldestWaitS"] is None else f", oldest {queue['oldestWaitS']:.0f} s"
    lines = [
        f"Nodes: {len(nodes)} live, leader {status['leader'] or 'none'}, "
        f"{status['partitions']['total']} partitions"
        + (f" ({_ranges(unheld)} held by no node)" if unheld else ""),
        *_table(["NODE", "LEADER", "PARTITIONS", "EXPIRES IN"], [_node_row(n) for n in nodes]),
        "",
        f"Agents: {len(agents)}, {sum(1 for a in agents if a['healthy'])} healthy",
        *_table(
            ["AGENT", "NAME", "STATUS", "HEALTHY", "LATENCY", "RUNNING", "LAST HEARTBEAT"],
            [_agent_row(a) for a in agents],
        ),
        "",
        f"Dispatch queue: {queue['depth']} waiting ({waiting}){oldest}",
        "",
        f"Alerts firing: {len(alerts) or 'none'}",
        *_table(
            ["RULE", "SUBJECT", "SEVERITY", "SINCE", "MESSAGE"],
            [
                [str(a.get(k) or "") for k in ("rule", "subject", "severity", "since", "message")]
                for a in alerts
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def _node_row(node: dict[str, Any]) -> list[str]:
    return [
        node["id"],
        "yes" if node["leader"] else "",
        _ranges(node["partitions"]) or "-",
        f"{node['expiresInS']:.1f} s",
    ]


def _agent_row(agent: dict[str, Any]) -> list[str]:
    latency = agent["latencyMs"]
    return [
        agent["id"],
        agent["name"],
        agent["status"],
        "yes" if agent["healthy"] else "no",
        "-" if latency is None else f"{latency:.0f} ms",
        f"{agent['running']}/{agent['max']}",
        agent["lastHeartbeat"] or "-",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; nothing at all without rows."""
    if not rows:
        return []
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _ranges(numbers: Iterable[int]) -> str:
    """`0-3,7,9-10`."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
