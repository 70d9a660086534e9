"""A write on a connection the server has just closed is a `ConnectionError`, which the
cluster client tries again and our loops catch, not uvloop's ``RuntimeError`` (found by
tests/chaos/test_sessions_under_master_kill.py: a master's SIGKILL ended the gateways'
session feeds and `ask` reply readers for good)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestra.redis_failover import GuardedConnection, GuardedSSLConnection, connect_cluster
from tests.support.redis import redis_server

uvloop = pytest.importorskip("uvloop")  # what the gateway runs on (orchestra/cli.py)


def test_a_cluster_client_makes_guarded_connections_only() -> None:
    client = connect_cluster("redis+cluster://127.0.0.1:7001,127.0.0.1:7002")
    assert client.connection_kwargs["connection_class"] is GuardedConnection
    nodes = client.nodes_manager.startup_nodes.values()
    assert [node.connection_class for node in nodes] == [GuardedConnection] * 2
    secure = connect_cluster("rediss+cluster://127.0.0.1:7001")
    assert secure.connection_kwargs["connection_class"] is GuardedSSLConnection


async def _write_after_the_transport_closed(port: int, kind: type[Connection]) -> Exception:
    connection = kind(host="127.0.0.1", port=port, socket_timeout=2)
    await connection.connect()
    assert connection._writer is not None
    connection._writer.transport.abort()  # as when the server is killed
    await asyncio.sleep(0)
    try:
        await connection.send_command("PING")
    except Exception as exc:
        return exc
    finally:
        await connection.disconnect()
    raise AssertionError("the write on a closed transport raised nothing")


def test_a_write_on_a_closed_transport_is_a_connection_error(tmp_path: Path) -> None:
    async def main() -> tuple[Exception, Exception]:
        async with redis_server(tmp_path) as server:
            assert server.port is not None
            plain = await _write_after_the_transport_closed(server.port, Connection)
            guarded = await _write_after_the_transport_closed(server.port, GuardedConnection)
            return plain, guarded

    plain, guarded = uvloop.run(main())
    # What redis-py 8.1 lets through (if this starts failing, redis-py fixed it itself:
    # redis/redis-py#4288, and the guard may go).
    assert isinstance(plain, RuntimeError), repr(plain)
    assert isinstance(guarded, RedisConnectionError), repr(guarded)
