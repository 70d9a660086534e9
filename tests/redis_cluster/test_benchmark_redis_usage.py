"""The benchmarks' Redis under test (benchmarks/_redis.py) on a real cluster: it knows its
masters and replicas, counts the commands each server ran over a span (a script's own
commands included) and, under MONITOR, tells a client's commands from a script's. No
timing is asserted: the benchmarks measure, the tests only check that they can."""

from __future__ import annotations

from pathlib import Path

from benchmarks._redis import CLUSTER_WAIT, monitored, running_redis
from orchestra.redis_client import connect

SCRIPT = "redis.call('HSET', KEYS[1], 'n', ARGV[1]); return 1"


async def test_usage_and_monitor_follow_the_key_to_its_master(tmp_path: Path) -> None:
    async with running_redis(CLUSTER_WAIT, tmp_path / "redis") as redis:
        assert sorted(n.role for n in redis.nodes) == ["master"] * 3 + ["replica"] * 3
        assert redis.config.env == {"ORCHESTRA_REDIS_WAIT_REPLICAS": "1"}
        client = connect(redis.url)
        try:
            script = client.register_script(SCRIPT)
            await script(keys=["{p:1}:k"], args=[0])  # loaded, and the slots known
            master = client.get_node_from_key("{p:1}:k").port  # type: ignore[attr-defined]
            async with monitored(redis.masters) as commands:
                before = await redis.snapshot()
                for n in range(5):
                    await script(keys=["{p:1}:k"], args=[n])
                usage = await redis.since(before)
        finally:
            await client.aclose()
    on = {node.port: node.calls for node in usage.nodes}
    assert on[master]["evalsha"] == 5 and on[master]["hset"] == 5
    assert usage.calls("master")["evalsha"] == 5
    name = next(node.name for node in usage.nodes if node.port == master)
    assert name.startswith("master of slots ")
    assert commands[name][("client", "evalsha")] == 5
    assert commands[name][("script", "hset")] == 5
