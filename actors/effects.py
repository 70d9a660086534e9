"""What a committed turn does outside Redis, run in order beside its partition's loop.

After a turn commits, its agent commands are pushed to their sockets, then its own
after-commit effects run (socket emits), then its actor's `on_committed` (the SQL
history). They run in the order the turns committed, one after another, in a task of
their own: the partition's loop goes on with its next turns meanwhile, so a slow SQL
write does not hold up the mail behind it. A handler that reaches out (Redis, SQL,
sockets) waits for them first, through the barrier of its env (`barrier.py`), so it sees
them done as before. Like before, they are lost with a node that dies before running
them: pushes are made good by the agents' outboxes, and the next change of an actor
brings its SQL history up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from actors.actor import Actor, ActorEnv
from actors.tracing import turn_context
from actors.turn import CommitResult, Turn
from orchestra.aio import cancel_and_wait

log = logging.getLogger(__name__)

_CLOSE_WAIT_S = 5.0


class AfterCommit:
    """The after-commit effects of one partition's turns, in commit order."""

    def __init__(self, env: ActorEnv) -> None:
        self.env = env
        self._queue: deque[tuple[Actor, Turn, CommitResult]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, actor: Actor, turn: Turn, result: CommitResult) -> None:
        self._queue.append((actor, turn, result))
        self._idle.clear()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="after-commit")

    def running_here(self) -> bool:
        """Whether the caller is one of the effects (which must not wait for itself)."""
        return self._worker is not None and asyncio.current_task() is self._worker

    async def wait(self) -> None:
        """Until every effect added so far has run."""
        if not self._idle.is_set() and not self.running_here():
            await self._idle.wait()

    async def close(self) -> None:
        """Let what is queued run (for a while), then stop."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), _CLOSE_WAIT_S)
        finally:
            if self._worker is not None and not self._worker.done():
                await cancel_and_wait(self._worker)

    async def _work(self) -> None:
        while self._queue:
            actor, turn, result = self._queue.popleft()
            with turn_context(turn.message):
                await self._run(actor, turn, result)
        self._idle.set()

    async def _run(self, actor: Actor, turn: Turn, result: CommitResult) -> None:
        """Push the turn's agent commands committed in the partition's own slot to their
        sockets (the forwarder pushes the others once it has delivered them), then the
        actor's own effects.

        A push that does not arrive is made good by the outbox: the agent gets every command
        after its `lastCommandId` again when it registers.
        """
        outlet = self.env.outlet
        for command, command_id in zip(result.commands, result.command_ids, strict=True):
            try:
                await outlet.to_agent(
                    command.agent_id, command.event, {"commandId": command_id, **command.data}
                )
            except Exception:
                log.exception("pushing %s to agent %s failed", command.event, command.agent_id)
        for effect in turn.after:
            try:
                await effect(result)
            except Exception:
                log.exception("after-commit effect of %s failed", turn.address)
        try:
            await actor.on_committed(turn, result)
        except Exception:
            log.exception(
                "after-commit effects of %s on %s failed", turn.address, turn.message.type
            )
