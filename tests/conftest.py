"""Fixtures shared by all tests: a real Redis per test, real SQL stores, real processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio

from orchestra.redis_server import RedisServer
from tests.support.postgres import PostgresServer, postgres_database, postgres_server
from tests.support.processes import Deployment
from tests.support.redis import redis_server
from tests.support.redis_cluster import ClusterAsServer, RedisClusterHarness, redis_cluster
from tests.support.running import Running, start_running
from tests.support.webhooks import Receiver, serve_receiver

#: `ORCHESTRA_TEST_REDIS=cluster`: the `redis` fixture is a Redis Cluster (one per test
#: session and xdist worker, emptied before each test); tests that stop or restart "the"
#: Redis server are skipped.
REDIS_CLUSTER_MODE = os.environ.get("ORCHESTRA_TEST_REDIS", "") == "cluster"

#: Suites that also run on a Redis Cluster (three masters, three replicas) in every test
#: run: their tests are run twice, on one Redis and on the cluster (SQLite only there).
#: What they cover: docs/redis-cluster.md §5.3.
ON_CLUSTER_TOO = {
    "tests/actors/test_runtime.py",
    "tests/actors/test_commit.py",
    "tests/actors/test_dispatcher.py",
    "tests/actors/test_trim.py",
    "tests/actors/test_lease.py",
    "tests/jobs/test_leader.py",
    "tests/jobs/test_cleanup.py",
    "tests/e2e/test_walking_skeleton.py",
    "tests/e2e/test_multinode.py",
    "tests/e2e/test_output_batches.py",
    "tests/e2e/test_commands.py",
    "tests/e2e/test_command_acks.py",
    "tests/e2e/test_agent_reconnect.py",
    "tests/e2e/test_dispatch.py",
    "tests/e2e/test_permissions.py",
    "tests/e2e/test_notifications.py",
    "tests/e2e/test_webhooks.py",
    "tests/e2e/test_alerts.py",
    "tests/e2e/test_revocation.py",
    "tests/e2e/test_rate_limit.py",
    "tests/e2e/test_stream_trim.py",
    "tests/e2e/test_history_backwards.py",
    "tests/e2e/test_leader_jobs.py",
}


def _on_cluster_too(path: Path, root: Path) -> bool:
    return path.relative_to(root).as_posix() in ON_CLUSTER_TOO


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_cluster_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RedisClusterHarness | None]:
    """The session's Redis Cluster (one per xdist worker) when some test collected here
    runs on one (ORCHESTRA_TEST_REDIS=cluster, or `ON_CLUSTER_TOO`), else None."""
    root = request.config.rootpath
    wanted = REDIS_CLUSTER_MODE or any(
        _on_cluster_too(item.path, root) for item in request.session.items
    )
    if not wanted:
        yield None
        return
    async with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_kind(request: pytest.FixtureRequest) -> str:
    """`single` or `cluster`: which Redis the test's `redis` is."""
    return str(getattr(request, "param", "cluster" if REDIS_CLUSTER_MODE else "single"))


@pytest_asyncio.fixture
async def redis(
    tmp_path: Path, redis_kind: str, redis_cluster_session: RedisClusterHarness | None
) -> AsyncIterator[RedisServer]:
    """A private Redis server for one test (chaos tests may kill and restart it); on a
    cluster (`redis_kind`), the session's cluster, healed and emptied, with the `url` of
    a server (see `ClusterAsServer`)."""
    if redis_kind == "cluster":
        assert redis_cluster_session is not None
        await redis_cluster_session.heal()
        await redis_cluster_session.flushall()
        yield cast(RedisServer, ClusterAsServer(redis_cluster_session))
        return
    async with redis_server(tmp_path) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_server() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    """One PostgreSQL database for the whole test session (the store's own tests)."""
    async with postgres_database(pg_server) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_postgres_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test."""
    async with postgres_database(pg_server) as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """End-to-end tests run on SQLite and on PostgreSQL, except where the SQL backend
    plays no part (marked `sqlite_only`); the suites of `ON_CLUSTER_TOO` run on one Redis
    and on a Redis Cluster (with SQLite)."""
    on_sql = "database_url" in metafunc.fixturenames
    only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
    backends = ["sqlite"] if only_sqlite else ["sqlite", "postgres"]
    twice = (
        "redis" in metafunc.fixturenames
        and not REDIS_CLUSTER_MODE
        and _on_cluster_too(metafunc.definition.path, metafunc.config.rootpath)
    )
    if twice and on_sql:
        runs = [("single", backend) for backend in backends] + [("cluster", "sqlite")]
        metafunc.parametrize(
            ("redis_kind", "database_url"),
            [pytest.param(kind, sql, id=f"{sql}-{kind}") for kind, sql in runs],
            indirect=True,
        )
    elif twice:
        metafunc.parametrize("redis_kind", ["single", "cluster"], indirect=True)
    elif on_sql:
        metafunc.parametrize("database_url", backends, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQL store, SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'orchestra.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, redis: RedisServer, database_url: str
) -> Iterator[Deployment]:
    """Redis, SQL and the test's processes; `@pytest.mark.orchestra_env(NAME=value)` adds
    settings to the environment of every process the test starts."""
    deployment = Deployment(root=tmp_path, redis_url=redis.url, database_url=database_url)
    for marker in request.node.iter_markers("orchestra_env"):
        deployment.extra_env.update(marker.kwargs)
    try:
        yield deployment
    finally:
        deployment.stop_all()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on a free port of this machine, recording every delivery."""
    async with serve_receiver() as found:
        yield found


@pytest_asyncio.fixture
async def running(deployment: Deployment) -> Running:
    """alice, her agent, a gateway and the agent daemon, the agent online."""
    try:
        return await start_running(deployment)
    except Exception as exc:
        # A setup error gets no report section of its own (see the hook below): the
        # processes' logs go with the exception instead.
        exc.add_note(f"----- orchestra processes -----\n{deployment.logs()}")
        raise


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the logs of the test's gateway and agent processes."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "deployment" in getattr(item, "funcargs", {}):
        report.sections.append(("orchestra processes", item.funcargs["deployment"].logs()))
