"""A partition's own keys, all in its hash slot (`orchestra.placement`)."""

from __future__ import annotations

from orchestra import keys
from orchestra.placement import partition_tag, slot_tag


class Home:
    """Partition `partition` of `partitions`: its tag, and the keys only it writes under
    its lease (mailbox, timers, outgoing stream) or that guard it (lease, fence)."""

    __slots__ = (
        "fence",
        "lease",
        "mailbox",
        "out",
        "partition",
        "partitions",
        "released",
        "tag",
        "taken",
        "timers",
    )

    def __init__(self, partition: int, partitions: int) -> None:
        self.partition = partition
        self.partitions = partitions
        self.tag = partition_tag(partition, partitions)
        self.mailbox = keys.mailbox(partition, partitions)
        self.lease = keys.lease(partition, partitions)
        self.fence = keys.lease_fence(partition, partitions)
        self.released = keys.lease_released(partition, partitions)
        self.taken = keys.lease_taken(partition, partitions)
        self.timers = keys.timers(partition, partitions)
        self.out = keys.outgoing(partition, partitions)

    def holds(self, key: str) -> bool:
        """Whether a turn of this partition may write `key` in its own commit (same slot);
        anything else goes by the outgoing stream."""
        return slot_tag(key) == self.tag

    def __repr__(self) -> str:
        return f"Home({self.partition}/{self.partitions})"
