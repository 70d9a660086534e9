"""How actors and namespaces reach sockets on any node (python-socketio's Redis manager).

Commands to an agent go to the room `agent:<id>`, which lives on whichever node holds the
agent's socket. The agent's ack carries the commandId: an acknowledged command leaves the
outbox, and what is not acknowledged goes out again when the agent registers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import socketio
from redis.asyncio import Redis

from actors import streams
from orchestra import keys
from orchestra.codec import envelope

log = logging.getLogger(__name__)

WEB = "/web"
AGENT = "/agent"


class SocketOutlet:
    def __init__(self, sio: socketio.AsyncServer, redis: Redis, partitions: int) -> None:
        self.sio = sio
        self.redis = redis
        self.partitions = partitions  # `settings.partitions`: where agents' outboxes live

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(
            event,
            envelope(data, "server"),
            room=f"agent:{agent_id}",
            namespace=AGENT,
            callback=self._acknowledger(agent_id),
        )

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, envelope(data, "server"), room=room, namespace=WEB)

    async def ping_agent(self, agent_id: str, timestamp_ms: int) -> None:
        """The health check's `ping` (no commandId, not kept in the outbox: a lost one is
        an unanswered ping, which is what it measures)."""
        await self.sio.emit(
            "ping",
            envelope({"timestamp": timestamp_ms}, "server"),
            room=f"agent:{agent_id}",
            namespace=AGENT,
        )

    async def disconnect_agent(self, socket_id: str) -> None:
        """Close an agent's socket, on whichever node holds it (if any still does)."""
        await self.sio.disconnect(socket_id, namespace=AGENT)

    async def resend_commands(self, socket: str, agent_id: str, after_command_id: int) -> int:
        """Send `socket` every command of the agent's outbox after `after_command_id`."""
        entries = await streams.xrange(
            self.redis,
            keys.agent_outbox(agent_id, self.partitions),
            f"(0-{after_command_id}",
            "+",
        )
        for entry_id, fields in entries:
            command_id = int(entry_id.split("-")[1])
            data = json.loads(fields.get("data") or "{}")
            await self.sio.emit(
                fields.get("event", ""),
                envelope({"commandId": command_id, **data}, "server"),
                to=socket,
                namespace=AGENT,
                callback=self._acknowledger(agent_id),
            )
        return len(entries)

    def _acknowledger(self, agent_id: str) -> Any:
        async def acknowledged(*answer: Any) -> None:
            ack = answer[0] if answer else None
            command_id = ack.get("commandId") if isinstance(ack, dict) else None
            if isinstance(command_id, int) and not isinstance(command_id, bool) and command_id > 0:
                # That command, and only it, has been taken: commands written by different
                # actors may be pushed, and so acknowledged, out of their order, and one
                # still on its way must stay to be sent again if it is lost.
                outbox = keys.agent_outbox(agent_id, self.partitions)
                await self.redis.xdel(outbox, f"0-{command_id}")

        return acknowledged
