"""A bare python-socketio relay and its producer: the baseline of `benchmarks.throughput`.

    python -m benchmarks._relay serve --port 8765
    python -m benchmarks._relay produce --url http://127.0.0.1:8765

`serve` is python-socketio's AsyncServer on Sanic and nothing else: no Redis, no storage,
no auth, no validation (`/health` counts the producers and the `/web` sockets connected).
A web client joins a room (`session:join`) and asks for a run (`worker:start`), which
goes to the producer as `task:assign`. Each `task:stream` the producer sends is emitted
to the session's room and acknowledged with `{persistedSeq}`; `task:result` goes the same
way. Like the gateway, it handles one socket's events one after another, in the order
sent (`async_handlers=False`). It is also the bare python-socketio server that
`benchmarks.idle_connections` holds idle connections to, beside the gateway.

`produce` stands in for the agent daemon: it runs the worker command it is given, reads
its stdout in 64 KiB chunks and cuts it into lines as the `custom` worker does, and emits
each line pipelined with an ack callback, as the agent's outbox does (no spool, no
compression check). Once the worker has exited and every line is acknowledged, it sends
`task:result` and waits for that ack, as the agent sends its control events.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import socketio
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from orchestra.codec import now_iso

WEB = "/web"
AGENT = "/agent"
PRODUCERS = "producers"
_READ_SIZE = 64 * 1024


def _ok(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"requestId": uuid.uuid4().hex, "success": True, "data": data or {}}


def create_relay() -> Sanic:
    """The relay: a Sanic app with python-socketio attached, in-memory rooms only."""
    sio = socketio.AsyncServer(
        async_mode="sanic", cors_allowed_origins="*", async_handlers=False, ping_timeout=30
    )
    app = Sanic("relay")
    app.config.KEEP_ALIVE_TIMEOUT = 30
    sio.attach(app)
    producers: set[str] = set()
    watchers: set[str] = set()

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return json({"producers": len(producers), "web": len(watchers)})

    async def watcher_connected(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        watchers.add(sid)

    async def watcher_gone(sid: str, reason: Any = None) -> None:
        watchers.discard(sid)

    async def producer_connected(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        producers.add(sid)
        await sio.enter_room(sid, PRODUCERS, namespace=AGENT)

    async def producer_gone(sid: str, reason: Any = None) -> None:
        producers.discard(sid)

    async def relay_line(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("task:stream", data, room=data["sessionId"], namespace=WEB)
        return _ok({"persistedSeq": data["seq"]})

    async def relay_result(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("task:result", data, room=data["sessionId"], namespace=WEB)
        return _ok()

    async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.enter_room(sid, data["sessionId"], namespace=WEB)
        return _ok({"sessionId": data["sessionId"]})

    async def leave(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.leave_room(sid, data["sessionId"], namespace=WEB)
        return _ok()

    async def start(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("task:assign", data, room=PRODUCERS, namespace=AGENT)
        return _ok({"sessionId": data["sessionId"]})

    sio.on("connect", producer_connected, namespace=AGENT)
    sio.on("disconnect", producer_gone, namespace=AGENT)
    sio.on("task:stream", relay_line, namespace=AGENT)
    sio.on("task:result", relay_result, namespace=AGENT)
    sio.on("connect", watcher_connected, namespace=WEB)
    sio.on("disconnect", watcher_gone, namespace=WEB)
    sio.on("session:join", join, namespace=WEB)
    sio.on("session:leave", leave, namespace=WEB)
    sio.on("worker:start", start, namespace=WEB)
    return app


class Producer:
    """The agent's stand-in: runs each assigned worker and streams its lines to the relay."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.agent_id = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()
        self.client.on("task:assign", self._assigned, namespace=AGENT)

    async def run(self, url: str) -> None:
        # The agent's transports in the development profile: straight to a websocket.
        await self.client.connect(url, namespaces=[AGENT], transports=["websocket", "polling"])
        await self.client.wait()

    async def _assigned(self, data: dict[str, Any]) -> dict[str, Any]:
        task = asyncio.create_task(self._run_task(data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"success": True}

    async def _run_task(self, data: dict[str, Any]) -> None:
        ids = {"sessionId": data["sessionId"], "taskId": uuid.uuid4().hex, "agentId": self.agent_id}
        proc = await asyncio.create_subprocess_exec(
            *data["command"], stdout=asyncio.subprocess.PIPE, start_new_session=True
        )
        assert proc.stdout is not None
        sent = acked = 0
        progress = asyncio.Event()

        def on_ack(answer: dict[str, Any]) -> None:
            nonlocal acked
            acked = max(acked, int(answer["data"]["persistedSeq"]))
            progress.set()

        buffer = bytearray()
        while chunk := await proc.stdout.read(_READ_SIZE):
            buffer += chunk
            while (newline := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:newline]).decode("utf-8", errors="replace")
                del buffer[: newline + 1]
                sent += 1
                payload = {
                    "id": uuid.uuid4().hex,
                    "timestamp": now_iso(),
                    "source": "agent",
                    "version": "1.0",
                    **ids,
                    "seq": sent,
                    "type": "stdout",
                    "data": line,
                }
                await self.client.emit("task:stream", payload, namespace=AGENT, callback=on_ack)
        code = await proc.wait()
        while acked < sent:
            progress.clear()
            await progress.wait()
        result = {**ids, "success": code == 0, "result": {"exitCode": code}}
        await self.client.call("task:result", result, namespace=AGENT, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the relay")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    produce = commands.add_parser("produce", help="run the producer")
    produce.add_argument("--url", required=True)
    args = parser.parse_args()
    if args.command == "serve":
        create_relay().run(
            host=args.host, port=args.port, single_process=True, access_log=False, motd=False
        )
    else:
        asyncio.run(Producer().run(args.url))


if __name__ == "__main__":
    main()
