"""The on-disk spool of a task's output that the gateway has not yet acknowledged.

One append-only JSON-lines file per task, `<state dir>/spool/<taskId>.jsonl`. Lines:

- `{"k": "meta", "taskId", ...}`: who the file belongs to (and the worker's pid, so that a
  restarted daemon can end an orphaned worker);
- `{"k": "item", "seq", "event", "payload"}`: one output item, flushed before it is
  emitted (the outbox calls `flush` before it sends a frame: one write for the lines of a
  frame, not one per line);
- `{"k": "acked", "seq"}`: the gateway stored everything up to `seq` (its `persistedSeq`);
- `{"k": "final", "events": [[event, payload], ...]}`: what to send once all output is
  acknowledged (the final `worker:status` and `task:result`, or a `task:rejected`).

Appending is cheap and a crash can only tear the last line, which loading ignores. Once
enough acknowledged lines pile up, the file is rewritten (temp file + `os.replace`) with only
what is still needed. What is flushed reaches the operating system, so it survives a crash
of the daemon; like the appends, a rewrite is not synced to the disk (an fsync each time
held the daemon's loop for 30-40 ms, many times a second under a fast worker). Reopening
the file gives back every item above the acknowledged seq, in order: that is how output
survives a lost connection and a daemon restart alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from orchestra.codec import from_json, to_json

__all__ = ["FinalEvents", "Spool", "SpoolItem"]

log = logging.getLogger(__name__)

FinalEvents = list[tuple[str, dict[str, Any]]]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
# Rewrite the file once this many lines are dead (acknowledged items, ack markers) and they
# outnumber the live ones: often enough to keep the file small (a few MiB at most),
# rarely enough to be cheap (about once a second for a worker printing 10,000 lines/s).
COMPACT_AFTER = 8192


@dataclass(frozen=True)
class SpoolItem:
    """One output item: the event name and its payload, `seq` included."""

    seq: int
    event: str
    payload: dict[str, Any]


class Spool:
    """A task's unacknowledged output, in memory and on disk. Not thread-safe (one loop)."""

    def __init__(self, path: Path, task_id: str) -> None:
        """Use `create` or `load`."""
        self.path = path
        self.task_id = task_id
        self.meta: dict[str, Any] = {}
        self.last_seq = 0
        self.persisted_seq = 0
        self.final: FinalEvents | None = None
        self._pending: deque[SpoolItem] = deque()
        self._dead_lines = 0
        self._file: IO[str] | None = None
        self._unflushed = False

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, task_id: str, **meta: Any) -> Spool:
        """A new, empty spool for a task (replacing any stale file of the same name)."""
        directory.mkdir(parents=True, exist_ok=True)
        spool = cls(directory / file_name(task_id), task_id)
        spool.meta = {**meta, "taskId": task_id}
        spool._rewrite()
        return spool

    @classmethod
    def load(cls, path: Path) -> Spool:
        """Reopen a spool file: items above the acknowledged seq come back in seq order."""
        spool = cls(path, path.stem)
        items: dict[int, SpoolItem] = {}
        damaged = False
        with path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        else:
            damaged = bool(lines)  # no newline at the end: a torn last write
        for number, text in enumerate(lines, 1):
            try:
                record = from_json(text)
                kind = record["k"]
            except (ValueError, KeyError, TypeError):
                if number != len(lines):
                    log.error("spool %s: line %d is unreadable, skipped", path.name, number)
                damaged = True
                continue
            if kind == "meta":
                spool.meta.update({k: v for k, v in record.items() if k != "k"})
            elif kind == "item":
                seq = int(record["seq"])
                items[seq] = SpoolItem(seq, str(record["event"]), dict(record["payload"]))
                spool.last_seq = max(spool.last_seq, seq)
            elif kind == "acked":
                spool.persisted_seq = max(spool.persisted_seq, int(record["seq"]))
            elif kind == "final":
                spool.final = [(str(e), dict(p)) for e, p in record["events"]]
        spool.task_id = str(spool.meta.get("taskId", spool.task_id))
        spool.last_seq = max(spool.last_seq, spool.persisted_seq)
        seq = spool.persisted_seq + 1
        while seq in items:
            spool._pending.append(items[seq])
            seq += 1
        if seq <= spool.last_seq:
            # A hole can only come from a damaged file. The gateway never stores past a hole,
            # so keep the gap-free prefix: what follows could never be acknowledged.
            log.error(
                "spool %s: output %d..%d is missing, dropping what follows",
                path.name,
                seq,
                spool.last_seq,
            )
            spool.last_seq = seq - 1
            damaged = True
        if damaged:
            spool._rewrite()
        return spool

    @classmethod
    def load_all(cls, directory: Path) -> list[Spool]:
        """Every spool in the directory (a daemon restart), unreadable files skipped."""
        spools = []
        for path in sorted(directory.glob("*.jsonl")):
            try:
                spools.append(cls.load(path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spool %s cannot be read (%s); it is left as it is", path.name, exc)
        return spools

    # -- use ---------------------------------------------------------------------------

    def append(self, event: str, fields: dict[str, Any]) -> SpoolItem:
        """Number an item with the next seq and write it; `flush` before it is sent."""
        item = SpoolItem(self.last_seq + 1, event, {**fields, "seq": self.last_seq + 1})
        self._write({"k": "item", "seq": item.seq, "event": event, "payload": item.payload}, False)
        self.last_seq = item.seq
        self._pending.append(item)
        return item

    def pending(self) -> list[SpoolItem]:
        """Every item above the acknowledged seq, in seq order."""
        return list(self._pending)

    def get(self, seq: int) -> SpoolItem:
        """The unacknowledged item with this seq."""
        index = seq - self.persisted_seq - 1
        if index < 0 or index >= len(self._pending):
            raise KeyError(seq)
        return self._pending[index]

    def ack(self, persisted_seq: int) -> bool:
        """Forget everything up to `persisted_seq`; True when that was news."""
        persisted_seq = min(persisted_seq, self.last_seq)
        if persisted_seq <= self.persisted_seq:
            return False
        while self._pending and self._pending[0].seq <= persisted_seq:
            self._pending.popleft()
            self._dead_lines += 1
        self.persisted_seq = persisted_seq
        # Not flushed at once: an ack marker lost in a crash only means items sent again,
        # which the gateway takes once (by seq).
        self._write({"k": "acked", "seq": persisted_seq}, False)
        self._dead_lines += 1
        if self._dead_lines >= COMPACT_AFTER and self._dead_lines > len(self._pending):
            self._rewrite()
        return True

    def set_final(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store what to send once all output is acknowledged."""
        self.final = [(event, dict(payload)) for event, payload in events]
        self._write({"k": "final", "events": [[e, p] for e, p in self.final]})

    def update_meta(self, **fields: Any) -> None:
        """Add facts about the task (the worker's pid, say) that a restart will need."""
        self.meta.update(fields)
        self._write({"k": "meta", **self.meta})

    def close(self) -> None:
        """Close the file; the spool stays on disk for the next start."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the spool: the task is over and the gateway has everything."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- files -------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand what was written to the operating system: it survives our own crash."""
        if self._file is not None and self._unflushed:
            self._file.flush()
            self._unflushed = False

    def _write(self, record: dict[str, Any], flush: bool = True) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(to_json(record) + "\n")
        self._unflushed = True
        if flush:
            self.flush()

    def _rewrite(self) -> None:
        """Replace the file, atomically, by the lines still needed."""
        self.close()
        records: list[dict[str, Any]] = [{"k": "meta", **self.meta, "taskId": self.task_id}]
        records.append({"k": "acked", "seq": self.persisted_seq})
        records += [
            {"k": "item", "seq": i.seq, "event": i.event, "payload": i.payload}
            for i in self._pending
        ]
        if self.final is not None:
            records.append({"k": "final", "events": [[e, p] for e, p in self.final]})
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(to_json(record) + "\n")
        os.replace(temp, self.path)
        self._dead_lines = 0


def file_name(task_id: str) -> str:
    """The spool file's name: the task id where it is a safe file name, else its hash."""
    if _SAFE_NAME.fullmatch(task_id):
        return f"{task_id}.jsonl"
    return f"x-{hashlib.sha256(task_id.encode()).hexdigest()[:40]}.jsonl"
