"""The actor vocabulary: `Actor` (one class per kind), `ActorRef`, and what actors may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from redis.asyncio import Redis

from actors.addresses import Address
from actors.scripts import Scripts
from actors.turn import CommitResult, Turn
from orchestra.db import Store
from orchestra.errors import InvalidParameters
from orchestra.settings import Settings

if TYPE_CHECKING:
    from actors.runtime import ActorSystem


class Outlet(Protocol):
    """How actors reach connected sockets after a turn commits (the gateway implements it)."""

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None: ...

    async def disconnect_agent(self, socket_id: str) -> None: ...

    async def ping_agent(self, agent_id: str, timestamp_ms: int) -> None: ...


@dataclass(frozen=True)
class ActorEnv:
    """What every actor may use: Redis (reads of other actors' state), SQL history, sockets."""

    redis: Redis
    scripts: Scripts
    store: Store
    settings: Settings
    outlet: Outlet


class Actor:
    """Base of the agent, session and task actors.

    Actors are virtual: an instance lives for one turn, built from the state hash. A
    message of type `x:y` is handled by the method `on_x_y(turn)`; what it returns is the
    reply to an `ask`; an `OrchestraError` it raises is the error reply, and the turn's
    effects are then dropped.
    """

    kind: ClassVar[str]

    def __init__(self, env: ActorEnv) -> None:
        self.env = env

    async def on_receive(self, turn: Turn) -> Any:
        handler = getattr(self, "on_" + turn.message.type.replace(":", "_").replace("-", "_"), None)
        if handler is None:
            raise InvalidParameters(f"{self.kind} does not understand {turn.message.type!r}")
        result: Any = await handler(turn)
        return result

    async def on_committed(self, turn: Turn, result: CommitResult) -> None:
        """Called once the turn has committed: side effects outside Redis (SQL history)."""
        return None


class ActorRef:
    """A handle on an actor anywhere in the cluster: `tell` and `ask`."""

    def __init__(self, system: ActorSystem, address: Address) -> None:
        self.system = system
        self.address = address

    async def tell(self, type: str, body: dict[str, Any] | None = None, sender: str = "") -> None:
        await self.system.tell(self.address, type, body or {}, sender=sender)

    async def ask(
        self, type: str, body: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        return await self.system.ask(self.address, type, body or {}, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"ActorRef({self.address})"


ActorFactory = Callable[[ActorEnv], Actor]
AwaitableNone = Awaitable[None]
