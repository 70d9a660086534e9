"""Commands an agent has not acknowledged for too long go out to it again.

A command reaches its agent by a push through python-socketio's Redis manager right after
the turn that wrote it to the agent's outbox commits. Pub/sub delivers at most once: the
node that commits may die before it pushes, or the push may be dropped on its way. The
agent's registration after a reconnect makes good what it missed, but an agent that
stays connected would wait for ever. So each node looks, every `command_resend_after_s`,
at the outboxes of the agents connected to it: a command that was already at the head of
an outbox one sweep ago (acknowledged commands leave the outbox) is sent again with all
that follow it. The agent takes each commandId once, so a copy that crosses a late
acknowledgement does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from redis.asyncio import Redis

from actors import streams
from gateway.outlet import SocketOutlet
from orchestra import keys

log = logging.getLogger(__name__)


class CommandResender:
    def __init__(
        self,
        redis: Redis,
        outlet: SocketOutlet,
        sockets: Callable[[], Mapping[str, str]],
        partitions: int,
    ) -> None:
        self.redis = redis
        self.partitions = partitions  # `settings.partitions`: where agents' outboxes live
        self.outlet = outlet
        self.sockets = sockets  # socket -> agent id, of the agents connected to this node
        self._heads: dict[str, int] = {}  # socket -> first unacknowledged commandId last sweep

    async def sweep(self) -> None:
        """One look at the outbox of every agent connected here."""
        heads: dict[str, int] = {}
        for socket, agent_id in list(self.sockets().items()):
            outbox = keys.agent_outbox(agent_id, self.partitions)
            first = await streams.xrange(self.redis, outbox, count=1)
            if not first:
                continue
            head = int(first[0][0].split("-")[1])
            heads[socket] = head
            if self._heads.get(socket) == head:
                count = await self.outlet.resend_commands(socket, agent_id, head - 1)
                log.warning(
                    "agent %s left command %d unacknowledged for a sweep: %d sent again",
                    agent_id,
                    head,
                    count,
                )
        self._heads = heads
