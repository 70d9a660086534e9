"""The agent actor: one agent daemon's connection, health and load.

offline -> online (registered) <-> busy (derived: running tasks reach maxConcurrency)
online | busy -> offline (socket closed, or no heartbeat for three intervals)
"""

from __future__ import annotations

import json
import time
from typing import Any

from actors import agent_health, streams
from actors.actor import Actor
from actors.addresses import task_address
from actors.dispatcher import DISPATCHER
from actors.turn import CommitResult, Turn
from actors.values import text
from actors.views import agent_status, agent_view
from orchestra import keys
from orchestra.codec import now_iso, parse_timestamp


class AgentActor(Actor):
    kind = "agent"

    async def on_connected(self, turn: Turn) -> dict[str, Any]:
        body = turn.message.body
        tools = list(body.get("tools") or [])
        # A tool the agent runs is a capability the dispatcher matches tasks on.
        capabilities = list(body.get("capabilities") or [])
        capabilities += [t["name"] for t in tools if t["name"] not in capabilities]
        turn.set(
            id=turn.address.id,
            ownerId=body["ownerId"],
            name=body["name"],
            capabilities=capabilities,
            tools=tools,
            version=body.get("version"),
            metadata=body.get("metadata") or {},
            maxConcurrency=body.get("maxConcurrency") or turn.state.get("maxConcurrency") or 1,
            socketId=body["socketId"],
            node=body["node"],
            connectedAt=now_iso(),
            lastHeartbeat=now_iso(),
            running=turn.state.get("running") or [],
            healthy=True,  # it just signed in; the health check's pings tell from here on
        )
        self._move(turn, "online")
        if body.get("runningTasks") is not None:
            for task_id in await self._forgotten(turn, set(body["runningTasks"])):
                await self._tell_task(turn, task_id, "agent:forgot")
        turn.tell(DISPATCHER, "kick")  # tasks may be waiting for this agent
        return {"assignedTasks": list(turn.state["running"])}

    async def _forgotten(self, turn: Turn, reported: set[str]) -> list[str]:
        """Tasks on this agent that it no longer reports (its state was lost with a
        restart) and whose assignment is not still on its way to it."""
        last_command_id = int(turn.message.body.get("lastCommandId") or 0)
        on_the_way = set()
        outbox = keys.agent_outbox(turn.state["id"], self.env.settings.partitions)
        for _, fields in await streams.xrange(self.env.redis, outbox, f"(0-{last_command_id}"):
            if fields.get("event") == "task:assign":
                on_the_way.add(json.loads(fields.get("data") or "{}").get("taskId"))
        running = turn.state.get("running") or []
        return [t for t in running if t not in reported and t not in on_the_way]

    async def on_heartbeat(self, turn: Turn) -> None:
        if not turn.exists:
            return
        changes: dict[str, Any] = {"lastHeartbeat": now_iso()}
        if turn.message.body.get("systemInfo") is not None:
            changes["systemInfo"] = turn.message.body["systemInfo"]
        reported = turn.message.body.get("metadata")
        metadata = turn.state.get("metadata") or {}
        if isinstance(reported, dict) and reported and {**metadata, **reported} != metadata:
            # Keys the agent reports again (its recent working directories) replace those
            # it registered with; its owner's consoles hear of it.
            changes["metadata"] = {**metadata, **reported}
            turn.after_commit(lambda _: self._announce(turn, None))
        turn.set(**changes)

    # -- health checks (actors/agent_health.py) -----------------------------------------

    async def on_ping(self, turn: Turn) -> None:
        """The leader's health check: ping the agent, wherever its socket is."""
        sent_ms = agent_health.ping(turn, self.env.settings.agent_pong_timeout_s)
        if sent_ms is not None:
            agent_id = turn.address.id
            turn.after_commit(lambda _: self.env.outlet.ping_agent(agent_id, sent_ms))

    async def on_latency(self, turn: Turn) -> None:
        """A pong: its round trip, and the agent healthy (again)."""
        if agent_health.pong(turn, self.env.settings.agent_pong_timeout_s):
            turn.after_commit(lambda _: self._announce(turn, None))

    async def on_ping_overdue(self, turn: Turn) -> None:
        if agent_health.overdue(turn):
            turn.after_commit(lambda _: self._announce(turn, None))

    async def on_disconnected(self, turn: Turn) -> None:
        # A late close of an old socket must not take down the agent's newer connection.
        if turn.state.get("socketId") == turn.message.body.get("socketId"):
            self._go_offline(turn)

    async def on_heartbeat_missed(self, turn: Turn) -> None:
        """Nothing heard from the agent for `silentAfterS` (its gateway node died, or its
        network hangs without closing the socket): offline, and its socket is closed, so
        that it registers afresh when it can."""
        state = turn.state
        if agent_status(state) == "offline" or state.get("socketId") != turn.message.body.get(
            "socketId"
        ):
            return
        heard_at = state.get("lastHeartbeat")
        silent_s = time.time() - parse_timestamp(heard_at).timestamp() if heard_at else None
        if silent_s is not None and silent_s < turn.message.body["silentAfterS"]:
            return  # a heartbeat came in since the check
        socket_id = str(state["socketId"])
        self._go_offline(turn)
        turn.after_commit(lambda _: self.env.outlet.disconnect_agent(socket_id))

    def _go_offline(self, turn: Turn) -> None:
        turn.set(healthy=False)
        self._move(turn, "offline")
        if turn.state.get("running"):
            self._start_grace(turn)

    def _start_grace(self, turn: Turn) -> None:
        """The agent's tasks are lost unless it is back within its grace period."""
        turn.schedule(
            self.env.settings.agent_grace_period_s,
            "grace:expired",
            {"socketId": turn.state.get("socketId")},
        )

    async def on_grace_expired(self, turn: Turn) -> None:
        """The agent did not come back in time: its tasks are lost (or queued again)."""
        back = turn.state.get("status") == "online" or turn.state.get("socketId") != (
            turn.message.body.get("socketId")
        )
        if back:
            return
        for task_id in turn.state.get("running") or []:
            await self._tell_task(turn, task_id, "agent:lost")

    async def _tell_task(self, turn: Turn, task_id: str, message: str) -> None:
        session_id = await self.env.redis.hget(keys.task_index(), task_id)
        if session_id is not None:
            turn.tell(
                task_address(text(session_id), task_id), message, {"agentId": turn.state["id"]}
            )

    async def on_task_assigned(self, turn: Turn) -> None:
        running = list(turn.state.get("running") or [])
        if turn.message.body["taskId"] not in running:
            turn.set(running=[*running, turn.message.body["taskId"]])
            self._load_changed(turn)
            if agent_status(turn.state) == "offline":
                # Assigned as the agent went away (the assignment crossed its going
                # offline): the task waits on the agent's grace period like the others.
                self._start_grace(turn)

    async def on_task_finished(self, turn: Turn) -> None:
        running = list(turn.state.get("running") or [])
        if turn.message.body["taskId"] in running:
            running.remove(turn.message.body["taskId"])
            turn.set(running=running)
            self._load_changed(turn)
            turn.tell(DISPATCHER, "kick")  # a free slot

    def _move(self, turn: Turn, status: str) -> None:
        """The one place an agent goes online or offline."""
        previous = turn.state.get("status")
        turn.set(status=status)
        if status == previous and status == "offline":
            return
        event = "agent:connected" if status == "online" else "agent:disconnected"
        self._keep_online_set(turn)
        turn.after_commit(lambda _: self._announce(turn, event))

    def _load_changed(self, turn: Turn) -> None:
        self._keep_online_set(turn)
        turn.after_commit(lambda _: self._announce(turn, None))

    def _keep_online_set(self, turn: Turn) -> None:
        """Keep the set of online agents right, in the turn's commit (the write looks at
        the state as the turn leaves it)."""

        online = keys.agents_online(self.env.settings.partitions)

        def write(pipe: Any) -> None:
            if agent_status(turn.state) == "offline":
                pipe.srem(online, turn.address.id)
            else:
                pipe.sadd(online, turn.address.id)

        turn.write(write)

    async def _announce(self, turn: Turn, event: str | None) -> None:
        """Tell the agent's owner (and admins) about the change."""
        state = turn.state
        agent_id = state["id"]
        outlet = self.env.outlet
        rooms = [f"user:{state['ownerId']}", "admins"]
        for room in rooms:
            if event is not None:
                await outlet.to_room(room, event, {"agentId": agent_id})
            await outlet.to_room(room, "agents:updated", {"agents": [agent_view(state).wire()]})

    async def on_committed(self, turn: Turn, result: CommitResult) -> None:
        if turn.message.type == "connected":
            await self.env.store.touch_agent(
                turn.state["id"],
                version=turn.state.get("version"),
                capabilities=turn.state.get("capabilities"),
            )
