"""The dispatcher's selection logic (original design §6.2.1): eligibility, the reasons a task
waits, and the five load-balancing strategies, over agents with known load, latency and
resources."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.dispatch import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    AgentSnapshot,
    TaskNeeds,
    eligible,
    resource_score,
    strategy,
    why_not,
)
from orchestra.errors import InvalidParameters

MAX_AGE = 30.0
CLAUDE = TaskNeeds(tool="claude", required_capabilities=frozenset())


def agent(
    id: str,
    *,
    status: str = "online",
    capabilities: tuple[str, ...] = ("claude", "custom"),
    running: int = 0,
    max_concurrency: int = 4,
    latency_ms: float | None = None,
    cpu: float | None = None,
    memory: float | None = None,
    age: float | None = 1.0,
    order: int = 0,
) -> AgentSnapshot:
    return AgentSnapshot(
        id=id,
        status=status,
        capabilities=frozenset(capabilities),
        running=running,
        max_concurrency=max_concurrency,
        latency_ms=latency_ms,
        cpu=cpu,
        memory=memory,
        last_heartbeat_age_s=age,
        connected_order=order,
    )


def choose(name: str, agents: list[AgentSnapshot], cursor: int = 0, seed: int = 0) -> str:
    return strategy(name).choose(agents, cursor=cursor, rng=random.Random(seed)).id


# -- from_state ------------------------------------------------------------------------------


def realistic_state() -> dict[str, Any]:
    """An agent actor's state hash as the gateway reads it back (decoded JSON)."""
    return {
        "id": "a-7f3c",
        "ownerId": "u-1",
        "name": "build-box",
        "status": "online",
        "capabilities": ["claude", "custom", "gpu"],
        "version": "0.1.0",
        "metadata": {},
        "maxConcurrency": 4,
        "socketId": "s-1",
        "node": "n-1",
        "connectedAt": "2026-11-25T11:40:00.250Z",
        "lastHeartbeat": "2026-11-25T11:46:32.718Z",
        "running": ["t-1", "t-2"],
        "latencyMs": 12.5,
        "systemInfo": {"cpu": 37.5, "memory": 61.0, "disk": 80.2},
    }


def test_from_state_parses_a_realistic_state() -> None:
    now = datetime(2026, 11, 25, 11, 46, 42, 718000, tzinfo=UTC).timestamp()
    snap = AgentSnapshot.from_state(realistic_state(), now)
    assert snap.id == "a-7f3c"
    assert snap.status == "online"
    assert snap.capabilities == frozenset({"claude", "custom", "gpu"})
    assert snap.running == 2
    assert snap.max_concurrency == 4
    assert snap.latency_ms == 12.5
    assert (snap.cpu, snap.memory) == (37.5, 61.0)
    assert snap.last_heartbeat_age_s == pytest.approx(10.0)
    expected_order = datetime(2026, 11, 25, 11, 40, 0, 250000, tzinfo=UTC).timestamp() * 1000
    assert snap.connected_order == round(expected_order)


def test_from_state_derives_busy_and_offline() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()
    full = {**realistic_state(), "running": ["t-1", "t-2", "t-3", "t-4"]}
    assert AgentSnapshot.from_state(full, now).status == "busy"
    gone = {**realistic_state(), "status": "offline"}
    assert AgentSnapshot.from_state(gone, now).status == "offline"


def test_from_state_counts_missing_figures_as_unknown() -> None:
    # A freshly registered agent: no heartbeat figures, no latency, no running list yet.
    state = {"id": "a-new", "status": "online", "capabilities": None, "systemInfo": None}
    snap = AgentSnapshot.from_state(state, 1_000.0)
    assert snap.capabilities == frozenset()
    assert (snap.running, snap.max_concurrency) == (0, 1)
    assert (snap.latency_ms, snap.cpu, snap.memory) == (None, None, None)
    assert snap.last_heartbeat_age_s is None
    assert snap.connected_order == 0


def test_from_state_tolerates_a_malformed_timestamp_and_clock_skew() -> None:
    future = "2026-11-25T11:46:40.000Z"
    now = datetime(2026, 11, 25, 11, 46, 30, tzinfo=UTC).timestamp()
    state = {**realistic_state(), "lastHeartbeat": future, "connectedAt": "yesterday-ish"}
    snap = AgentSnapshot.from_state(state, now)
    assert snap.last_heartbeat_age_s == 0.0  # another node's clock ahead: not negative
    assert snap.connected_order == 0


# -- eligibility -----------------------------------------------------------------------------


def test_eligible_filters_by_tool_capability_fullness_offline_and_heartbeat() -> None:
    agents = [
        agent("ok", order=1),
        agent("no-tool", capabilities=("custom",), order=2),
        agent("full", running=4, max_concurrency=4, order=3),
        agent("off", status="offline", order=4),
        agent("stale", age=31.0, order=5),
        agent("unknown-age", age=None, order=6),
        agent("edge-age", age=MAX_AGE, order=7),
    ]
    ids = [a.id for a in eligible(agents, CLAUDE, max_heartbeat_age_s=MAX_AGE)]
    assert ids == ["ok", "unknown-age", "edge-age"]


def test_eligible_requires_every_capability() -> None:
    needs = TaskNeeds("claude", frozenset({"gpu", "linux"}))
    agents = [
        agent("gpu-only", capabilities=("claude", "gpu")),
        agent("both", capabilities=("claude", "gpu", "linux")),
        agent("no-tool", capabilities=("gpu", "linux")),
    ]
    assert [a.id for a in eligible(agents, needs, max_heartbeat_age_s=MAX_AGE)] == ["both"]


def test_eligible_returns_connected_order() -> None:
    agents = [agent("c", order=30), agent("a", order=10), agent("b", order=20)]
    assert [a.id for a in eligible(agents, CLAUDE, max_heartbeat_age_s=MAX_AGE)] == [
        "a",
        "b",
        "c",
    ]


# -- why_not ---------------------------------------------------------------------------------


def reason(agents: list[AgentSnapshot], needs: TaskNeeds = CLAUDE) -> str:
    assert eligible(agents, needs, max_heartbeat_age_s=MAX_AGE) == []
    return why_not(agents, needs, max_heartbeat_age_s=MAX_AGE)


def test_why_not_no_agent_at_all_or_all_offline() -> None:
    assert reason([]) == "no agent is online"
    offline = [agent("a", status="offline"), agent("b", status="offline")]
    assert reason(offline) == "no agent is online (2 agents offline)"


def test_why_not_missing_capability() -> None:
    needs = TaskNeeds("claude", frozenset({"gpu"}))
    assert reason([agent("a")], needs) == "no online agent offers capability 'gpu'"


def test_why_not_missing_tool_and_capabilities() -> None:
    needs = TaskNeeds("qwcoder", frozenset({"gpu", "arm64"}))
    assert (
        reason([agent("a")], needs)
        == "no online agent offers tool 'qwcoder' or capabilities 'arm64', 'gpu'"
    )


def test_why_not_capabilities_spread_over_agents() -> None:
    needs = TaskNeeds("claude", frozenset({"gpu"}))
    agents = [agent("a", capabilities=("claude",)), agent("b", capabilities=("custom", "gpu"))]
    assert reason(agents, needs) == (
        "no online agent offers tool 'claude' together with capability 'gpu'"
    )


def test_why_not_points_at_an_offline_agent_that_would_fit() -> None:
    needs = TaskNeeds("claude", frozenset({"gpu"}))
    agents = [agent("a"), agent("gpu-box", status="offline", capabilities=("claude", "gpu"))]
    assert reason(agents, needs) == "no online agent offers capability 'gpu' (1 offline agent does)"


def test_why_not_all_full() -> None:
    agents = [
        agent("a", running=4, max_concurrency=4, order=1),
        agent("b", running=2, max_concurrency=2, order=2),
        agent("other", capabilities=("custom",), order=3),
    ]
    assert reason(agents) == "all 2 agents that fit are full (4/4, 2/2)"
    assert reason(agents[:1]) == "the only agent that fits is full (4/4)"


def test_why_not_stale_heartbeats() -> None:
    assert (
        reason([agent("a", age=45.2)]) == "the only agent that fits has sent no heartbeat for 45 s"
    )
    agents = [agent("a", age=45.0, order=1), agent("b", age=61.0, order=2)]
    assert reason(agents) == "all 2 agents that fit have sent no heartbeat for 45 s, 61 s"


def test_why_not_some_full_some_stale() -> None:
    agents = [
        agent("a", running=4, max_concurrency=4, order=1),
        agent("b", running=2, max_concurrency=2, order=2),
        agent("c", age=90.0, order=3),
    ]
    assert reason(agents) == (
        "none of the 3 agents that fit is free: 2 are full (4/4, 2/2), "
        "1 has sent no heartbeat for 90 s"
    )


def test_why_not_when_an_agent_does_fit() -> None:
    sentence = why_not([agent("a"), agent("b")], CLAUDE, max_heartbeat_age_s=MAX_AGE)
    assert sentence == "2 agents can take the task"


# -- strategies ------------------------------------------------------------------------------


def test_registry_and_default() -> None:
    assert set(STRATEGIES) == {
        "round-robin",
        "least-connections",
        "lowest-latency",
        "resource-based",
        "random",
    }
    assert all(s.name == name for name, s in STRATEGIES.items())
    assert DEFAULT_STRATEGY == "least-connections"
    assert strategy(None).name == DEFAULT_STRATEGY
    assert strategy("").name == DEFAULT_STRATEGY
    assert strategy("lowest-latency") is STRATEGIES["lowest-latency"]


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(InvalidParameters) as caught:
        strategy("fastest")
    assert "'fastest'" in caught.value.message
    for name in STRATEGIES:
        assert name in caught.value.message
    assert caught.value.code == "PARAM_001"
    assert caught.value.details == {"strategy": "fastest", "known": sorted(STRATEGIES)}


def test_round_robin_cycles_in_connected_order() -> None:
    agents = [agent("c", order=300), agent("a", order=100), agent("b", order=200)]
    picks = [choose("round-robin", agents, cursor=cursor) for cursor in range(7)]
    assert picks == ["a", "b", "c", "a", "b", "c", "a"]
    # The order the caller read the agents in does not matter.
    assert choose("round-robin", list(reversed(agents)), cursor=1) == "b"


def test_least_connections_picks_fewest_running() -> None:
    agents = [
        agent("busy", running=3, order=1),
        agent("light", running=1, order=2),
        agent("medium", running=2, order=3),
    ]
    assert choose("least-connections", agents) == "light"


def test_least_connections_breaks_ties_by_ratio_then_order() -> None:
    small = agent("small", running=2, max_concurrency=4, order=1)
    large = agent("large", running=2, max_concurrency=8, order=2)
    assert choose("least-connections", [small, large]) == "large"
    first = agent("first", running=1, order=1)
    second = agent("second", running=1, order=2)
    assert choose("least-connections", [second, first]) == "first"


def test_lowest_latency_prefers_measured_then_fewer_running() -> None:
    agents = [
        agent("unmeasured", latency_ms=None, running=0, order=1),
        agent("slow", latency_ms=120.0, order=2),
        agent("fast-busy", latency_ms=8.0, running=3, order=3),
        agent("fast-idle", latency_ms=8.0, running=1, order=4),
    ]
    assert choose("lowest-latency", agents) == "fast-idle"
    assert choose("lowest-latency", agents[:2]) == "slow"  # unknown latency comes last
    unknown = [agent("x", running=2, order=1), agent("y", running=1, order=2)]
    assert choose("lowest-latency", unknown) == "y"


def test_resource_score_formula() -> None:
    # 0.5 * cpu + 0.5 * memory + 0.5 * running/max * 100
    assert resource_score(agent("a", cpu=40.0, memory=60.0, running=1, max_concurrency=4)) == (
        20.0 + 30.0 + 12.5
    )
    assert resource_score(agent("b", cpu=None, memory=None)) == 50.0  # unknown counts as 50%


def test_resource_based_picks_the_least_loaded_machine() -> None:
    agents = [
        agent("hot", cpu=90.0, memory=80.0, order=1),
        agent("cool", cpu=10.0, memory=20.0, order=2),
        agent("unknown", order=3),
    ]
    assert choose("resource-based", agents) == "cool"
    # The load term: an idle machine full of Orchestra's own tasks loses to a quieter one.
    crowded = agent("crowded", cpu=10.0, memory=20.0, running=3, max_concurrency=4, order=1)
    quiet = agent("quiet", cpu=30.0, memory=30.0, running=0, order=2)
    assert choose("resource-based", [crowded, quiet]) == "quiet"
    # Unknown figures (50%) beat a machine known to be busier.
    assert choose("resource-based", agents[:1] + agents[2:]) == "unknown"


def test_random_picks_only_candidates_and_is_reproducible() -> None:
    agents = [agent(f"a{i}", order=i) for i in range(5)]
    candidates = eligible(
        [*agents, agent("full", running=4, order=9)], CLAUDE, max_heartbeat_age_s=MAX_AGE
    )
    picks = [choose("random", candidates, seed=seed) for seed in range(200)]
    assert set(picks) == {a.id for a in agents}  # every candidate, and only candidates
    assert picks == [choose("random", candidates, seed=seed) for seed in range(200)]
    shuffled = list(reversed(candidates))
    assert picks == [choose("random", shuffled, seed=seed) for seed in range(200)]
    assert max(Counter(picks).values()) < 80  # roughly uniform, not stuck on one agent


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_refuses_an_empty_candidate_list(name: str) -> None:
    with pytest.raises(ValueError, match="eligible"):
        strategy(name).choose([], cursor=0, rng=random.Random(0))


# -- properties ------------------------------------------------------------------------------

loads = st.lists(
    st.tuples(st.integers(0, 7), st.integers(8, 16), st.integers(0, 1_000)),
    min_size=1,
    max_size=12,
)


@given(loads)
def test_least_connections_never_picks_a_busier_agent(rows: list[tuple[int, int, int]]) -> None:
    agents = [
        agent(f"a{i}", running=running, max_concurrency=size, order=order)
        for i, (running, size, order) in enumerate(rows)
    ]
    chosen = strategy("least-connections").choose(agents, cursor=0, rng=random.Random(0))
    assert all(chosen.running <= other.running for other in agents)


@given(loads, st.integers(-50, 50), st.integers(0, 2**32))
def test_every_strategy_picks_one_of_the_candidates(
    rows: list[tuple[int, int, int]], cursor: int, seed: int
) -> None:
    agents = [
        agent(f"a{i}", running=running, max_concurrency=size, order=order, cpu=float(order % 100))
        for i, (running, size, order) in enumerate(rows)
    ]
    for chooser in STRATEGIES.values():
        assert chooser.choose(agents, cursor=cursor, rng=random.Random(seed)) in agents
