"""A web client for tests: python-socketio's AsyncClient on `/web`, recording every event.

By default it joins sessions as a 1.0 client does, one emit per event. `WebClient(batch=True)`
joins with `batch: true` (unless the join says otherwise) and records each `session:events`
frame in `frames`, as received (`raw`, maybe compressed) and decoded, and each of its events
in `events` as though it had come alone, so `session_events` and `wait_for_event` read the
same either way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import socketio

from orchestra.client import OTHER_EVENTS, SESSION_EVENTS
from orchestra.frames import FRAME_EVENT, decoded, unpack_frame
from orchestra.sio_packet import FastPacket
from tests.support.processes import http, wait_for


async def login(url: str, username: str, password: str) -> str:
    status, body = await asyncio.to_thread(
        http, "POST", url + "/api/auth/login", {"username": username, "password": password}
    )
    assert status == 200, body
    return str(body["accessToken"])


@dataclass
class Frame:
    raw: Any  # the payload as it came: compressed, or the frame itself
    frame: dict[str, Any]

    @property
    def event_ids(self) -> list[str]:
        return [item["data"]["eventId"] for item in self.frame["events"]]


class WebClient:
    def __init__(self, *, batch: bool = False) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, serializer=FastPacket)
        self.batch = batch
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.frames: list[Frame] = []
        self.connect_error: Any = None
        for name in SESSION_EVENTS | OTHER_EVENTS:
            self.sio.on(name, self._recorder(name), namespace="/web")
        self.sio.on(FRAME_EVENT, self._record_frame, namespace="/web")
        self.sio.on("connect_error", self._on_connect_error, namespace="/web")

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events.append((name, decoded(name, data) or data))

        return record

    async def _record_frame(self, raw: Any) -> None:
        frame = decoded(FRAME_EVENT, raw)
        assert frame is not None, raw
        self.frames.append(Frame(raw, frame))
        self.events.extend(unpack_frame(frame))

    async def _on_connect_error(self, data: Any) -> None:
        self.connect_error = data

    async def connect(self, url: str, token: str, *, compression: list[str] | None = None) -> None:
        auth: dict[str, Any] = {"token": token}
        if compression is not None:
            auth["compression"] = compression
        await self.sio.connect(url, namespaces=["/web"], auth=auth, wait_timeout=30)

    async def call(self, event: str, payload: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        if self.batch and event == "session:join" and isinstance(payload, dict):
            payload = {"batch": True, **payload}
        answer: dict[str, Any] = await self.sio.call(
            event, payload, namespace="/web", timeout=timeout_s
        )
        return answer

    async def ok(self, event: str, payload: Any) -> dict[str, Any]:
        answer = await self.call(event, payload)
        assert answer["success"], answer
        data: dict[str, Any] = answer["data"]
        return data

    def session_events(self, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (name, data)
            for name, data in self.events
            if name in SESSION_EVENTS and data.get("sessionId") == session_id
        ]

    async def agent_status_is(self, status: str, agent_id: str | None = None) -> bool:
        """Whether the agent (the first one listed, without an id) shows `status`."""
        agents = (await self.ok("agents:list", {}))["agents"]
        if agent_id is not None:
            agents = [a for a in agents if a["id"] == agent_id]
        return bool(agents) and agents[0]["status"] == status

    async def wait_for_event(
        self, name: str, predicate: Any = None, timeout_s: float = 60.0, count: int = 1
    ) -> dict[str, Any]:
        """The `count`-th event `name` (matching `predicate`) received so far or soon."""

        def find() -> dict[str, Any] | None:
            found = [
                data
                for event, data in self.events
                if event == name and (predicate is None or predicate(data))
            ]
            return found[count - 1] if len(found) >= count else None

        found: dict[str, Any] = await wait_for(find, timeout_s=timeout_s, what=f"event {name}")
        return found

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
