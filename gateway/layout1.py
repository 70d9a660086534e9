"""The key names of layout 1 (before issue 13, `git show 6c5b0ec:orchestra/keys.py`),
and what becomes of each in layout 2 (`orchestra.keys`), for `gateway/migrate.py`.

Layout 1 put a session's keys under `{s:<sid>}`, an agent's under `{a:<aid>}`, any other
actor's state at `orch:actor:<address>`, and a partition's mailbox, lease, fence, release
mark and timers at `orch:mbox:<p>`, `orch:lease:<p>`, `...:fence`, `...:released`,
`orch:timers:<p>`; the dispatch queues at `orch:queue:<priority>`, the online agents at
`orch:agents:online`. Layout 2 puts all of a partition's keys under its tag (the tasks in
their session's partition, the queues and the online set in the dispatcher's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestra import keys

PREFIX = "orch"
_PARTITION_KEY = re.compile(r"^orch:(mbox|lease|timers):(\d+)$")
_FENCE = re.compile(r"^orch:lease:(\d+):fence$")
_RELEASED = re.compile(r"^orch:lease:(\d+):released$")
_MEMO = re.compile(r"^orch:mbox:(\d+):commit:.+$")
_SESSION_HEAD, _AGENT_HEAD, _ACTOR_HEAD = "orch:{s:", "orch:{a:", "orch:actor:"


@dataclass
class Found:
    """The layout-1 keys of a Redis, by what the migration does with them."""

    moves: dict[str, str] = field(default_factory=dict)  # old name -> layout-2 name
    mailboxes: dict[int, str] = field(default_factory=dict)  # old partition -> mailbox
    timers: dict[int, str] = field(default_factory=dict)  # old partition -> timers set
    fences: dict[int, str] = field(default_factory=dict)  # old partition -> fence counter
    leases: list[str] = field(default_factory=list)  # held leases: a node may be alive
    dropped: list[str] = field(default_factory=list)  # release marks, memos, reply lists

    def __bool__(self) -> bool:
        return bool(
            self.moves or self.mailboxes or self.timers or self.fences or self.leases
            or self.dropped
        )  # fmt: skip

    def add(self, key: str, partitions: int) -> None:
        """File `key` under what becomes of it (keys that do not change are ignored)."""
        new = new_name(key, partitions)
        if new is not None:
            if new != key:
                self.moves[key] = new
            return
        matched = _PARTITION_KEY.match(key)
        if matched:
            kind, partition = matched[1], int(matched[2])
            if kind == "mbox":
                self.mailboxes[partition] = key
            elif kind == "timers":
                self.timers[partition] = key
            else:
                self.leases.append(key)
            return
        matched = _FENCE.match(key)
        if matched:
            self.fences[int(matched[1])] = key
        elif _RELEASED.match(key) or _MEMO.match(key) or key.startswith(f"{PREFIX}:replies:"):
            self.dropped.append(key)
        elif key.startswith(_AGENT_HEAD) and key.endswith("}:tasks"):
            self.dropped.append(key)  # `keys.agent_tasks`: nobody wrote it

    def summary(self) -> str:
        mail = len(self.mailboxes)
        return (
            f"{len(self.moves)} keys to rename, {mail} mailboxes and {len(self.timers)} timer "
            f"sets to rebuild, {len(self.fences)} fence counters to carry over, "
            f"{len(self.dropped) + len(self.leases)} keys to drop"
        )


def new_name(key: str, partitions: int) -> str | None:
    """The layout-2 name of a layout-1 key that moves whole (state, streams, outboxes,
    queues, the online set); None for any other key."""
    if key.startswith(_SESSION_HEAD):
        rest = key[len(_SESSION_HEAD) :]
        at = rest.find("}:task:")
        if at > 0:
            return keys.task(rest[:at], rest[at + len("}:task:") :], partitions)
        if rest.endswith("}:events") and len(rest) > len("}:events"):
            return keys.session_events(rest[: -len("}:events")], partitions)
        if rest.endswith("}") and len(rest) > 1 and "}" not in rest[:-1]:
            return keys.session(rest[:-1], partitions)
        return None
    if key.startswith(_AGENT_HEAD):
        rest = key[len(_AGENT_HEAD) :]
        if rest.endswith("}:outbox") and len(rest) > len("}:outbox"):
            return keys.agent_outbox(rest[: -len("}:outbox")], partitions)
        if rest.endswith("}") and len(rest) > 1 and "}" not in rest[:-1]:
            return keys.agent(rest[:-1], partitions)
        return None
    if key.startswith(_ACTOR_HEAD) and len(key) > len(_ACTOR_HEAD):
        return keys.actor_state(key[len(_ACTOR_HEAD) :], partitions)
    if key.startswith(f"{PREFIX}:queue:") and len(key) > len(f"{PREFIX}:queue:"):
        return keys.dispatch_queue(key[len(f"{PREFIX}:queue:") :], partitions)
    if key == f"{PREFIX}:agents:online":
        return keys.agents_online(partitions)
    return None
