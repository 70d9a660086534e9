"""The one place that builds Redis key names (DESIGN.md §3).

Keys of one session share the hash tag `{s:<sid>}` so that one Lua script may touch the
session hash, its event stream and its tasks, also on Redis Cluster.
"""

from __future__ import annotations

PREFIX = "orch"


def session(sid: str) -> str:
    return f"{PREFIX}:{{s:{sid}}}"


def session_events(sid: str) -> str:
    return f"{PREFIX}:{{s:{sid}}}:events"


def session_events_pattern() -> str:
    """SCAN pattern matching every session's event stream (Redis globs leave braces alone)."""
    return f"{PREFIX}:{{s:*}}:events"


def session_of_events(key: str) -> str | None:
    """The session id of a key built by `session_events`; None for any other key."""
    head, tail = f"{PREFIX}:{{s:", "}:events"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    sid = key[len(head) : -len(tail)]
    return sid if sid and "}" not in sid else None


def task(sid: str, tid: str) -> str:
    return f"{PREFIX}:{{s:{sid}}}:task:{tid}"


def task_index() -> str:
    """Hash taskId -> sessionId: a task's keys live under its session's hash tag."""
    return f"{PREFIX}:tasks"


def agent(aid: str) -> str:
    return f"{PREFIX}:{{a:{aid}}}"


def agent_outbox(aid: str) -> str:
    return f"{PREFIX}:{{a:{aid}}}:outbox"


def agent_tasks(aid: str) -> str:
    """Set of the task ids an agent is running or about to run."""
    return f"{PREFIX}:{{a:{aid}}}:tasks"


def agents_online() -> str:
    return f"{PREFIX}:agents:online"


def actor_state(address: str) -> str:
    """State hash of an actor that has no session-tagged home (see `actors.addresses`)."""
    return f"{PREFIX}:actor:{address}"


def mailbox(partition: int) -> str:
    return f"{PREFIX}:mbox:{partition}"


def lease(partition: int) -> str:
    return f"{PREFIX}:lease:{partition}"


def lease_fence(partition: int) -> str:
    """Counter of fencing tokens handed out for a partition: each new holder gets a higher one."""
    return f"{PREFIX}:lease:{partition}:fence"


def lease_released(partition: int) -> str:
    """Set when a partition's holder released its lease, until the next holder takes it:
    a lease taken without it had expired (a takeover, counted in the metrics)."""
    return f"{PREFIX}:lease:{partition}:released"


def commit_memo(mailbox_key: str, entry_id: str) -> str:
    """A turn commit's holder and answer, kept a minute under the first mailbox entry it
    acknowledged, so that the call sent again commits once (`actors/lua/turn_commit.lua`)."""
    return f"{mailbox_key}:commit:{entry_id}"


def timers(partition: int) -> str:
    return f"{PREFIX}:timers:{partition}"


def replies(inbox: str) -> str:
    """List of the answers to one node's `ask`s, each naming its request (expires): the
    node reads it with one blocking pop for all its waiting asks (`actors/replies.py`)."""
    return f"{PREFIX}:replies:{inbox}"


def nodes() -> str:
    return f"{PREFIX}:nodes"


# -- patterns of the cleanup jobs (`gateway/jobs/cleanup.py`) ------------------------------


def replies_pattern() -> str:
    """SCAN pattern matching every node's ask reply list (`replies`)."""
    return f"{PREFIX}:replies:*"


def inbox_of_replies(key: str) -> str | None:
    """The inbox name of a key built by `replies`; None for any other key."""
    head = f"{PREFIX}:replies:"
    return key[len(head) :] if key.startswith(head) and len(key) > len(head) else None


def node_socket_slots_pattern() -> str:
    """SCAN pattern matching every node's `node_socket_slots` index."""
    return f"{PREFIX}:sockets-of-node:*"


def node_of_socket_slots(key: str) -> str | None:
    """The node id of a key built by `node_socket_slots`; None for any other key."""
    head = f"{PREFIX}:sockets-of-node:"
    return key[len(head) :] if key.startswith(head) and len(key) > len(head) else None


def leader() -> str:
    """The scheduler's leader lease: the node holding it runs the cluster-wide jobs."""
    return f"{PREFIX}:leader"


def nonce(agent_id: str, nonce_value: str) -> str:
    """Marks an agent handshake nonce as used for the clock-skew window."""
    return f"{PREFIX}:nonce:{agent_id}:{nonce_value}"


def dispatch_queue(priority: str) -> str:
    """Sorted set of waiting tasks (`<sid>/<tid>`) of one priority, scored by arrival."""
    return f"{PREFIX}:queue:{priority}"


def socketio_channel() -> str:
    """Pub/sub channel of python-socketio's Redis manager."""
    return f"{PREFIX}:socketio"


def rate_limit(who: str, window: int) -> str:
    """Request counter of one user (or address) in one rate-limit window (expires)."""
    return f"{PREFIX}:rate:{who}:{window}"


def login_failures(who: str, window: int) -> str:
    """Failed logins of one account (`account:<hash>`) or address (`ip:<addr>`) in one
    window of `login_failure_window_s` (expires)."""
    return f"{PREFIX}:login-failures:{who}:{window}"


def socket_slots(kind: str, owner: str) -> str:
    """Sorted set of the open sockets of one user (`kind` user) or agent (`kind` agent)
    across all nodes: members `<node>:<sid>`, scored by their expiry in ms (expires)."""
    return f"{PREFIX}:sockets:{kind}:{owner}"


def node_socket_slots(node_id: str) -> str:
    """Set of the `socket_slots` keys one node holds members in, so that the node, started
    again under the same id, can free what it held before (expires)."""
    return f"{PREFIX}:sockets-of-node:{node_id}"


def webhook_events() -> str:
    """Stream of notifications to deliver (capped), read by every node in one consumer
    group per kind of delivery (`gateway.notify_consumer`): webhooks, Web Push."""
    return f"{PREFIX}:webhooks:events"


def notification_delivered(group: str, entry_id: str) -> str:
    """Set of the targets (webhook ids, push subscription ids) one consumer group has
    delivered an entry of the notifications stream to (expires): a node that takes the
    entry over skips them."""
    return f"{PREFIX}:{group}:delivered:{entry_id}"


def credential_versions() -> str:
    """Hash `user:<id>` / `agent:<id>` -> credential version: raised to revoke everything
    issued under an older one (`gateway.revocation`)."""
    return f"{PREFIX}:auth:versions"


def revoked_families() -> str:
    """Sorted set of revoked token families, scored by when their last token expires."""
    return f"{PREFIX}:auth:revoked-families"


def revocations_channel() -> str:
    """Pub/sub channel announcing each revocation to every node."""
    return f"{PREFIX}:auth:revocations"


# -- alerts (`gateway.alerts`): one hash tag, so that one script touches all three ---------


def alerts_firing() -> str:
    """Hash of the alerts firing now: field `<rule>:<subject>`, value JSON
    `{id, rule, subject, severity, message, since, details}` (`orchestra status` reads it)."""
    return f"{PREFIX}:{{alerts}}:firing"


def alerts_fired_at() -> str:
    """Hash `<rule>:<subject>` -> when it last fired (ms): its cool-down runs from there."""
    return f"{PREFIX}:{{alerts}}:fired-at"


def alert_events() -> str:
    """Stream of alert events (firing, resolved) to deliver (capped): to SQL and the alert
    webhooks, by every node in one consumer group (`gateway.alerts.delivery`)."""
    return f"{PREFIX}:{{alerts}}:events"


def alert_requests(bucket: int) -> str:
    """Hash {ok, error}: socket requests answered across the cluster in one time bucket
    (expires), for the error-rate rule."""
    return f"{PREFIX}:alerts:requests:{bucket}"
