"""Child processes of the benchmarks: Python modules run as servers, and an Orchestra
deployment (Redis, SQLite and whatever processes the benchmark starts in it), each stopped
on the way out and its log shown when something failed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from orchestra.redis_server import RedisServer
from tests.support.processes import Deployment, Process


def open_log(path: Path) -> BinaryIO:
    """A log opened for appending: a child process writes to its own copy."""
    return open(path, "ab")


def start_module(
    root: Path,
    name: str,
    module: list[str],
    *,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], Any] | None = None,
) -> Process:
    """`python -m <module...>` as a child, its output in `<root>/<name>.log`."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{name}.log"
    with open_log(log_path) as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", *module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    return Process(name=name, popen=popen, log_path=log_path)


@asynccontextmanager
async def spawned(
    root: Path,
    name: str,
    module: list[str],
    *,
    preexec_fn: Callable[[], Any] | None = None,
) -> AsyncIterator[Process]:
    """`start_module`, stopped on the way out; its log's tail printed when something failed."""
    process = start_module(root, name, module, preexec_fn=preexec_fn)
    try:
        yield process
    except BaseException:
        print(f"----- {name} -----\n{process.log()[-4000:]}", file=sys.stderr)
        raise
    finally:
        process.stop()


@asynccontextmanager
async def orchestra_deployment(
    root: Path, folder: Path, *, appendonly: bool = True
) -> AsyncIterator[tuple[RedisServer, Deployment]]:
    """A Redis server (its data in `<root>/redis`) and a deployment in `folder` using it
    and SQLite (`<root>/o.db`). The logs of the deployment's processes go to standard
    error when something fails; they are all stopped on the way out."""
    async with RedisServer(data_dir=root / "redis", appendonly=appendonly) as redis:
        with logged(Deployment(folder, redis.url, f"sqlite+aiosqlite:///{root}/o.db")) as made:
            yield redis, made


@contextmanager
def logged(deployment: Deployment) -> Iterator[Deployment]:
    """`deployment`, its processes' logs printed to standard error when something fails,
    every process stopped on the way out."""
    try:
        yield deployment
    except BaseException:
        print(deployment.logs(), file=sys.stderr)
        raise
    finally:
        deployment.stop_all()
