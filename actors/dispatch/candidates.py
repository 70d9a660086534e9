"""Which agents could take a task, and why none can (original design §6.2.1, `getAvailableAgents`).

Pure functions over snapshots: the task queue reads the agent actors' state hashes from
Redis, turns each into an `AgentSnapshot` with `AgentSnapshot.from_state`, and asks
`eligible` for the candidates. When there are none, `why_not` says why in one sentence
that a waiting task's `worker:status` message shows to its user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.views import agent_status
from orchestra.codec import parse_timestamp

__all__ = ["AgentSnapshot", "TaskNeeds", "eligible", "why_not"]


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What the dispatcher knows of one agent at one moment.

    `status` is online, busy or offline as `actors.views.agent_status` derives it;
    `capabilities` include the agent's tools (`claude`, `custom`, ...), as agents register
    them; `running` is the number of tasks the agent runs now (its load); `cpu` and `memory`
    are percentages from its last heartbeat; `connected_order` is a stable order among
    agents (the millisecond of `connectedAt`), used by round-robin and to break ties so
    that the same inputs always give the same choice.
    """

    id: str
    status: str
    capabilities: frozenset[str]
    running: int
    max_concurrency: int
    latency_ms: float | None
    cpu: float | None
    memory: float | None
    last_heartbeat_age_s: float | None
    connected_order: int

    @classmethod
    def from_state(cls, state: dict[str, Any], now_s: float) -> AgentSnapshot:
        """Build a snapshot from an agent actor's state hash (decoded JSON) at `now_s`.

        `now_s` is seconds since the epoch (`time.time()`). The parse is lenient on
        purpose: one agent with a malformed field must not stop dispatch to all the
        others, so an unreadable figure counts as unknown.
        """
        system_info = state.get("systemInfo")
        if not isinstance(system_info, dict):
            system_info = {}
        running = state.get("running")
        load = running if isinstance(running, int) else len(running or ())
        heartbeat_ms = _epoch_ms(state.get("lastHeartbeat"))
        age_s = None if heartbeat_ms is None else max(0.0, now_s - heartbeat_ms / 1000)
        connected_ms = _epoch_ms(state.get("connectedAt"))
        max_concurrency = _number(state.get("maxConcurrency"))
        return cls(
            id=str(state["id"]),
            # The stored status is only online/offline; busy is derived from the load, by
            # the same rule the views use, so the dispatcher and the console agree.
            status=agent_status(state),
            capabilities=frozenset(str(c) for c in state.get("capabilities") or ()),
            running=load,
            max_concurrency=int(max_concurrency) if max_concurrency else 1,
            latency_ms=_number(state.get("latencyMs")),
            cpu=_number(system_info.get("cpu")),
            memory=_number(system_info.get("memory")),
            last_heartbeat_age_s=age_s,
            # Agents with no connectedAt sort first; their ids still order them stably.
            connected_order=connected_ms if connected_ms is not None else 0,
        )

    @property
    def is_full(self) -> bool:
        return self.running >= self.max_concurrency

    @property
    def sort_key(self) -> tuple[int, str]:
        """Stable order among agents: by connection time, then by id."""
        return (self.connected_order, self.id)


@dataclass(frozen=True, slots=True)
class TaskNeeds:
    """What a task asks of an agent: its tool (`claude`, `qwcoder`, `custom`, ...) and any
    further capabilities (`gpu`, ...). Agents list their tools among their capabilities."""

    tool: str
    required_capabilities: frozenset[str] = frozenset()

    @property
    def all(self) -> frozenset[str]:
        """Everything an agent must offer to take the task."""
        return self.required_capabilities | {self.tool}


def eligible(
    agents: Iterable[AgentSnapshot], needs: TaskNeeds, *, max_heartbeat_age_s: float
) -> list[AgentSnapshot]:
    """The agents that can take the task now, in stable (connected) order.

    An agent qualifies when it is not offline, has a free slot, offers the tool and every
    required capability, and its last heartbeat is at most `max_heartbeat_age_s` old. An
    unknown heartbeat age counts as healthy: an agent that has just registered has not
    sent one yet, and the offline status already covers agents known to be gone.
    """
    return sorted(
        (
            agent
            for agent in agents
            if agent.status != "offline"
            and _offers(agent, needs)
            and _fresh(agent, max_heartbeat_age_s)
            and not agent.is_full
        ),
        key=lambda agent: agent.sort_key,
    )


def why_not(
    agents: Iterable[AgentSnapshot], needs: TaskNeeds, *, max_heartbeat_age_s: float
) -> str:
    """One sentence saying why no agent can take the task, for its `worker:status` message.

    The filters are explained in the order a user can act on them: is any agent online,
    does any offer what the task needs, and then are those that do silent or full.
    When some agent does qualify, the sentence says so instead.
    """
    everyone = sorted(agents, key=lambda agent: agent.sort_key)
    online = [agent for agent in everyone if agent.status != "offline"]
    if not online:
        offline = len(everyone)
        if offline:
            return f"no agent is online ({_count(offline, 'agent')} offline)"
        return "no agent is online"

    fit = [agent for agent in online if _offers(agent, needs)]
    if not fit:
        return _missing(online, everyone, needs)

    stale = [agent for agent in fit if not _fresh(agent, max_heartbeat_age_s)]
    full = [agent for agent in fit if _fresh(agent, max_heartbeat_age_s) and agent.is_full]
    free = len(fit) - len(stale) - len(full)
    if free:
        return f"{_count(free, 'agent')} can take the task"
    if not stale:
        if len(full) == 1:
            return f"the only agent that fits is full ({_loads(full)})"
        return f"all {len(full)} agents that fit are full ({_loads(full)})"
    silent = f"sent no heartbeat for {_ages(stale)}"
    if not full:
        if len(stale) == 1:
            return f"the only agent that fits has {silent}"
        return f"all {len(stale)} agents that fit have {silent}"
    return (
        f"none of the {len(fit)} agents that fit is free: {len(full)} "
        f"{'is' if len(full) == 1 else 'are'} full ({_loads(full)}), {len(stale)} "
        f"{'has' if len(stale) == 1 else 'have'} {silent}"
    )


# -- helpers ---------------------------------------------------------------------------------


def _offers(agent: AgentSnapshot, needs: TaskNeeds) -> bool:
    return needs.all <= agent.capabilities


def _fresh(agent: AgentSnapshot, max_age_s: float) -> bool:
    age = agent.last_heartbeat_age_s
    return age is None or age <= max_age_s


def _missing(
    online: Sequence[AgentSnapshot], everyone: Sequence[AgentSnapshot], needs: TaskNeeds
) -> str:
    """Why no online agent offers what the task needs: name what nobody offers at all, or,
    when each thing is offered by someone, say that nobody offers them together."""
    offered = frozenset().union(*(agent.capabilities for agent in online))
    tool_missing = needs.tool not in offered
    caps_missing = sorted(needs.required_capabilities - offered - {needs.tool})
    parts = []
    if tool_missing:
        parts.append(f"tool {needs.tool!r}")
    if caps_missing:
        parts.append(_capabilities(caps_missing))
    if parts:
        sentence = "no online agent offers " + " or ".join(parts)
    else:
        others = sorted(needs.required_capabilities - {needs.tool})
        sentence = (
            f"no online agent offers tool {needs.tool!r} together with {_capabilities(others)}"
        )
    # Point at offline agents that would fit: starting one of them is the likely fix.
    asleep = sum(agent.status == "offline" and _offers(agent, needs) for agent in everyone)
    if asleep:
        sentence += f" ({_count(asleep, 'offline agent')} {'does' if asleep == 1 else 'do'})"
    return sentence


def _capabilities(names: Sequence[str]) -> str:
    word = "capability" if len(names) == 1 else "capabilities"
    return f"{word} " + ", ".join(repr(name) for name in names)


def _loads(agents: Sequence[AgentSnapshot]) -> str:
    return ", ".join(f"{agent.running}/{agent.max_concurrency}" for agent in agents)


def _ages(agents: Sequence[AgentSnapshot]) -> str:
    return ", ".join(f"{agent.last_heartbeat_age_s or 0:.0f} s" for agent in agents)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _epoch_ms(value: Any) -> int | None:
    """Milliseconds since the epoch of an ISO-8601 timestamp; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return round(parse_timestamp(value).timestamp() * 1000)
    except ValueError:
        return None
