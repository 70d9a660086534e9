"""Output frames: the spooled items an outbox sends in one `worker:output` / `task:stream`.

A frame holds consecutive items of one event name (PROTOCOL.md §5, 1.1):

- one item goes out as a 1.0 frame, `{taskId, agentId, attempt, seq, type, ...}`, exactly
  as before batches existed (a lone line costs nothing more, and any gateway takes it);
- several go out as a batch, `{taskId, agentId, attempt, seq, items: [...]}`, the items
  being the single frames' own fields (`type`, `content`/`data`, `timestamp`, ...) and
  numbered `seq`, `seq+1`, ...; at most `MAX_BATCH_ITEMS` items and `MAX_BATCH_BYTES` of
  JSON. An item too large to share a batch goes alone, as a 1.0 frame.

The JSON size is bounded from above, by the size of each item's whole payload (ids and
seq included) plus what the frame itself adds, so a batch never goes over the limit.

`FrameWindow` keeps count of an outbox's frames in flight on the current connection, and
remembers a connection whose gateway refused batches (it gets single items from then on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_client.spool import Spool
from orchestra.codec import json_size
from orchestra.protocol.agent import MAX_BATCH_BYTES, MAX_BATCH_ITEMS

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_IN_FLIGHT",
    "MAX_IN_FLIGHT_FRAMES",
    "Frame",
    "FrameWindow",
    "next_frame",
]

# Frames sent and not yet acknowledged. Without a cap, a worker printing faster than the
# gateway stores queues thousands of events on the socket, and everything behind them waits
# too: heartbeats, command acks, and the websocket's pong, whose timeout then drops the
# connection. The gateway handles one socket's events one after another, so one frame in
# flight keeps it as busy as several would; and what the worker prints while a frame is
# in flight goes in the next one, whose size follows the rate by itself (a line alone when
# the worker is slow, 512 items when it is fast). Measured (benchmarks/throughput.py,
# paced at 13,000 lines/s): 4 frames in flight, p99 176 ms end to end; 1 frame, 33 ms;
# the same burst rate either way.
MAX_IN_FLIGHT_FRAMES = 1
# Single items (to a gateway that refused batches) sent ahead of the acknowledged mark.
MAX_IN_FLIGHT = 256

# What a batch frame adds around its items, at most: the envelope (id, timestamp, source,
# version), the ids, seq and `items` (task ids are at most 128 characters, each of which
# JSON may write as six), with room to spare.
_FRAME_OVERHEAD_BYTES = 4096
# The fields a batch item does not repeat: they are the frame's.
_FRAME_FIELDS = frozenset({"taskId", "agentId", "attempt", "seq"})


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame to send: the items `first_seq`..`last_seq`."""

    event: str
    payload: dict[str, Any]
    first_seq: int
    last_seq: int

    @property
    def items(self) -> int:
        return self.last_seq - self.first_seq + 1


def next_frame(spool: Spool, first_seq: int, limit_seq: int, *, batches: bool) -> Frame:
    """The frame of items from `first_seq` on, up to `limit_seq` at most (`first_seq` <=
    `limit_seq`, both unacknowledged): one item, or, where `batches`, as many as fit."""
    first = spool.get(first_seq)
    chosen = [first]
    if batches and limit_seq > first_seq:
        limit_seq = min(limit_seq, first_seq + MAX_BATCH_ITEMS - 1)
        budget = MAX_BATCH_BYTES - _FRAME_OVERHEAD_BYTES - json_size(first.payload)
        for seq in range(first_seq + 1, limit_seq + 1):
            item = spool.get(seq)
            if item.event != first.event:
                break
            budget -= json_size(item.payload) + 1  # and the comma between items
            if budget < 0:
                break
            chosen.append(item)
    if len(chosen) == 1:
        return Frame(first.event, first.payload, first_seq, first_seq)
    payload = {k: v for k, v in first.payload.items() if k in _FRAME_FIELDS}
    payload["seq"] = first_seq
    payload["items"] = [
        {k: v for k, v in item.payload.items() if k not in _FRAME_FIELDS} for item in chosen
    ]
    return Frame(first.event, payload, first_seq, first_seq + len(chosen) - 1)


class FrameWindow:
    """The output frames of one outbox in flight on the current connection, and whether
    that connection takes batches (`MAX_IN_FLIGHT_FRAMES` frames, or `MAX_IN_FLIGHT`
    single items to a gateway that refused batches)."""

    def __init__(self) -> None:
        self.epoch = -1
        self._in_flight: set[int] = set()
        self._numbered = 0
        self._single_epoch = -1

    def connected(self, epoch: int) -> None:
        """A new connection: acks of frames sent on the old one will never come."""
        self.epoch = epoch
        self._in_flight.clear()

    def forget(self) -> None:
        """Everything unacknowledged is about to be sent again."""
        self._in_flight.clear()

    @property
    def batches(self) -> bool:
        return self._single_epoch != self.epoch

    @property
    def busy(self) -> bool:
        """A frame is in flight."""
        return bool(self._in_flight)

    def full(self, sent: int, persisted_seq: int) -> bool:
        if self.batches:
            return len(self._in_flight) >= MAX_IN_FLIGHT_FRAMES
        return sent - persisted_seq >= MAX_IN_FLIGHT

    def opened(self) -> int:
        """A frame goes out: its number, for `closed`."""
        self._numbered += 1
        self._in_flight.add(self._numbered)
        return self._numbered

    def closed(self, number: int) -> bool:
        """A frame's ack came: True when that made room (it was in flight)."""
        if number not in self._in_flight:
            return False
        self._in_flight.discard(number)
        return True

    def refuse_batches(self, epoch: int) -> bool:
        """The gateway refused a batch sent on connection `epoch`: True the first time, when
        the connection is still the current one (single items from now on)."""
        if epoch != self.epoch or self._single_epoch == epoch:
            return False
        self._single_epoch = epoch
        return True
