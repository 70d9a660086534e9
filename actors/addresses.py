"""Actor addresses and where each actor's state lives.

Addresses are `agent:<aid>`, `session:<sid>` and `task:<sid>/<tid>`: a task's address names
its session because a task lives in its session's partition (`orchestra.placement`), its
hash beside the session's event stream, so that the output hot path can check the task's
last seq and append to the session's stream in one Lua script.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestra import keys
from orchestra.placement import partition_of


@dataclass(frozen=True, slots=True)
class Address:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Address:
        kind, _, ident = text.partition(":")
        if not kind or not ident:
            raise ValueError(f"bad actor address {text!r}")
        return cls(kind, ident)

    def partition(self, partitions: int) -> int:
        """Mailbox partition: a stable hash, the same on every node and every run (a task's
        is its session's)."""
        return partition_of(str(self), partitions)

    def state_key(self, partitions: int) -> str:
        if self.kind == "session":
            return keys.session(self.id, partitions)
        if self.kind == "agent":
            return keys.agent(self.id, partitions)
        if self.kind == "task":
            sid, tid = split_task_id(self.id)
            return keys.task(sid, tid, partitions)
        return keys.actor_state(str(self), partitions)


def agent_address(aid: str) -> Address:
    return Address("agent", aid)


def session_address(sid: str) -> Address:
    return Address("session", sid)


def task_address(sid: str, tid: str) -> Address:
    return Address("task", f"{sid}/{tid}")


def split_task_id(ident: str) -> tuple[str, str]:
    sid, _, tid = ident.partition("/")
    return sid, tid
