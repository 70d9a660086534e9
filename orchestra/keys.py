"""The one place that builds Redis key names (DESIGN.md §3, docs/redis-cluster.md).

Every key a partition's turns write carries the partition's hash tag `{p:N:k}`
(`orchestra.placement`): its mailbox, lease, timers and outgoing stream, the state of its
actors, the event streams of the sessions that live there with their tasks, the outboxes
of the agents that live there. So a turn's commit is one script call in one slot, on one
Redis and on Redis Cluster alike. A key of a partition's thing needs the partition count
(`settings.partitions`), the same on every node.
"""

from __future__ import annotations

from orchestra.placement import DISPATCHER_ADDRESS, partition_of, partition_tag

PREFIX = "orch"
LAYOUT = "2"  # the version of this layout, kept in `keyspace()`


def keyspace() -> str:
    """The version of the key layout the data in this Redis was written in."""
    return f"{PREFIX}:keyspace"


# -- a partition's own keys ----------------------------------------------------------------


def partition_prefix(partition: int, partitions: int) -> str:
    return f"{PREFIX}:{{{partition_tag(partition, partitions)}}}"


def of_address(address: str, partitions: int) -> str:
    """The key prefix of the partition an actor address lives in."""
    return partition_prefix(partition_of(address, partitions), partitions)


def mailbox(partition: int, partitions: int) -> str:
    return f"{partition_prefix(partition, partitions)}:mbox"


def lease(partition: int, partitions: int) -> str:
    return f"{partition_prefix(partition, partitions)}:lease"


def lease_fence(partition: int, partitions: int) -> str:
    """Counter of fencing tokens handed out for a partition: each new holder gets a higher one."""
    return f"{partition_prefix(partition, partitions)}:lease:fence"


def lease_released(partition: int, partitions: int) -> str:
    """Set when a partition's holder released its lease, until the next holder takes it:
    a lease taken without it had expired (a takeover, counted in the metrics)."""
    return f"{partition_prefix(partition, partitions)}:lease:released"


def lease_taken(partition: int, partitions: int) -> str:
    """What the last acquire of a partition's lease took, as long as that lease lives: a
    retried acquire finds its own (`actors/lua/lease_acquire.lua`)."""
    return f"{partition_prefix(partition, partitions)}:lease:taken"


def timers(partition: int, partitions: int) -> str:
    return f"{partition_prefix(partition, partitions)}:timers"


def outgoing(partition: int, partitions: int) -> str:
    """The partition's outgoing stream: what its turns send out of its slot (mail to other
    partitions, agent commands, replies, notifications), written in the turn's commit and
    moved on by the partition's holder (`actors/forwarder.py`)."""
    return f"{partition_prefix(partition, partitions)}:out"


def inbound(tag: str) -> str:
    """Hash sender -> the last outgoing-stream entry id delivered from it to the keys of
    slot tag `tag`: a repeat of a delivery is dropped by it. In the same slot as those keys."""
    return f"{PREFIX}:{{{tag}}}:inbound"


def commit_memo(mailbox_key: str, entry_id: str) -> str:
    """A turn commit's holder and answer, kept a minute under the first mailbox entry it
    acknowledged, so that the call sent again commits once (`actors/lua/turn_commit.lua`)."""
    return f"{mailbox_key}:commit:{entry_id}"


# -- actors' state, in their partition ---------------------------------------------------


def session(sid: str, partitions: int) -> str:
    return f"{of_address('session:' + sid, partitions)}:s:{sid}"


def session_events(sid: str, partitions: int) -> str:
    return f"{session(sid, partitions)}:events"


def session_events_pattern() -> str:
    """SCAN pattern matching every session's event stream (Redis globs leave braces alone)."""
    return f"{PREFIX}:{{p:*}}:s:*:events"


def session_of_events(key: str) -> str | None:
    """The session id of a key built by `session_events`; None for any other key."""
    head, middle, tail = f"{PREFIX}:{{p:", "}:s:", ":events"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    at = key.find(middle, len(head))
    if at < 0:
        return None
    sid = key[at + len(middle) : -len(tail)]
    # (a task's key never ends so: `…:s:<sid>:task:<tid>`, even with a tid `x:events`)
    return sid if sid and "}" not in sid and ":task:" not in sid else None


def task(sid: str, tid: str, partitions: int) -> str:
    """A task's state: in its session's partition (a task lives with its session)."""
    return f"{session(sid, partitions)}:task:{tid}"


def task_index() -> str:
    """Hash taskId -> sessionId: a task's keys live in its session's partition."""
    return f"{PREFIX}:tasks"


def agent(aid: str, partitions: int) -> str:
    return f"{of_address('agent:' + aid, partitions)}:a:{aid}"


def agent_outbox(aid: str, partitions: int) -> str:
    return f"{agent(aid, partitions)}:outbox"


def actor_state(address: str, partitions: int) -> str:
    """State hash of an actor that is no session, task or agent (the dispatcher, probes)."""
    return f"{of_address(address, partitions)}:actor:{address}"


def dispatch_queue(priority: str, partitions: int) -> str:
    """Sorted set of waiting tasks (`<sid>/<tid>`) of one priority, scored by arrival: in
    the dispatcher's partition, with the kicks that tell it to look."""
    return f"{of_address(DISPATCHER_ADDRESS, partitions)}:queue:{priority}"


def agents_online(partitions: int) -> str:
    """Set of the online agents' ids, in the dispatcher's partition (an agent's turn
    changes it and kicks the dispatcher: both arrive together)."""
    return f"{of_address(DISPATCHER_ADDRESS, partitions)}:agents:online"


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


def webhook_events() -> str:  # untagged: its slot tag is its name (append_output.lua)
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
