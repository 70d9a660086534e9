"""Many idle `/web` connections from one process: the client side of
`benchmarks.idle_connections`.

    python -m benchmarks._idle_clients --url http://127.0.0.1:8080 --token JWT --count 2500
    python -m benchmarks._idle_clients --url ... --tokens-file tokens.json --count 2500

python-socketio's AsyncClient is heavy per connection; this is Socket.IO 5 over Engine.IO 4
written by hand on the `websockets` package, no more than an idle client needs:

    GET ws://host:port/socket.io/?EIO=4&transport=websocket
    server: 0{"sid":...,"pingInterval":25000,...}     Engine.IO open
    client: 40/web,{"token":"<jwt>"}                  Socket.IO CONNECT with its auth
    server: 40/web,{"sid":...}                        connected (44/web,{...}: refused)
    server: 2            client: 3                    every ping answered with a pong

(the websocket's own pings, Sanic's, are answered by `websockets` itself).

Driven by lines on standard input, each answered by one JSON line on standard output:
`ready` is printed once imported; `connect` opens `--count` connections, at most
`--in-flight` handshakes at a time, and answers with when it started and finished, how
long each connection took and what failed; `report` answers with how many are still
open and how many Engine.IO pings each has answered; `close` closes them all, answers
and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

NAMESPACE = "/web"
ATTEMPTS = 3


class Refused(Exception):
    pass


class Connection:
    """One idle Socket.IO connection: it answers pings and counts them."""

    __slots__ = ("close_code", "pings", "reader", "ws")

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0
        self.close_code: int | None = None
        self.reader = asyncio.create_task(self._read())

    @property
    def open(self) -> bool:
        return not self.reader.done()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame == "2":
                    await self.ws.send("3")
                    self.pings += 1
                # Anything else (an event to the user's room, say) is read and dropped.
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 10)
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


def websocket_url(url: str) -> str:
    base = url.replace("http://", "ws://", 1).rstrip("/")
    return base + "/socket.io/?EIO=4&transport=websocket"


async def open_connection(url: str, token: str | None, timeout_s: float = 60.0) -> Connection:
    """One connection, its namespace connected; `Refused` if the server said no."""
    ws = await connect(
        websocket_url(url),
        open_timeout=timeout_s,
        ping_interval=None,  # Engine.IO pings on its own; the server's pings are answered
        compression=None,
        max_size=1 << 20,
        proxy=None,
    )
    try:
        opened = await asyncio.wait_for(ws.recv(), timeout_s)
        if not (isinstance(opened, str) and opened.startswith("0")):
            raise Refused(f"expected an Engine.IO open packet, got {opened!r:.80}")
        auth = json.dumps({"token": token}) if token else ""
        await ws.send(f"40{NAMESPACE},{auth}")
        while True:
            frame = await asyncio.wait_for(ws.recv(), timeout_s)
            if not isinstance(frame, str):
                continue
            if frame == "2":
                await ws.send("3")
            elif frame.startswith(f"40{NAMESPACE},"):
                return Connection(ws)
            elif frame.startswith(f"44{NAMESPACE},") or frame.startswith("1"):
                raise Refused(frame[:200])
    except BaseException:
        await ws.close()
        raise


async def open_many(
    url: str, tokens: Sequence[str], count: int, in_flight: int
) -> tuple[list[Connection], dict[str, Any]]:
    """`count` connections, `in_flight` handshakes at a time, the n-th carrying the n-th
    of `tokens` (round and round; none: no auth); the connections and a report: start
    and end (time.time()), milliseconds each took, failures."""
    gate = asyncio.Semaphore(in_flight)
    took_ms: list[float] = []
    errors: list[str] = []
    connections: list[Connection] = []

    async def one(n: int) -> None:
        token = tokens[n % len(tokens)] if tokens else None
        async with gate:
            for attempt in range(1, ATTEMPTS + 1):
                began = time.perf_counter()
                try:
                    connections.append(await open_connection(url, token))
                    took_ms.append(round((time.perf_counter() - began) * 1000, 2))
                    return
                except (OSError, TimeoutError, ConnectionClosed, Refused) as exc:
                    if attempt == ATTEMPTS:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    else:
                        await asyncio.sleep(0.5 * attempt)
                except Exception as exc:  # the handshake's own refusals (InvalidStatus, ...)
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return

    started = time.time()
    await asyncio.gather(*(one(n) for n in range(count)))
    finished = time.time()
    return connections, {
        "connected": len(connections),
        "failed": len(errors),
        "errors": errors[:5],
        "started": started,
        "finished": finished,
        "tookMs": took_ms,
    }


def raise_open_files(needed: int) -> int:
    """The soft limit on open files, raised towards the hard one to fit `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def say(body: dict[str, Any]) -> None:
    print(json.dumps(body), flush=True)


async def serve(args: argparse.Namespace, tokens: list[str]) -> None:
    connections: list[Connection] = []
    say({"ready": True, "openFiles": raise_open_files(args.count + 256)})
    while command := (await asyncio.to_thread(sys.stdin.readline)).strip():
        if command == "connect":
            made, report = await open_many(args.url, tokens, args.count, args.in_flight)
            connections += made
            say(report)
        elif command == "report":
            pings = [c.pings for c in connections]
            codes: dict[str, int] = {}
            for c in connections:
                if not c.open:
                    codes[str(c.close_code)] = codes.get(str(c.close_code), 0) + 1
            say(
                {
                    "open": sum(c.open for c in connections),
                    "closed": codes,
                    "minPings": min(pings, default=0),
                    "maxPings": max(pings, default=0),
                    "pings": sum(pings),
                }
            )
        elif command == "close":
            await asyncio.gather(*(c.close() for c in connections))
            say({"closed": len(connections)})
            return
        else:
            say({"error": f"unknown command {command!r}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server's http:// address")
    parser.add_argument("--token", help="the access token the CONNECTs carry (none: no auth)")
    parser.add_argument("--tokens-file", help="a JSON list of tokens, taken in turn")
    parser.add_argument("--count", type=int, required=True, help="connections to hold")
    parser.add_argument("--in-flight", type=int, default=32, help="handshakes at a time")
    args = parser.parse_args()
    tokens = [args.token] if args.token else []
    if args.tokens_file:
        tokens += json.loads(Path(args.tokens_file).read_text())
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args, tokens))
    else:
        uvloop.run(serve(args, tokens))


if __name__ == "__main__":
    main()
