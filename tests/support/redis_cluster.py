"""A private Redis Cluster for tests: six `redis-server`s (three masters, a replica each).

    async with redis_cluster(tmp_dir, appendfsync="always") as cluster:
        client = connect(cluster.url)            # redis+cluster://127.0.0.1:p1,...
        port = await cluster.kill_master_of("k")  # SIGKILL, as a crash
        await cluster.wait_promoted("k", port)    # its replica serves the slot
        await cluster.restart(port)               # back, as the new master's replica

Each node is an `orchestra.redis_server.RedisServer` (a child process tied to ours,
driven without asyncio subprocesses, so a session-scoped cluster serves every test's
loop) with ``--cluster-enabled yes --cluster-node-timeout 2000`` and its append-only
file in ``<tmp_dir>/<port>``. The ports are below 55536 with port + 10000 free as well
(the cluster bus). Everything is stopped at the end, even when the body raises.

``--repl-diskless-sync-delay 0``: Redis 7.0 otherwise waits 5 s for more replicas before
a full sync, and a replica's PSYNC gave up first (it never synced, so never failed over).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

from orchestra.redis_server import AppendFsync, RedisServer, RedisServerError
from tests.support.processes import wait_for

__all__ = ["RedisClusterHarness", "redis_cluster"]

HOST = "127.0.0.1"
# Node ports are picked in [_LOW, _HIGH) and their bus ports 10000 higher, all under the
# kernel's ephemeral range (32768 and up), where outgoing connections take their ports.
_LOW, _HIGH = 12000, 22000
_BUS_OFFSET = 10000
_PORT_ATTEMPTS = 8
_taken: set[int] = set()  # ports this process handed out (a killed node's stays reserved)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_cluster_port() -> int:
    """A port under 55536 whose bus port (+10000) is free too, not handed out before."""
    for _ in range(1000):
        port = random.randrange(_LOW, _HIGH)
        if port in _taken or not _bindable(port) or not _bindable(port + _BUS_OFFSET):
            continue
        _taken.add(port)
        return port
    raise RedisServerError("no free pair of ports (node and bus) for a Redis Cluster node")


async def _ask(port: int, *command: Any, timeout_s: float = 1.0) -> Any:
    """One command to one node (no cluster redirections), on a short-lived connection."""
    client = aioredis.Redis(
        host=HOST,
        port=port,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def _cluster_ok(port: int) -> bool:
    info = await _ask(port, "CLUSTER", "INFO")
    if isinstance(info, dict):
        return info.get("cluster_state") == "ok"
    return "cluster_state:ok" in str(info)


async def _in_sync_replica(port: int) -> bool:
    info = await _ask(port, "INFO", "replication")
    return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")


class RedisClusterHarness:
    """Six nodes on 127.0.0.1; see the module docstring. Ports are fixed once started."""

    def __init__(
        self,
        tmp_dir: Path,
        *,
        appendfsync: AppendFsync = "always",
        node_timeout_ms: int = 2000,
        nodes: int = 6,
        replicas: int = 1,
    ) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.appendfsync: AppendFsync = appendfsync
        self.node_timeout_ms = node_timeout_ms
        self.size = nodes
        self.replicas = replicas
        self.servers: dict[int, RedisServer] = {}
        self._paused: set[int] = set()
        self.startup_s = 0.0  # how long start() took

    # -- what tests read ------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return list(self.servers)

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,...`` (every node: any of them starts discovery)."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.servers)

    def running(self, port: int) -> bool:
        return self.servers[port].running and port not in self._paused

    async def nodes(self, port: int | None = None) -> list[dict[str, Any]]:
        """CLUSTER NODES as node `port` (default: any live node) sees it: each node's port,
        role, master port, slots and whether it is flagged failing."""
        text = await (_ask(port, "CLUSTER", "NODES") if port else self._ask_any("CLUSTER", "NODES"))
        by_id: dict[str, dict[str, Any]] = {}
        for line in str(text).splitlines():
            fields = line.split()
            node_id, address, flags, master_id = fields[0], fields[1], fields[2], fields[3]
            flag_set = set(flags.split(","))
            by_id[node_id] = {
                "id": node_id,
                "port": int(address.split("@")[0].rsplit(":", 1)[1]),
                "role": "master" if "master" in flag_set else "replica",
                "master_id": None if master_id == "-" else master_id,
                "failed": bool(flag_set & {"fail", "fail?"}),
                "slots": fields[8:],
            }
        for node in by_id.values():
            master = by_id.get(node["master_id"] or "")
            node["master_port"] = master["port"] if master else None
        return sorted(by_id.values(), key=lambda node: node["port"])

    async def masters(self) -> list[int]:
        """Ports of the masters that serve slots (in the view of the live nodes' majority)."""
        views = [await self._slot_view(port) for port in self._live()]
        masters = Counter(port for view in views for port in set(view.values()))
        return sorted(port for port, votes in masters.items() if votes * 2 > len(views))

    async def replicas_of(self, master_port: int) -> list[int]:
        return [n["port"] for n in await self.nodes() if n["master_port"] == master_port]

    async def master_of(self, key: str) -> int:
        """The port of the master that serves `key`'s slot (the live nodes' majority)."""
        slot = key_slot(key.encode())
        votes = Counter[int]()
        for port in self._live():
            view = await self._slot_view(port)
            owner = next((m for (low, high), m in view.items() if low <= slot <= high), None)
            if owner is not None:
                votes[owner] += 1
        if not votes:
            raise AssertionError(f"no live node knows a master of slot {slot}")
        return votes.most_common(1)[0][0]

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the nodes, create the cluster, and return once it serves every slot."""
        # All tried to the end, so that none is left starting when one failed (stop()).
        results = await asyncio.gather(
            *(self._start_node() for _ in range(self.size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        command = [
            "redis-cli",
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.servers),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RedisServerError(
                f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}"
            )
        await self.wait_settled()

    async def stop(self) -> None:
        """Stop every node (SIGCONT first for a paused one). Safe to call twice."""
        for port in list(self._paused):
            self.resume(port)
        await asyncio.gather(*(server.stop() for server in self.servers.values()))

    async def _start_node(self) -> RedisServer:
        for _ in range(_PORT_ATTEMPTS):
            port = pick_cluster_port()
            server = RedisServer(
                data_dir=self.tmp_dir / str(port),
                port=port,
                appendfsync=self.appendfsync,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            )
            try:
                await server.start()
            except RedisServerError as exc:
                if "Address already in use" in str(exc):
                    continue  # taken since we looked (by another test run): another pair
                raise
            self.servers[port] = server
            return server
        raise RedisServerError("could not start a Redis Cluster node on a free port pair")

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        self._paused.discard(port)
        self.servers[port].kill()

    async def kill_master_of(self, key: str) -> int:
        """SIGKILL the master serving `key`; its port."""
        port = await self.master_of(key)
        self.kill(port)
        return port

    def pause(self, port: int) -> None:
        """SIGSTOP one node (it holds its connections, answers nothing)."""
        pid = self.servers[port].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(port)

    def resume(self, port: int) -> None:
        pid = self.servers[port].pid
        self._paused.discard(port)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def wait_promoted(self, key: str, old_port: int, timeout_s: float = 30.0) -> int:
        """Wait until another node is master of `key`'s slot and answers for it; its port."""

        async def promoted() -> int | None:
            try:
                port = await self.master_of(key)
                if port == old_port or not self.running(port):
                    return None
                await _ask(port, "EXISTS", key)  # MOVED or CLUSTERDOWN would raise
                return port if await _cluster_ok(port) else None
            except (RedisError, OSError):
                return None

        found: int = await wait_for(
            promoted, timeout_s=timeout_s, what=f"a new master for {key!r} (was :{old_port})"
        )
        return found

    async def restart(self, port: int) -> None:
        """Start a stopped node again on its port and data; it rejoins (a failed-over
        master as its successor's replica). Returns once the cluster has settled."""
        self.resume(port)
        if not self.servers[port].running:
            await self.servers[port].start()
        await self.wait_settled()

    async def heal(self) -> None:
        """Resume paused nodes, restart dead ones, wait until all is settled."""
        for port in list(self._paused):
            self.resume(port)
        for server in self.servers.values():
            if not server.running:
                await server.start()
        await self.wait_settled()

    async def wait_settled(self, timeout_s: float = 30.0) -> None:
        """Wait until every live node says cluster_state:ok, they agree on the slots'
        masters and on every live node's role, all 16384 slots are served, and every live
        replica is in sync."""

        async def settled() -> bool:
            try:
                live = self._live()
                views = []
                for port in live:
                    if not await _cluster_ok(port):
                        return False
                    views.append(await self._slot_view(port))
                if any(view != views[0] for view in views):
                    return False
                if sum(high - low + 1 for low, high in views[0]) != 16384:
                    return False
                masters = set(views[0].values())
                for port in live:
                    if port not in masters and not await _in_sync_replica(port):
                        return False
                # Every live node knows every other live one's role by now (gossip lags
                # behind `redis-cli --cluster create` and failovers), none failing.
                roles = []
                for port in live:
                    seen = {n["port"]: n for n in await self.nodes(port) if n["port"] in live}
                    if len(seen) != len(live) or any(n["failed"] for n in seen.values()):
                        return False
                    roles.append({p: (n["role"], n["master_port"]) for p, n in seen.items()})
                return all(view == roles[0] for view in roles)
            except (RedisError, OSError):
                return False

        await wait_for(settled, timeout_s=timeout_s, interval_s=0.05, what="the cluster to settle")

    async def flushall(self, timeout_s: float = 10.0) -> None:
        """Empty every master, and wait until their live replicas are empty too."""
        masters = await self.masters()
        for port in masters:
            await _ask(port, "FLUSHALL")

        async def empty() -> bool:
            for port in self._live():
                if port not in masters and int(await _ask(port, "DBSIZE")) != 0:
                    return False
            return True

        await wait_for(empty, timeout_s=timeout_s, interval_s=0.02, what="the replicas to flush")

    # -- internals --------------------------------------------------------------------------

    def _live(self) -> list[int]:
        return [port for port in self.servers if self.running(port)]

    async def _ask_any(self, *command: Any) -> Any:
        error: Exception | None = None
        for port in self._live():
            try:
                return await _ask(port, *command)
            except (RedisError, OSError) as exc:
                error = exc
        raise AssertionError(f"no live cluster node answered {command!r}: {error!r}")

    async def _slot_view(self, port: int) -> dict[tuple[int, int], int]:
        """(first slot, last slot) -> master port, in one node's CLUSTER SLOTS."""
        answer = await _ask(port, "CLUSTER", "SLOTS")
        return {(int(row[0]), int(row[1])): int(row[2][1]) for row in answer}


@asynccontextmanager
async def redis_cluster(tmp_dir: Path, **options: Any) -> AsyncIterator[RedisClusterHarness]:
    """A started cluster with its data under `tmp_dir`, stopped at the end (even when the
    body or the start raises). `options`: see `RedisClusterHarness`."""
    cluster = RedisClusterHarness(Path(tmp_dir), **options)
    started_at = time.monotonic()
    try:
        await cluster.start()
        cluster.startup_s = time.monotonic() - started_at
        yield cluster
    finally:
        await cluster.stop()


class ClusterAsServer:
    """What the `redis` fixture gives under ``ORCHESTRA_TEST_REDIS=cluster``: the
    cluster's `url` where a `RedisServer` is expected, and `cluster` itself. A test that
    stops, kills or restarts "the" Redis server, or reads its port, pid or data folder,
    needs a single server: it is skipped there, with that reason."""

    _SINGLE_ONLY = frozenset(
        {"port", "host", "pid", "running", "data_dir", "log_path", "appendfsync"}
    )

    def __init__(self, cluster: RedisClusterHarness) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.cluster.url

    def _single_only(self, what: str) -> Any:
        import pytest

        pytest.skip(
            f"needs a single Redis server (RedisServer.{what}); ORCHESTRA_TEST_REDIS=cluster"
        )

    async def stop(self) -> None:
        self._single_only("stop")

    async def start(self) -> None:
        self._single_only("start")

    async def restart(self) -> None:
        self._single_only("restart")

    def kill(self) -> None:
        self._single_only("kill")

    def __getattr__(self, name: str) -> Any:
        if name in self._SINGLE_ONLY:
            return self._single_only(name)
        raise AttributeError(name)
