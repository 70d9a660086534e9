"""A turn's extra Redis writes, recorded for its commit script.

A handler adds a write to its turn as a function of a pipeline-like client
(`turn.write(lambda pipe: pipe.zadd(key, {member: score}))`). The runtime commits a turn
in one Lua script call, not a MULTI/EXEC, so it hands those functions a `WriteRecorder`:
it has redis-py's own command methods (the same arguments, the same encoding), and
records each command instead of sending it. Each must touch one key, its first argument,
so that the script can declare every key it writes (DESIGN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.commands.core import (
    BasicKeyCommands,
    HashCommands,
    ListCommands,
    SetCommands,
    SortedSetCommands,
    StreamCommands,
)

from actors.values import text

# Writes that touch exactly one key, the command's first argument.
ONE_KEY_WRITES = frozenset(
    {
        "APPEND", "DECR", "DECRBY", "EXPIRE", "EXPIREAT", "HDEL", "HINCRBY", "HINCRBYFLOAT",
        "HSET", "HSETNX", "INCR", "INCRBY", "LPUSH", "LREM", "LTRIM", "PERSIST", "PEXPIRE",
        "PEXPIREAT", "RPUSH", "SADD", "SET", "SETEX", "SREM", "UNLINK", "XADD", "XDEL",
        "XTRIM", "ZADD", "ZINCRBY", "ZREM", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "DEL",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordedWrite:
    """One recorded command: its name, its one key, and its arguments after the key."""

    command: str
    key: str
    args: tuple[Any, ...]


class WriteRecorder(
    BasicKeyCommands,
    HashCommands,
    ListCommands,
    SetCommands,
    SortedSetCommands,
    StreamCommands,
):
    """Takes redis-py command calls and keeps them as `RecordedWrite`s, in order."""

    _event_dispatcher: Any = None  # redis-py's protocol asks for it; nothing is sent here

    def __init__(self) -> None:
        self.writes: list[RecordedWrite] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        command = text(args[0]).upper()
        if command not in ONE_KEY_WRITES or len(args) < 2:
            raise ValueError(f"{command} is not a one-key write a turn may commit")
        if command in ("DEL", "UNLINK") and len(args) != 2:
            raise ValueError(f"{command} of several keys: one write per key")
        self.writes.append(RecordedWrite(command, text(args[1]), tuple(args[2:])))
        return None


def record(ops: list[Any]) -> list[RecordedWrite]:
    """The commands that a turn's write functions queue, in order."""
    recorder = WriteRecorder()
    for op in ops:
        op(recorder)
    return recorder.writes
