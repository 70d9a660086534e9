"""Every metric Orchestra exports, by name, in one place (prometheus-client).

Each gateway node serves its own at `GET /metrics`; Prometheus scrapes every node and sums.
So a node counts only what it did itself (events its sockets took and sent, turns its
actors ran, requests it answered), and a figure of the whole cluster (tasks by status,
the dispatch queue's depth, the archive's lag) is exported by the leader alone: nothing
is counted twice across nodes. The deployment's Grafana dashboard
(`deploy/grafana/orchestra.json`) uses these names; CI checks that it uses no other.

Units are in the names (`_seconds`, `_bytes`), counters end in `_total`, as Prometheus
asks. Labels take values from small fixed sets (event names, error codes, statuses,
actor kinds), never ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Round trips on a local network and in-process work: 0.5 ms to 10 s.
FAST_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Waits that may last minutes (a task in the dispatch queue).
SLOW_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# -- sockets -------------------------------------------------------------------------------

CONNECTIONS = Gauge(
    "orchestra_connections", "Sockets connected to this node, by namespace.", ["namespace"]
)
EVENTS_IN = Counter(
    "orchestra_events_received_total",
    "Socket events this node received, by namespace and event name.",
    ["namespace", "event"],
)
EVENTS_OUT = Counter(
    "orchestra_events_sent_total",
    "Socket events this node sent, by namespace and event name (a batch frame counts once).",
    ["namespace", "event"],
)
ERRORS = Counter(
    "orchestra_errors_total",
    "Error answers this node gave (socket acks and REST), by PROTOCOL.md error code.",
    ["code"],
)
EVENT_LATENCY = Histogram(
    "orchestra_event_duration_seconds",
    "Time from a socket request's arrival to its ack, by namespace and event name.",
    ["namespace", "event"],
    buckets=FAST_S,
)
HTTP_LATENCY = Histogram(
    "orchestra_http_request_duration_seconds",
    "Time to answer a REST request, by method, route pattern and status class (2xx, 4xx, 5xx).",
    ["method", "route", "status"],
    buckets=FAST_S,
)
OUTPUT_LATENCY = Histogram(
    "orchestra_output_latency_seconds",
    "From a worker's output line (its agent's timestamp) to its emission to watchers.",
    buckets=FAST_S,
)

# -- agents --------------------------------------------------------------------------------

AGENT_PING = Histogram(
    "orchestra_agent_ping_seconds",
    "Round trip of the health check's ping to an agent and its pong.",
    buckets=FAST_S,
)
AGENT_PINGS_UNANSWERED = Counter(
    "orchestra_agent_pings_unanswered_total",
    "Health-check pings with no pong in time (the agent is then marked unhealthy).",
)

# -- tasks and dispatch (cluster-wide: the leader exports them) --------------------------

TASKS = Gauge("orchestra_tasks", "Tasks by status, across the cluster (leader only).", ["status"])
QUEUE_DEPTH = Gauge(
    "orchestra_dispatch_queue_depth",
    "Tasks waiting for an agent, across the cluster (leader only).",
)
QUEUE_WAIT = Histogram(
    "orchestra_dispatch_wait_seconds",
    "From a task's creation to its assignment to an agent (on the node that assigned it).",
    buckets=SLOW_S,
)

# -- actors --------------------------------------------------------------------------------

ACTOR_TURNS = Counter(
    "orchestra_actor_turns_total", "Actor turns this node ran, by actor kind.", ["kind"]
)
ACTOR_TURN_SECONDS = Histogram(
    "orchestra_actor_turn_duration_seconds",
    "Time of one actor turn, from taking its message to its commit, by actor kind.",
    ["kind"],
    buckets=FAST_S,
)
MAILBOX_DEPTH = Gauge(
    "orchestra_mailbox_depth",
    "Messages waiting in the mailboxes of the partitions this node holds.",
)
PARTITIONS_HELD = Gauge("orchestra_partitions_held", "Actor partitions this node holds.")
LEASE_TAKEOVERS = Counter(
    "orchestra_lease_takeovers_total",
    "Partitions this node took over from a node whose lease had expired.",
)

# -- streams and the archive ---------------------------------------------------------------

STREAM_TRIMS = Counter(
    "orchestra_stream_trims_total", "Session streams trimmed by this node's actors."
)
STREAM_TRIMMED_EVENTS = Counter(
    "orchestra_stream_trimmed_events_total",
    "Events removed from session streams by this node's actors (archived first).",
)
ARCHIVE_LAG = Gauge(
    "orchestra_archive_lag_events",
    "Events held in session streams beyond their cap, not yet archived (leader only).",
)

# -- stores --------------------------------------------------------------------------------

REDIS_ROUND_TRIP = Histogram(
    "orchestra_redis_round_trip_seconds", "Redis PING round trips from this node.", buckets=FAST_S
)
SQL_ROUND_TRIP = Histogram(
    "orchestra_sql_round_trip_seconds", "SQL `SELECT 1` round trips from this node.", buckets=FAST_S
)
REDIS_WAIT_TIMEOUTS = Counter(
    "orchestra_redis_wait_timeouts_total",
    "Redis WAITs that timed out before the replicas asked for had the write (not an error).",
)

# -- alerts (the leader evaluates the rules) ----------------------------------------------

ALERTS_FIRING = Gauge(
    "orchestra_alerts_firing", "Alert rules firing now (leader only), by rule.", ["rule"]
)

#: The families of the cluster's figures: a node exports them only while it leads
#: (`GET /metrics`, `gateway/rest/metrics.py`).
CLUSTER_WIDE = frozenset(
    {"orchestra_tasks", "orchestra_dispatch_queue_depth", "orchestra_archive_lag_events"}
)
LEADER_ONLY = CLUSTER_WIDE | {"orchestra_alerts_firing"}
