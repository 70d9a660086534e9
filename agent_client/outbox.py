"""One task's outgoing events, delivered in order across disconnects and restarts.

A task sends two kinds of events:

- output items (`task:stream`, `worker:output`), numbered by `seq`, spooled to disk before
  they are sent, and sent pipelined in frames (`agent_client/frames.py`): what the worker
  printed since the last frame goes as one batch (PROTOCOL.md §5, 1.1), one frame in
  flight, each frame's ack (`{persistedSeq}`) moving the acknowledged mark forward;
- control events (`task:accepted`, `worker:status`, `task:result`, `task:rejected`, ...),
  each sent once everything before it is acknowledged, and awaited.

The ordering rule the gateway relies on follows: a control event queued after output item
N is sent only once the gateway has stored 1..N. So the final `worker:status` and the
`task:result` come after the last line, and output never overtakes `task:accepted`.

One pump task per outbox does all the sending. On each new connection (a new session
epoch) it starts again from the acknowledged mark, so everything unacknowledged is sent
again, in seq order, before anything new; the gateway drops the seqs it already has.

Batches cost no latency: an outbox with nothing in flight sends a lone line at once (as a
1.0 frame); what the worker prints while a frame is in flight piles up for the next. A
gateway that refuses a batch with PARAM_001 (one from before batches cannot read `items`)
gets single items, one per frame as before, for the rest of that connection: nothing is
lost, the refused frame's items are sent again one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from agent_client.connection import LinkDown, response_error
from agent_client.frames import Frame, FrameWindow, next_frame
from agent_client.spool import FinalEvents, Spool
from orchestra import trace
from orchestra.aio import cancel_and_wait

__all__ = ["Link", "Sender", "TaskOutbox"]

log = logging.getLogger(__name__)

# Refusals worth trying again later; any other refusal of a control event is final.
_RETRYABLE = frozenset({"SYS_001", "RATE_001", "DB_001", "CONN_001", "CONN_002"})
# Refusals of output meaning the gateway will never take this task's output from us.
_UNWANTED = frozenset({"AUTH_002", "TASK_002"})


class Sender(Protocol):
    """What the outbox needs of a connection (`connection.Session`, or a test's fake)."""

    epoch: int
    closed: asyncio.Event

    async def emit(
        self,
        event: str,
        payload: dict[str, Any],
        on_ack: Callable[[Any], None] | None = None,
    ) -> None: ...

    async def request(self, event: str, payload: dict[str, Any], timeout_s: float) -> Any: ...


class Link(Protocol):
    """Hands out the current registered connection (`connection.AgentConnection`)."""

    async def wait_ready(self) -> Sender: ...


@dataclass
class _Control:
    event: str
    payload: dict[str, Any]
    after_seq: int
    """Sent once the gateway has stored output 1..after_seq."""
    on_refused: Callable[[str, str], None] | None = None
    """Told (code, message) when the gateway refuses the event for good."""


class TaskOutbox:
    """Everything one task still has to tell the gateway."""

    def __init__(
        self,
        spool: Spool,
        link: Link,
        *,
        agent_id: str,
        ack_timeout_s: float,
        retry_delay_s: float,
        on_done: Callable[[TaskOutbox], None] | None = None,
        on_stale: Callable[[TaskOutbox], None] | None = None,
    ) -> None:
        self.spool = spool
        self.task_id = spool.task_id
        self._link = link
        self._agent_id = agent_id
        # Every report names the attempt it is about (PROTOCOL.md §5, 1.1); a task assigned
        # by a 1.0 gateway has none.
        attempt = spool.meta.get("attempt")
        self.attempt: int | None = attempt if isinstance(attempt, int) else None
        self._ids: dict[str, Any] = {"taskId": self.task_id, "agentId": agent_id}
        if self.attempt is not None:
            self._ids["attempt"] = self.attempt
        # The trace id of the command that started the task, on its control events (not
        # on output frames: the hot path carries nothing more). PROTOCOL.md §1 `traceId`.
        trace_id = spool.meta.get("traceId")
        self.trace_id = trace_id if isinstance(trace_id, str) and trace_id else ""
        self._trace = {"traceId": self.trace_id} if self.trace_id else {}
        self._on_stale = on_stale
        self.stale = False
        self._ack_timeout_s = ack_timeout_s
        self._retry_delay_s = retry_delay_s
        self._on_done = on_done
        self._controls: deque[_Control] = deque()
        self._wake = asyncio.Event()
        self._rewind_at: float | None = None
        self._progress_at = time.monotonic()
        self._unwanted_logged = False
        self._window = FrameWindow()
        self._pump: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        if spool.final is not None:
            self._queue_final(spool.final)

    # -- what the task manager calls ---------------------------------------------------

    def output(self, event: str, fields: dict[str, Any]) -> None:
        """A worker's output item: numbered, spooled (flushed), then sent. The worker's sink."""
        if self.spool.final is not None:
            if not self.stale:
                log.warning("task %s: output after the task's end is dropped", self.task_id)
            return
        self.spool.append(event, self._ids | fields)
        if not (self._window.batches and self._window.busy):
            # While a frame is in flight the pump could send nothing more: its ack wakes
            # it (a worker printing 10,000 lines a second would wake it for each one).
            self._wake.set()

    def control(
        self,
        event: str,
        fields: dict[str, Any],
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        """A control event, sent once the output so far is acknowledged (not spooled)."""
        payload = self._ids | fields | self._trace
        self._controls.append(_Control(event, payload, self.spool.last_seq, on_refused))
        self._wake.set()

    def discard_controls(self) -> None:
        """Drop the control events not yet sent (a worker that failed to start)."""
        if self._pump is not None:
            raise RuntimeError("the outbox is already sending")
        self._controls.clear()

    def finish(self, events: FinalEvents) -> None:
        """The task's last events (spooled); the outbox is done once they are delivered."""
        self.spool.set_final(events)
        self._queue_final(self.spool.final or [])
        self._wake.set()

    @property
    def finished(self) -> bool:
        """The task's last events are known (its worker is over or never started)."""
        return self.spool.final is not None

    @property
    def ids(self) -> dict[str, Any]:
        """What every report of this task carries: taskId, agentId and its attempt."""
        return dict(self._ids)

    def running_task(self) -> dict[str, Any]:
        """This task as `agent:register` reports it."""
        task = {"taskId": self.task_id, "lastSeq": self.spool.persisted_seq}
        if self.attempt is not None:
            task["attempt"] = self.attempt
        return task

    def start(self) -> None:
        """Start sending (once the task's first control events are queued)."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name=f"outbox-{self.task_id}")

    async def close(self) -> None:
        """Stop sending; what is unacknowledged stays in the spool for the next start."""
        if self._pump is not None:
            await cancel_and_wait(self._pump)
        self.spool.close()

    # -- the pump ----------------------------------------------------------------------

    def _queue_final(self, events: FinalEvents) -> None:
        for event, payload in events:
            self._controls.append(_Control(event, payload | self._trace, self.spool.last_seq))

    def _complete(self) -> bool:
        return (
            self.spool.final is not None
            and not self._controls
            and self.spool.persisted_seq >= self.spool.last_seq
        )

    async def _run(self) -> None:
        trace.bind(traceId=self.trace_id, taskId=self.task_id)  # this task's log lines
        epoch = -1
        sent = 0
        while not self._complete():
            self._wake.clear()
            session = await self._link.wait_ready()
            if session.epoch != epoch:
                epoch, sent = session.epoch, self.spool.persisted_seq
                self._window.connected(epoch)
                self._progress_at = time.monotonic()
            if self._rewind_at is not None and time.monotonic() >= self._rewind_at:
                # Unacknowledged output is sent again; the gateway drops what it has.
                self._rewind_at = None
                sent = self.spool.persisted_seq
                self._window.forget()
                self._progress_at = time.monotonic()
            try:
                sent = await self._send_output(session, sent)
                head = self._controls[0] if self._controls else None
                if head is not None and self.spool.persisted_seq >= head.after_seq:
                    if await self._send_control(session, head):
                        self._controls.popleft()
                    continue
                await self._idle(session, sent)
            except LinkDown:
                continue
            except Exception:
                # A bug must not silence the task for good: log it, pause, carry on.
                log.exception("task %s: sending failed", self.task_id)
                await asyncio.sleep(self._retry_delay_s)
        self.spool.remove()
        self.done.set()
        if self._on_done is not None:
            self._on_done(self)

    async def _send_output(self, session: Sender, sent: int) -> int:
        """Send the items the next control event does not hold back, in frames; returns the
        last seq sent."""
        window = self._window
        while True:
            if self._rewind_at is not None:
                return sent  # backing off: what is unacknowledged goes again at the rewind
            # Looked up each time: a control event queued meanwhile holds back what follows.
            head = self._controls[0] if self._controls else None
            sent = max(sent, self.spool.persisted_seq)
            limit = head.after_seq if head is not None else self.spool.last_seq
            if sent >= limit or window.full(sent, self.spool.persisted_seq):
                return sent  # new output, or an ack, wakes the pump
            if sent == self.spool.persisted_seq:
                self._progress_at = time.monotonic()  # the ack clock starts now
            self.spool.flush()  # what goes out is on file first
            frame = next_frame(self.spool, sent + 1, limit, batches=window.batches)
            on_ack = partial(self._on_ack, window.opened(), frame, window.epoch)
            await session.emit(frame.event, frame.payload, on_ack)
            sent = frame.last_seq

    async def _send_control(self, session: Sender, control: _Control) -> bool:
        """Send one control event and wait for its ack; True once it needs no more tries."""
        response = await session.request(control.event, control.payload, self._ack_timeout_s)
        error = response_error(response)
        if error is None:
            if _is_stale(response):
                self._went_stale(control.event)
            return True
        code, message = error
        if code in _RETRYABLE:
            log.warning(
                "task %s: %s refused (%s: %s), retrying", self.task_id, control.event, code, message
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.closed.wait(), self._retry_delay_s)
            return False
        log.error(
            "task %s: the gateway refused %s (%s: %s)", self.task_id, control.event, code, message
        )
        if control.on_refused is not None:
            control.on_refused(code, message)
        return True

    def _went_stale(self, event: str) -> None:
        """The gateway has moved on to a later attempt of this task: nothing this attempt
        says matters any more, and its worker should go."""
        if self.stale:
            return
        self.stale = True
        log.warning(
            "task %s: the gateway answered %s as stale: attempt %s was superseded",
            self.task_id,
            event,
            self.attempt,
        )
        self.spool.ack(self.spool.last_seq)
        self._controls.clear()
        if self.spool.final is None:
            self.spool.set_final([])
        self._wake.set()
        if self._on_stale is not None:
            self._on_stale(self)

    async def _idle(self, session: Sender, sent: int) -> None:
        """Wait for news: new output, an ack, a lost connection, or a resend deadline."""
        now = time.monotonic()
        deadlines = []
        if self._rewind_at is not None:
            deadlines.append(self._rewind_at)
        if sent > self.spool.persisted_seq:
            deadlines.append(self._progress_at + self._ack_timeout_s)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(session.closed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waits:
                waiter.cancel()
        if (
            sent > self.spool.persisted_seq
            and time.monotonic() - self._progress_at >= self._ack_timeout_s
            and self._rewind_at is None
        ):
            log.warning(
                "task %s: no ack for output above seq %d in %g s, sending it again",
                self.task_id,
                self.spool.persisted_seq,
                self._ack_timeout_s,
            )
            self._rewind_at = time.monotonic()

    def _on_ack(self, number: int, frame: Frame, epoch: int, response: Any) -> None:
        """An output frame's ack: `{persistedSeq}` moves the acknowledged mark forward."""
        if self._window.closed(number):
            self._wake.set()  # room for another frame
        error = response_error(response)
        if error is None and _is_stale(response):
            self._went_stale("output")
            return
        if error is None:
            data = response.get("data") if isinstance(response, dict) else None
            persisted = data.get("persistedSeq") if isinstance(data, dict) else None
            if isinstance(persisted, int) and self.spool.ack(persisted):
                self._progress_at = time.monotonic()
                self._wake.set()
            return
        code, message = error
        if code == "PARAM_001" and frame.items > 1:
            if self._window.refuse_batches(epoch):
                log.warning(
                    "task %s: the gateway refused a batch (%s: %s); sending single items "
                    "for the rest of this connection",
                    self.task_id,
                    code,
                    message,
                )
                self._rewind_at = time.monotonic()
                self._wake.set()
            return
        if code in _UNWANTED:
            # The gateway will never store this task's output (it is not ours any more, or
            # it is gone): waiting for acks would hold the task's end back for ever.
            if not self._unwanted_logged:
                log.error(
                    "task %s: the gateway refuses its output (%s: %s); dropping it",
                    self.task_id,
                    code,
                    message,
                )
                self._unwanted_logged = True
            self.spool.ack(self.spool.last_seq)
            self._wake.set()
            return
        if self._rewind_at is None:
            log.warning(
                "task %s: output refused (%s: %s), sending it again shortly",
                self.task_id,
                code,
                message,
            )
            self._rewind_at = time.monotonic() + self._retry_delay_s
            self._wake.set()


def _is_stale(response: Any) -> bool:
    data = response.get("data") if isinstance(response, dict) else None
    return isinstance(data, dict) and data.get("stale") is True
