"""An agent's health: the leader's pings, their pongs, and the agent's `healthy` flag.

The leader's health-check job (`gateway/jobs/health.py`) tells every online agent's actor
`ping` every `agent_ping_interval_s`. The actor notes when it sent the ping, schedules a
`ping:overdue` timer `agent_pong_timeout_s` later, and, once that is committed, has the
ping emitted to the agent's room (it reaches the agent's socket on whichever node holds
it). The agent answers `pong` with the ping's timestamp; the node holding its socket
tells the actor `latency`. A pong in time marks the agent healthy and keeps its round
trip; a timer that finds its ping unanswered (or a pong that took longer) marks it
unhealthy. An agent silent for three
heartbeats goes offline as before (`gateway/agent_health.py`), and offline is unhealthy.

State fields of the agent actor (what alert rules and views read):

- `healthy`: bool; True from registration and after each pong in time, False after an
  unanswered or late one and while offline. Absent on an agent never checked:
  `actors.views.agent_healthy` (what views show) counts that as healthy while connected.
- `latencyMs`: float, the last pong's round trip in milliseconds (the ping's timestamp is
  the clock of the node that sent it, the pong's arrival that of the node holding the
  socket: nodes' clocks are assumed to agree within a few milliseconds).
- `checkedAt`: ISO time of the last pong or unanswered ping.
- `pingSentAt` / `pongFor`: ms timestamps of the last ping sent and of the newest ping a
  pong answered (a timer's ping counts as answered when `pongFor` reached it).
"""

from __future__ import annotations

import time
from typing import Any

from actors.turn import Turn
from actors.views import agent_status
from orchestra.codec import now_iso
from orchestra.metrics import AGENT_PINGS_UNANSWERED

HEALTHY = "healthy"
LATENCY_MS = "latencyMs"
CHECKED_AT = "checkedAt"
PING_SENT_AT = "pingSentAt"
PONG_FOR = "pongFor"


def ping(turn: Turn, pong_timeout_s: float) -> int | None:
    """Note a ping sent now and schedule its timeout; the ping's timestamp (ms) to emit
    once the turn commits, or None when the agent is offline (nobody to ping)."""
    if agent_status(turn.state) == "offline":
        return None
    sent_ms = int(time.time() * 1000)
    turn.set(**{PING_SENT_AT: sent_ms})
    turn.schedule(
        pong_timeout_s, "ping:overdue", {"sentAt": sent_ms, "socketId": turn.state.get("socketId")}
    )
    return sent_ms


def pong(turn: Turn, pong_timeout_s: float) -> bool:
    """A pong came (`latencyMs`, and `sentAt`: the ping's timestamp): healthy if it came
    in time. True when that changes the agent's health (its owner's consoles hear of it)."""
    body = turn.message.body
    if not turn.exists or agent_status(turn.state) == "offline":
        return False
    latency_ms = float(body["latencyMs"])
    healthy = latency_ms <= pong_timeout_s * 1000
    changes: dict[str, Any] = {LATENCY_MS: latency_ms, CHECKED_AT: now_iso(), HEALTHY: healthy}
    sent = body.get("sentAt")
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        # A timestamp from the future (a confused agent) answers no ping not yet sent.
        answered = min(int(sent), int(time.time() * 1000))
        changes[PONG_FOR] = max(answered, int(turn.state.get(PONG_FOR) or 0))
    was_healthy = turn.state.get(HEALTHY) is not False
    turn.set(**changes)
    return healthy != was_healthy


def overdue(turn: Turn) -> bool:
    """A ping's timeout: unhealthy if no pong answered that ping (or a later one) on the
    same connection. True when the agent was healthy until now."""
    body = turn.message.body
    state = turn.state
    if agent_status(state) == "offline" or state.get("socketId") != body.get("socketId"):
        return False  # gone (offline covers it), or a ping of an earlier connection
    if int(state.get(PONG_FOR) or 0) >= int(body["sentAt"]):
        return False
    was_healthy = state.get(HEALTHY) is not False
    turn.set(**{HEALTHY: False, CHECKED_AT: now_iso()})

    async def count(_: Any) -> None:
        AGENT_PINGS_UNANSWERED.inc()

    turn.after_commit(count)
    return was_healthy
