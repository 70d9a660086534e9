"""The session actor: a conversation with workers, its participants and its status.

active <-> paused, active | paused -> ended
"""

from __future__ import annotations

import secrets
from typing import Any

from actors.actor import Actor
from actors.retention import retire_stream
from actors.trim import trim_stream
from actors.turn import CommitResult, Turn
from orchestra.codec import now_iso
from orchestra.errors import InvalidParameters, NotFound

TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"paused", "ended"}),
    "paused": frozenset({"active", "ended"}),
    "ended": frozenset(),
}


class SessionActor(Actor):
    kind = "session"

    async def on_create(self, turn: Turn) -> dict[str, Any]:
        if not turn.exists:
            body = turn.message.body
            turn.set(
                id=turn.address.id,
                ownerId=body["ownerId"],
                title=body.get("title") or "",
                agentId=body.get("agentId"),
                status="active",
                participants=[body["ownerId"]],
                tasks=[],
                createdAt=now_iso(),
                # Fixed when the stream is begun; clients resume only within one epoch.
                epoch=secrets.token_hex(8),
            )
            self._emit_updated(turn)
        return {"id": turn.state["id"], "epoch": turn.state["epoch"]}

    async def on_task_added(self, turn: Turn) -> None:
        self._require(turn)
        tasks = list(turn.state.get("tasks") or [])
        if turn.message.body["taskId"] not in tasks:
            turn.set(tasks=[*tasks, turn.message.body["taskId"]])

    async def on_participant_add(self, turn: Turn) -> dict[str, Any]:
        self._require(turn)
        participants = list(turn.state.get("participants") or [])
        if turn.message.body["userId"] not in participants:
            turn.set(participants=[*participants, turn.message.body["userId"]])
            self._emit_updated(turn)
        return {"participants": turn.state["participants"]}

    async def on_end(self, turn: Turn) -> dict[str, Any]:
        self._move(turn, "ended")
        return {"status": turn.state["status"]}

    async def on_pause(self, turn: Turn) -> dict[str, Any]:
        self._move(turn, "paused")
        return {"status": turn.state["status"]}

    async def on_resume(self, turn: Turn) -> dict[str, Any]:
        self._move(turn, "active")
        return {"status": turn.state["status"]}

    async def on_trim(self, turn: Turn) -> dict[str, Any]:
        """Archive the oldest events beyond the stream's cap to SQL, then drop them from
        the stream (`actors/trim.py`)."""
        if not turn.exists:
            return {"trimmed": 0}  # the stream of a session that is gone: not ours to keep
        return {"trimmed": await trim_stream(self.env, turn, turn.address.id)}

    async def on_retire(self, turn: Turn) -> dict[str, Any]:
        """An ended session's stream, past its retention: all of it to the archive, then
        the stream away (`actors/retention.py`)."""
        return {"archived": await retire_stream(self.env, turn, turn.address.id)}

    async def on_committed(self, turn: Turn, result: CommitResult) -> None:
        state = turn.state
        if turn.message.type == "create" and "createdAt" in turn.changes:
            await self.env.store.ensure_session(
                state["ownerId"],
                title=state["title"],
                agent_id=state.get("agentId"),
                session_id=state["id"],
            )
        elif {"status", "participants"} & set(turn.changes):
            await self.env.store.update_session(
                state["id"], status=state["status"], participants=state["participants"]
            )

    def _move(self, turn: Turn, status: str) -> None:
        """The one place a session changes status."""
        self._require(turn)
        current = turn.state["status"]
        if status == current:
            return
        if status not in TRANSITIONS[current]:
            raise InvalidParameters(f"a session that is {current} cannot become {status}")
        turn.set(status=status, **({"endedAt": now_iso()} if status == "ended" else {}))
        self._emit_updated(turn)

    def _emit_updated(self, turn: Turn) -> None:
        turn.emit(
            turn.state["id"],
            "session:updated",
            {
                "sessionId": turn.state["id"],
                "status": turn.state["status"],
                "participants": turn.state["participants"],
            },
        )

    def _require(self, turn: Turn) -> None:
        if not turn.exists:
            raise NotFound("unknown session")
