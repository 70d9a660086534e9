"""How to pick one agent among those that can take a task (original design §6.2.1).

Five strategies, named as in the original design: `round-robin`, `least-connections`
(the default), `lowest-latency`, `resource-based` and `random`. Each is a pure function
of the candidates, a round-robin cursor and a random source, so a choice can be
reproduced in a test and the caller keeps all state (the cursor lives in Redis, shared
by the gateway nodes). Every strategy breaks its ties by the agents' stable order
(`AgentSnapshot.sort_key`), so the same inputs give the same agent on every node.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from actors.dispatch.candidates import AgentSnapshot
from orchestra.errors import InvalidParameters

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "LeastConnections",
    "LowestLatency",
    "Random",
    "ResourceBased",
    "RoundRobin",
    "Strategy",
    "resource_score",
    "strategy",
]

#: The figure that stands in for an unknown cpu or memory percentage: neither a bonus for
#: an agent that reports nothing nor a penalty for one whose heartbeat is still to come.
UNKNOWN_PERCENT = 50.0


class Strategy(Protocol):
    """Picks one agent among eligible candidates."""

    @property
    def name(self) -> str:
        """The name a task or the settings select the strategy by."""
        ...

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        """The chosen agent. `candidates` is non-empty and already filtered by `eligible`;
        `cursor` is the caller's round-robin counter; `rng` is the random source."""
        ...


class RoundRobin:
    """Each agent in turn: the candidate at `cursor` modulo their number, in connected order.

    The caller advances the cursor after each choice. Ordering by `connected_order` (not by
    the order the caller happened to read the agents in) is what makes successive cursors
    walk through the agents one after another.
    """

    name = "round-robin"

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        ordered = _ordered(candidates)
        return ordered[cursor % len(ordered)]


class LeastConnections:
    """The agent running the fewest tasks.

    Ties go to the agent with the most room relative to its size (lower running/max: of two
    agents running 2 tasks, the one with 8 slots beats the one with 4), then to the earlier
    connected one.
    """

    name = "least-connections"

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        _require(candidates)
        return min(candidates, key=lambda a: (a.running, _load(a), a.sort_key))


class LowestLatency:
    """The agent with the lowest measured ping latency; agents not measured yet come last.

    Ties (equal or all unknown latency) go to the agent running fewer tasks, then to the
    earlier connected one.
    """

    name = "lowest-latency"

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        _require(candidates)
        return min(
            candidates,
            key=lambda a: (
                a.latency_ms is None,
                a.latency_ms if a.latency_ms is not None else 0.0,
                a.running,
                a.sort_key,
            ),
        )


def resource_score(agent: AgentSnapshot) -> float:
    """How busy an agent's machine is, lower is better; the resource-based strategy's key.

        score = 0.5 * cpu% + 0.5 * memory% + 0.5 * (running / maxConcurrency * 100)

    The first two terms (0..100) weigh the machine as its last heartbeat reported it; the
    load term (0..50) counts the tasks Orchestra itself placed there, which heartbeats
    reflect only seconds later, so that a burst of tasks does not all land on the machine
    that looked idlest a moment ago. An unknown cpu or memory figure counts as 50%.
    """
    cpu = agent.cpu if agent.cpu is not None else UNKNOWN_PERCENT
    memory = agent.memory if agent.memory is not None else UNKNOWN_PERCENT
    return 0.5 * cpu + 0.5 * memory + 0.5 * _load(agent) * 100


class ResourceBased:
    """The agent with the lowest `resource_score`; ties go to fewer running tasks, then to
    the earlier connected agent."""

    name = "resource-based"

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        _require(candidates)
        return min(candidates, key=lambda a: (resource_score(a), a.running, a.sort_key))


class Random:
    """Any candidate, uniformly, drawn from `rng`.

    The candidates are put in connected order first, so a seeded `rng` picks the same agent
    whatever order the caller read them in.
    """

    name = "random"

    def choose(
        self, candidates: Sequence[AgentSnapshot], *, cursor: int, rng: random.Random
    ) -> AgentSnapshot:
        return rng.choice(_ordered(candidates))


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (RoundRobin(), LeastConnections(), LowestLatency(), ResourceBased(), Random())
}

#: Spreads tasks by what agents are actually running, which needs no figures an agent may
#: not have reported yet (latency, cpu): the safest choice when nothing is configured.
DEFAULT_STRATEGY = "least-connections"


def strategy(name: str | None) -> Strategy:
    """The strategy called `name`; the default one for None or an empty name.

    Raises `InvalidParameters` for an unknown name, listing the known ones, so that a typo
    in a task or in the settings is reported rather than silently balanced some other way.
    """
    if not name:
        return STRATEGIES[DEFAULT_STRATEGY]
    try:
        return STRATEGIES[name]
    except KeyError:
        known = sorted(STRATEGIES)
        raise InvalidParameters(
            f"unknown load-balancing strategy {name!r}; known: {', '.join(known)}",
            {"strategy": name, "known": known},
        ) from None


# -- helpers ---------------------------------------------------------------------------------


def _require(candidates: Sequence[AgentSnapshot]) -> None:
    # The caller must ask `eligible` first and wait when it is empty; choosing from nothing
    # is a bug in the caller, reported plainly rather than as min()'s "empty sequence".
    if not candidates:
        raise ValueError("no candidates to choose from; filter with eligible() first")


def _ordered(candidates: Sequence[AgentSnapshot]) -> list[AgentSnapshot]:
    _require(candidates)
    return sorted(candidates, key=lambda a: a.sort_key)


def _load(agent: AgentSnapshot) -> float:
    """Fraction of the agent's slots in use (a max of 0 is treated as 1, never a division)."""
    return agent.running / max(agent.max_concurrency, 1)
