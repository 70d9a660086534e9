"""Fixtures shared by all tests: a real Redis per test, real SQL stores, real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from orchestra.redis_server import RedisServer
from tests.support.postgres import PostgresServer, postgres_database, postgres_server
from tests.support.processes import Deployment
from tests.support.redis import redis_server
from tests.support.running import Running, start_running
from tests.support.webhooks import Receiver, serve_receiver


@pytest_asyncio.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private Redis server for one test (chaos tests may kill and restart it)."""
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
    plays no part (marked `sqlite_only`)."""
    if "database_url" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        backends = ["sqlite"] if only_sqlite else ["sqlite", "postgres"]
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
