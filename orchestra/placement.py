"""Where things live: an actor's partition, a partition's hash tag, a key's slot tag.

Every key a partition's turns write carries the partition's hash tag, so that a turn's
commit is one script call in one hash slot, on one Redis or on Redis Cluster alike
(docs/redis-cluster.md). Placement follows the data:

- a task lives in its session's partition (its state, the session's events and output,
  the mail between them, all in one slot);
- any other actor (a session, an agent, the dispatcher) in the partition its own address
  hashes to; the dispatcher's queues and the set of online agents live in the
  dispatcher's partition, since the turns that change them also kick it.

The tag of partition N is `p:N:k` for the first k whose hash slot lies in the N-th equal
share of the 16384 slots, so that the partitions spread evenly over the masters of a
cluster whose slots were split evenly (`redis-cli --cluster create` does so); a plain
`p:N` puts 10 of 16 partitions on one master of three.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

DISPATCHER_ADDRESS = "dispatcher:default"


def partition_of(address: str, partitions: int) -> int:
    """The partition of the actor at `address`: a task with its session, any other actor
    by its own address. Stable: the same on every node and every run."""
    kind, _, ident = address.partition(":")
    if kind == "task":  # task:<sid>/<tid>
        address = "session:" + ident.partition("/")[0]
    return zlib.crc32(address.encode()) % partitions


@functools.cache
def partition_tag(n: int, partitions: int) -> str:
    """The hash tag (without braces) of partition `n` of `partitions`."""
    if not 0 <= n < partitions:
        raise ValueError(f"partition {n} out of 0..{partitions - 1}")
    low = n * REDIS_CLUSTER_HASH_SLOTS // partitions
    high = max((n + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions, low + 1)
    k = 0
    while not low <= key_slot(f"p:{n}:{k}".encode()) < high:
        k += 1
    return f"p:{n}:{k}"


def slot_tag(key: str) -> str:
    """What Redis hashes a key by: its hash tag (the text between the first `{` and the
    next `}`, when not empty), else the whole key. Keys with the same slot tag are in the
    same slot."""
    start = key.find("{")
    if start > -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def slot_of(key: str) -> int:
    """The hash slot of a key on Redis Cluster."""
    return key_slot(key.encode())
