"""A Python client for the `/web` side: log in, connect, start, type, stop, watch.

    async with await Client.login(url, "alice", password) as client:
        started = await client.start(tool="custom", command="echo hi", agent_id=agent_id)
        await client.join(started["sessionId"])
        async for event, data in client.events():
            ...

It reconnects as the original design (§5.1.1) describes: exponential backoff from 1 s up
to 5 s, then an offline state in which it keeps trying every 5 s; after each reconnect it
sends `user:sync` and joins its sessions again with the last eventId it saw, so the
events it yields are every session event once, in order, across any number of drops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, Literal, Self

import socketio

from orchestra.aio import cancel_and_wait
from orchestra.errors import from_info

log = logging.getLogger(__name__)

State = Literal["connecting", "online", "reconnecting", "offline", "closed"]

SESSION_EVENTS = frozenset(
    {
        "worker:output",
        "task:stream",
        "worker:status",
        "task:result",
        "task:accepted",
        "task:progress",
        "session:updated",
        "worker:permission",
    }
)
OTHER_EVENTS = frozenset(
    {"agents:updated", "agent:connected", "agent:disconnected", "session:resync", "error"}
)


class Client:
    """One user's connection to a gateway, resumable across drops."""

    def __init__(
        self,
        url: str,
        access_token: str,
        *,
        first_delay_s: float = 1.0,
        max_delay_s: float = 5.0,
        offline_after: int = 5,
    ) -> None:
        self.url = url.rstrip("/")
        self.access_token = access_token
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.offline_after = offline_after
        self.state: State = "connecting"
        self._sio = socketio.AsyncClient(reconnection=False)
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._last: dict[str, str | None] = {}  # session -> last eventId yielded
        self._epochs: dict[str, str] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        for name in SESSION_EVENTS | OTHER_EVENTS:
            self._sio.on(name, self._receiver(name), namespace="/web")
        self._sio.on("disconnect", self._on_disconnect, namespace="/web")

    # -- setting up ----------------------------------------------------------------------

    @classmethod
    async def login(cls, url: str, username: str, password: str, **options: Any) -> Self:
        body = await asyncio.to_thread(
            _post_json, url.rstrip("/") + "/api/auth/login",
            {"username": username, "password": password},
        )  # fmt: skip
        client = cls(url, body["accessToken"], **options)
        await client.connect()
        return client

    async def connect(self) -> None:
        await self._sio.connect(
            self.url, namespaces=["/web"], auth={"token": self.access_token}, wait_timeout=30
        )
        self.state = "online"
        self._connected.set()

    async def close(self) -> None:
        self.state = "closed"
        if self._keeper is not None:
            await cancel_and_wait(self._keeper)
        if self._sio.connected:
            await self._sio.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------

    async def request(self, event: str, payload: dict[str, Any], timeout_s: float = 30) -> Any:
        """Send a request once connected; its ack's data, or its error raised."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)
        answer = await self._sio.call(event, payload, namespace="/web", timeout=timeout_s)
        if not answer.get("success"):
            raise from_info(answer.get("error") or {})
        return answer.get("data")

    async def start(self, *, tool: str, **fields: Any) -> dict[str, Any]:
        payload = {"tool": tool, **{_camel(k): v for k, v in fields.items() if v is not None}}
        started: dict[str, Any] = await self.request("worker:start", payload)
        return started

    async def send_input(self, task_id: str, text: str) -> None:
        await self.request("worker:input", {"taskId": task_id, "input": text})

    async def stop(self, task_id: str, mode: str = "interrupt") -> None:
        await self.request("worker:stop", {"taskId": task_id, "mode": mode})

    async def join(self, session_id: str) -> dict[str, Any]:
        """Watch a session from where this client left it (from its start the first time)."""
        payload: dict[str, Any] = {"sessionId": session_id}
        if self._last.get(session_id):
            payload["lastEventId"] = self._last[session_id]
            payload["epoch"] = self._epochs.get(session_id)
        self._last.setdefault(session_id, None)
        joined: dict[str, Any] = await self.request("session:join", payload)
        self._epochs[session_id] = joined["epoch"]
        return joined

    # -- events --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every event, session events once each and in order, until `close()`."""
        while self.state != "closed":
            yield await self._queue.get()

    def _receiver(self, name: str) -> Any:
        async def receive(data: dict[str, Any]) -> None:
            session_id = data.get("sessionId")
            event_id = data.get("eventId")
            if name in SESSION_EVENTS and session_id in self._last and event_id:
                last = self._last[session_id]
                if last is not None and _key(event_id) <= _key(last):
                    return  # already yielded (a replay overlapping what we had)
                self._last[session_id] = event_id
            await self._queue.put((name, data))

        return receive

    # -- staying connected ---------------------------------------------------------------

    async def _on_disconnect(self, *_: Any) -> None:
        self._connected.clear()
        if self.state != "closed" and (self._keeper is None or self._keeper.done()):
            self.state = "reconnecting"
            self._keeper = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay_s, attempts = self.first_delay_s, 0
        while self.state != "closed":
            await asyncio.sleep(delay_s)
            attempts += 1
            try:
                await self._sio.connect(
                    self.url, namespaces=["/web"], auth={"token": self.access_token},
                    wait_timeout=10,
                )  # fmt: skip
            except socketio.exceptions.ConnectionError as exc:
                log.info("reconnect attempt %d failed: %s", attempts, exc)
                if attempts >= self.offline_after:
                    self.state = "offline"  # still trying, at the slowest pace
                delay_s = min(delay_s * 2, self.max_delay_s)
                continue
            self.state = "online"
            self._connected.set()
            await self.request("user:sync", {})
            for session_id in list(self._last):
                await self.join(session_id)
            return


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data
    except urllib.error.HTTPError as error:
        raise from_info(json.loads(error.read() or b"{}").get("error") or {}) from None
