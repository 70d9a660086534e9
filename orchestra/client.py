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
Given several gateway URLs, each reconnect goes to one of them at random. Where the live
stream no longer reaches back to the last eventId (`session:resync`), the missed events
are read from the history over REST before joining again.

Requests are sent again when the connection drops before their answer: input with the
same envelope `id` and a start with the same `taskId`, which the gateway takes once;
stop and join, which are harmless twice.

Session events come in `session:events` frames (`batch=False`: one event per emit),
compressed where large; each is yielded alone, as it would have come (`orchestra.frames`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Self

import socketio

from orchestra.aio import cancel_and_wait
from orchestra.codec import ALGORITHMS, new_id, parse_event_id
from orchestra.errors import ConnectionTimeout, OrchestraError, from_info
from orchestra.frames import FRAME_EVENT, decoded, unpack_frame
from orchestra.sio_packet import FastPacket

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
        "worker:permission:resolved",
    }
)
OTHER_EVENTS = frozenset(
    {"agents:updated", "agent:connected", "agent:disconnected", "session:resync", "error"}
)
# Errors after which a request may not have been carried out: worth sending again.
_RETRIABLE_CODES = frozenset({"CONN_001", "CONN_002"})
_HISTORY_PAGE = 1000


class Client:
    """One user's connection to a gateway, resumable across drops."""

    def __init__(
        self,
        urls: str | Sequence[str],
        access_token: str,
        *,
        first_delay_s: float = 1.0,
        max_delay_s: float = 5.0,
        offline_after: int = 5,
        batch: bool = True,
    ) -> None:
        self.urls = [u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)]
        if not self.urls:
            raise ValueError("no gateway URL given")
        self.url = self.urls[0]  # the gateway connected to, or tried last
        self.access_token = access_token
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.offline_after = offline_after
        self.batch = batch
        self.state: State = "connecting"
        # Our own reconnection (it rejoins sessions); and Ctrl-C is the application's to
        # handle, not a reason for python-socketio to cancel every task in the process.
        self._sio = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, serializer=FastPacket
        )
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._last: dict[str, str | None] = {}  # session -> last eventId yielded
        self._epochs: dict[str, str] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._dropped = asyncio.Event()  # set from a drop until the next connection
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        for name in SESSION_EVENTS | OTHER_EVENTS:
            self._sio.on(name, self._receiver(name), namespace="/web")
        self._sio.on(FRAME_EVENT, self._receive_frame, namespace="/web")
        self._sio.on("disconnect", self._on_disconnect, namespace="/web")

    # -- setting up ----------------------------------------------------------------------

    @classmethod
    async def login(
        cls, urls: str | Sequence[str], username: str, password: str, **options: Any
    ) -> Self:
        first = urls if isinstance(urls, str) else urls[0]
        body = await asyncio.to_thread(
            _http_json, "POST", first.rstrip("/") + "/api/auth/login",
            {"username": username, "password": password},
        )  # fmt: skip
        client = cls(urls, body["accessToken"], **options)
        await client.connect()
        return client

    async def connect(self) -> None:
        await self._sio.connect(self.url, namespaces=["/web"], auth=self._auth(), wait_timeout=30)
        self._online()

    def _auth(self) -> dict[str, Any]:
        return {"token": self.access_token, "compression": list(ALGORITHMS)}

    async def close(self) -> None:
        self.state = "closed"
        for task in [self._keeper, *self._catching_up.values()]:
            if task is not None:
                await cancel_and_wait(task)
        if self._sio.connected:
            await self._sio.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------

    async def request(
        self, event: str, payload: dict[str, Any], timeout_s: float = 30, *, repeat: bool = False
    ) -> Any:
        """Send a request once connected; its ack's data, or its error raised.

        With `repeat`, a request whose answer was lost with the connection (or that timed
        out inside the gateway) is sent again, with the same id, until `timeout_s` is up.
        """
        payload = {"id": new_id(), **payload}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            left_s = deadline - loop.time()
            try:
                if left_s <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._connected.wait(), left_s)
                answer = await self._call(event, payload, deadline - loop.time())
                if not answer.get("success"):
                    raise from_info(answer.get("error") or {})
                return answer.get("data")
            except (TimeoutError, _Dropped) as exc:
                if not repeat or loop.time() >= deadline:
                    raise ConnectionTimeout(f"no answer to {event} in {timeout_s:g} s") from exc
            except OrchestraError as exc:
                if not repeat or exc.code not in _RETRIABLE_CODES or loop.time() >= deadline:
                    raise
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))

    async def _call(self, event: str, payload: dict[str, Any], timeout_s: float) -> Any:
        """One try: the answer, or `_Dropped` as soon as the connection goes."""
        call = asyncio.ensure_future(
            self._sio.call(event, payload, namespace="/web", timeout=max(0.1, timeout_s))
        )
        dropped = asyncio.ensure_future(self._dropped.wait())
        try:
            await asyncio.wait({call, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
        if not call.done():
            await cancel_and_wait(call)
            raise _Dropped
        try:
            return call.result()
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
            raise _Dropped from None

    async def start(self, *, tool: str, timeout_s: float = 60, **fields: Any) -> dict[str, Any]:
        """Start a worker; once, whatever drops between (the taskId is chosen here, and the
        gateway answers a repeated start with the task it already started)."""
        payload = {"tool": tool, **{_camel(k): v for k, v in fields.items() if v is not None}}
        payload.setdefault("taskId", new_id())
        started: dict[str, Any] = await self.request(
            "worker:start", payload, timeout_s, repeat=True
        )
        return started

    async def send_input(
        self, task_id: str, text: str, timeout_s: float = 60, *, eof: bool = False
    ) -> None:
        """Type `text` into the task's worker: it gets it once, whatever drops between.
        `eof` ends the input (an AI tool finishes, a command's stdin closes)."""
        payload: dict[str, Any] = {"taskId": task_id, "input": text}
        if eof:
            payload["eof"] = True
        await self.request("worker:input", payload, timeout_s, repeat=True)

    async def answer(
        self,
        task_id: str,
        permission_id: str,
        decision: Literal["allow", "deny"],
        *,
        scope: Literal["once", "session"] = "once",
        message: str | None = None,
        updated_input: dict[str, Any] | None = None,
        timeout_s: float = 60,
    ) -> dict[str, Any]:
        """Answer a worker's permission request; the PermissionView of what became of it
        (the first answer from anyone wins; a repeat is harmless)."""
        payload: dict[str, Any] = {"taskId": task_id, "permissionId": permission_id,
                                   "decision": decision, "scope": scope}  # fmt: skip
        if message is not None:
            payload["message"] = message
        if updated_input is not None:
            payload["updatedInput"] = updated_input
        answered: dict[str, Any] = await self.request(
            "worker:permission", payload, timeout_s, repeat=True
        )
        resolved: dict[str, Any] = answered["resolved"]
        return resolved

    async def stop(self, task_id: str, mode: str = "interrupt", timeout_s: float = 60) -> None:
        await self.request("worker:stop", {"taskId": task_id, "mode": mode}, timeout_s, repeat=True)

    async def join(self, session_id: str) -> dict[str, Any]:
        """Watch a session from where this client left it (from its start the first time)."""
        payload: dict[str, Any] = {"sessionId": session_id}
        if self.batch:
            payload["batch"] = True
        if self._last.get(session_id):
            payload["lastEventId"] = self._last[session_id]
            payload["epoch"] = self._epochs.get(session_id)
        self._last.setdefault(session_id, None)
        joined: dict[str, Any] = await self.request("session:join", payload, repeat=True)
        self._epochs[session_id] = joined["epoch"]
        return joined

    async def history(self, session_id: str, after: str | None = None) -> list[dict[str, Any]]:
        """The session's events after `after` over REST, archived and live:
        `[{eventId, event, data}]`."""
        events: list[dict[str, Any]] = []
        while True:
            query = {"limit": str(_HISTORY_PAGE), **({"after": after} if after else {})}
            url = f"{self.url}/api/sessions/{session_id}/events?{urllib.parse.urlencode(query)}"
            page = await asyncio.to_thread(_http_json, "GET", url, None, self.access_token)
            events.extend(page["events"])
            if len(page["events"]) < _HISTORY_PAGE:
                return events
            after = page["events"][-1]["eventId"]

    # -- events --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every event, session events once each and in order, until `close()`."""
        while self.state != "closed":
            yield await self._queue.get()

    def _receiver(self, name: str) -> Any:
        async def receive(data: Any) -> None:
            payload = decoded(name, data)
            if payload is not None:
                await self._received(name, payload)

        return receive

    async def _receive_frame(self, data: Any) -> None:
        """A `session:events` frame: each of its events as if it had come alone."""
        frame = decoded(FRAME_EVENT, data)
        for name, payload in unpack_frame(frame) if frame is not None else ():
            if name in SESSION_EVENTS:  # as a lone event of another name would be ignored
                await self._received(name, payload)

    async def _received(self, name: str, data: dict[str, Any]) -> None:
        session_id = data.get("sessionId")
        if name == "session:resync" and session_id in self._last:
            self._catch_up(str(session_id))
        if name in SESSION_EVENTS and session_id in self._catching_up:
            return  # the history read over REST brings it, in order
        await self._yield_event(name, data)

    async def _yield_event(self, name: str, data: dict[str, Any]) -> None:
        session_id = data.get("sessionId")
        event_id = data.get("eventId")
        if name in SESSION_EVENTS and session_id in self._last and event_id:
            last = self._last[session_id]
            if last is not None and parse_event_id(event_id) <= parse_event_id(last):
                return  # already yielded (a replay overlapping what we had)
            self._last[session_id] = event_id
        await self._queue.put((name, data))

    def _catch_up(self, session_id: str) -> None:
        """The live stream no longer reaches back to our last event: read what we missed
        from the history, then join again from its end."""
        if session_id in self._catching_up:
            return

        async def catch_up() -> None:
            try:
                while True:
                    try:
                        for entry in await self.history(session_id, self._last.get(session_id)):
                            data = {**entry["data"], "eventId": entry["eventId"]}
                            await self._yield_event(entry["event"], data)
                        break
                    except (OSError, OrchestraError) as exc:
                        log.info("reading the history of %s failed (%s); again", session_id, exc)
                        await asyncio.sleep(self.first_delay_s)
                del self._catching_up[session_id]
                await self.join(session_id)
            finally:
                self._catching_up.pop(session_id, None)

        self._catching_up[session_id] = asyncio.create_task(catch_up())

    # -- staying connected ---------------------------------------------------------------

    def _online(self) -> None:
        self.state = "online"
        self._dropped.clear()
        self._connected.set()

    async def _on_disconnect(self, *_: Any) -> None:
        self._connected.clear()
        self._dropped.set()
        if self.state != "closed" and (self._keeper is None or self._keeper.done()):
            self.state = "reconnecting"
            self._keeper = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay_s, attempts = self.first_delay_s, 0
        while self.state != "closed":
            await asyncio.sleep(delay_s)
            attempts += 1
            self.url = random.choice(self.urls)
            try:
                await self._sio.connect(
                    self.url, namespaces=["/web"], auth=self._auth(), wait_timeout=10,
                )  # fmt: skip
            except socketio.exceptions.ConnectionError as exc:
                log.info("reconnect attempt %d to %s failed: %s", attempts, self.url, exc)
                if attempts >= self.offline_after:
                    self.state = "offline"  # still trying, at the slowest pace
                delay_s = min(delay_s * 2, self.max_delay_s)
                continue
            self._online()
            try:
                # Sent again on CONN_001 (Redis failing over), as the joins are.
                await self.request("user:sync", {}, repeat=True)
                for session_id in list(self._last):
                    if session_id not in self._catching_up:
                        await self.join(session_id)
            except OrchestraError as exc:
                # Not resumed: go round again, or the sessions stay unwatched for good (a
                # drop while this task runs starts no other round).
                log.info("resuming on %s failed: %s; connecting again", self.url, exc)
                self.state = "reconnecting"
                await self._sio.disconnect()
                delay_s = min(delay_s * 2, self.max_delay_s)
                continue
            return


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Dropped(Exception):
    """Raised when the connection went before a request's answer came."""


def _http_json(
    method: str, url: str, body: dict[str, Any] | None, token: str | None = None
) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=content, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data
    except urllib.error.HTTPError as error:
        raise from_info(json.loads(error.read() or b"{}").get("error") or {}) from None
