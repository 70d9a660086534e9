"""How long a web client takes to resume a session that missed many events.

    python -m benchmarks.resume [--events 10000] [--runs 5]

A session's stream holds `--events` output events (written as the gateway writes them);
a client joins with the first eventId and the benchmark times the join until its ack,
which comes after every missed event has been sent to it, and until the client has
received them all. Each run joins the same stream in each mode, in turn: one event per
emit (a 1.0 client), `session:events` frames (`batch: true`), and frames by a client
that listed zstd in its handshake (as `orchestra.client` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from actors import streams
from orchestra import keys
from orchestra.redis_client import connect
from orchestra.redis_server import RedisServer
from tests.support.processes import Deployment, http, wait_for
from tests.support.web import WebClient, login


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orchestra-resume-"))
    async with RedisServer(data_dir=root / "redis", appendonly=False) as redis:
        deployment = Deployment(root, redis.url, f"sqlite+aiosqlite:///{root / 'o.db'}")
        # The live stream must keep every event written, or the join gets session:resync.
        deployment.extra_env["ORCHESTRA_SESSION_STREAM_MAX_EVENTS"] = str(args.events + 100)
        try:
            await deployment.create_user("bench", "bench-password")
            gateway = await deployment.start_gateway("resume")
            token = await login(gateway.url, "bench", "bench-password")
            status, body = await asyncio.to_thread(
                http, "POST", gateway.url + "/api/sessions", {"title": "resume"}, token
            )
            assert status == 201, body
            sid = body["session"]["id"]
            client = connect(redis.url)
            stream = keys.session_events(sid, deployment.partitions)
            pipe = client.pipeline(transaction=False)
            for n in range(1, args.events + 1):
                data = {"sessionId": sid, "taskId": "t", "agentId": "a", "seq": n,
                        "type": "stdout", "data": f"line {n} " + "x" * 60}  # fmt: skip
                pipe.xadd(stream, {"event": "task:stream", "data": json.dumps(data)})
            await pipe.execute()
            first = (await streams.xrange(client, stream, count=1))[0][0]
            acks: dict[str, list[float]] = {mode: [] for mode in MODES}
            totals: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(args.runs):
                for mode, options in MODES.items():
                    reader = WebClient(batch=options["batch"])
                    await reader.connect(gateway.url, token, compression=options["compression"])
                    started = time.perf_counter()
                    await reader.ok("session:join", {"sessionId": sid, "lastEventId": first})
                    acked = time.perf_counter()
                    await wait_for(
                        partial(_received_all, reader, args.events - 1),
                        interval_s=0.001,
                        what="every missed event",
                    )
                    done = time.perf_counter()
                    acks[mode].append((acked - started) * 1000)
                    totals[mode].append((done - started) * 1000)
                    await reader.close()
            for mode in MODES:
                print(
                    f"resume with {args.events - 1:,} missed events, {mode}: join acked after "
                    f"{statistics.median(acks[mode]):.0f} ms, all received after "
                    f"{statistics.median(totals[mode]):.0f} ms (median of {args.runs})"
                )
            await client.aclose()
        finally:
            deployment.stop_all()


MODES: dict[str, dict[str, Any]] = {
    "one event per emit": {"batch": False, "compression": None},
    "session:events frames": {"batch": True, "compression": None},
    "frames, zstd": {"batch": True, "compression": ["zstd"]},
}


def _received_all(reader: WebClient, expected: int) -> bool:
    return len(reader.events) >= expected


if __name__ == "__main__":
    asyncio.run(main())
