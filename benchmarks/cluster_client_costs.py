"""What one call costs through `orchestra.redis_client.connect`, one Redis against a Redis
Cluster (three masters, three replicas), and what each sends to the servers.

    python -m benchmarks.cluster_client_costs [--calls 2000] [--runs 3]

One call at a time (no concurrency: the client's own cost per call, the round trip
included), each kind `--calls` times per run, on the same loopback and machine:

- `GET` of a key (the floor: one round trip);
- `EVALSHA` of a one-key script (how turns commit and output is stored);
- `XREAD` of one stream, not blocking (how session feeds and mailboxes are read; a
  "movablekeys" command, whose slot redis-py's cluster client may ask the server for);
- a `MULTI` of `INCR` and `EXPIRE` (`gateway/rate_limit.py`, per request: redis-py's
  cluster `TransactionStrategy` runs each queued command in a new thread);
- `EVALSHA` followed by `WAIT 1` on its connection (`call_replicated`, what
  ``ORCHESTRA_REDIS_WAIT_REPLICAS=1`` adds to a write whose effects leave its slot;
  cluster only: the single Redis has no replica).

Reported: microseconds per call (median and range of the runs) and the commands the
servers ran per call (`INFO commandstats`, masters together).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._redis import CLUSTER_WAIT, SINGLE, RedisConfig, running_redis
from benchmarks._redis_report import spread
from orchestra.redis_client import call_replicated, connect

KEY = "{p:3}:bench"
STREAM = "{p:3}:bench:stream"
SCRIPT = "return redis.call('GET', KEYS[1])"


async def measure(config: RedisConfig, root: Path, calls: int, runs: int) -> dict[str, Any]:
    async with running_redis(config, root / config.key) as redis:
        client = connect(redis.url)
        try:
            await client.set(KEY, "1")
            await client.xadd(STREAM, {"f": "v"})
            script = client.register_script(SCRIPT)
            await script(keys=[KEY])

            async def multi() -> None:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.incr(KEY + ":n")
                    pipe.expire(KEY + ":n", 60)
                    await pipe.execute()

            kinds: dict[str, Callable[[], Awaitable[Any]]] = {
                "GET": lambda: client.get(KEY),
                "EVALSHA": lambda: script(keys=[KEY]),
                "XREAD": lambda: client.xread({STREAM: "0-0"}, count=1),
                "MULTI INCR EXPIRE EXEC": multi,
            }
            if config.cluster:
                command = ("EVALSHA", script.sha, 1, KEY)
                kinds["EVALSHA + WAIT 1"] = lambda: call_replicated(
                    client, KEY, command, 1, 500, script=script
                )
            figures: dict[str, Any] = {}
            for name, call in kinds.items():
                await call()  # connections made, slots known
                times_us: list[float] = []
                per_call: dict[str, float] = {}
                for _ in range(runs):
                    before = await redis.snapshot()
                    started = time.perf_counter()
                    for _ in range(calls):
                        await call()
                    times_us.append(1e6 * (time.perf_counter() - started) / calls)
                    usage = await redis.since(before)
                    sent = usage.calls("master")
                    per_call = {k: v / calls for k, v in sent.items() if v >= calls / 2}
                figures[name] = (times_us, per_call)
            return figures
        finally:
            await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orchestra-client-costs-"))
    results = {
        c.label: await measure(c, root, args.calls, args.runs) for c in (SINGLE, CLUSTER_WAIT)
    }
    print(
        f"\n{args.calls:,} calls one at a time, {args.runs} runs: us per call, median (min-max)\n"
    )
    print("| call | " + " | ".join(results) + " | commands on the masters per call, cluster |")
    print("|---|" + "---|" * (len(results) + 1))
    for name in results[CLUSTER_WAIT.label]:
        cells = [spread(r[name][0], ",.0f") if name in r else "" for r in results.values()]
        sent = results[CLUSTER_WAIT.label][name][1]
        what = ", ".join(f"{k} {v:.2f}" for k, v in sorted(sent.items(), key=lambda i: -i[1]))
        print(f"| {name} | {' | '.join(cells)} | {what} |")


if __name__ == "__main__":
    asyncio.run(main())
