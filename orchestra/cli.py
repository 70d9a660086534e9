"""The `orchestra` command: a thin layer over `Settings` and the parts it starts.

    orchestra up                         everything on one machine, embedded defaults
    orchestra gateway                    one gateway node
    orchestra agent                      the agent daemon
    orchestra agent create NAME          register an agent; prints its id and secret once
    orchestra user create NAME [--admin] create a user
    orchestra run [--agent ID] -- CMD…   run a command on an agent, in this terminal
    orchestra watch SESSION              follow a session's output
    orchestra status [--json]            the cluster: nodes, leader, agents, queue, alerts
    orchestra redis migrate [--dry-run]  move Redis data of an older key layout (all stopped)

The gateway and the agent daemon are imported only by the command that runs them, so
`orchestra` itself stays free of the other packages (DESIGN.md §1).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import logging
import os
import secrets
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from orchestra.errors import OrchestraError
from orchestra.files import PRIVATE_DIR, tighten
from orchestra.logs import FORMATS, configure, resolve_format
from orchestra.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
    except SettingsError as exc:
        print(f"orchestra: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OrchestraError as exc:
        print(f"orchestra: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return result


def load_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    given = {
        "profile": getattr(args, "profile", None),
        "redis_url": getattr(args, "redis_url", None),
        "database_url": getattr(args, "database_url", None),
        "data_dir": getattr(args, "data_dir", None),
        "log_format": getattr(args, "log_format", None),
        **overrides,
    }
    return Settings.load(config_file=getattr(args, "config", None), **given)


# -- commands ----------------------------------------------------------------------------


def run_gateway(args: argparse.Namespace) -> int:
    settings = load_settings(args, host=args.host, port=args.port, node_id=args.node_id)
    configure(settings.log_level, settings.log_format, {"nodeId": settings.node_id})
    # The data folder holds secrets: the owner's only (logged when it had to be tightened).
    tighten(settings.data_dir, PRIVATE_DIR, "data folder")
    # Redis must hold this version's key layout: else one line, status 2, no server.
    asyncio.run(importlib.import_module("gateway.keyspace").check(settings))
    app_module = importlib.import_module("gateway.app")
    app = app_module.create_app(settings, name=_app_name(settings.node_id))
    started = f"orchestra gateway {settings.node_id} on http://{settings.host}:{settings.port}"
    if resolve_format(settings.log_format) == "json":
        logging.getLogger("orchestra.cli").info("%s", started)  # every line JSON
    else:
        print(started, flush=True)
    app.run(
        host=settings.host,
        port=settings.port,
        single_process=True,
        access_log=False,
        motd=False,
    )
    return 0


def run_agent(args: argparse.Namespace) -> int:
    settings = load_settings(
        args,
        server_url=args.server,
        agent_id=args.agent_id,
        agent_secret_file=args.secret_file,
        agent_name=args.name,
        agent_state_dir=args.state_dir,
        agent_max_concurrency=args.max_concurrency,
    )
    if not settings.agent_id:
        raise SettingsError("no agent id: pass --agent-id or set ORCHESTRA_AGENT_ID")
    settings.read_agent_secret()  # fail early, before connecting, when there is none
    updates: dict[str, Any] = {}
    if args.state_dir is None and "ORCHESTRA_AGENT_STATE_DIR" not in os.environ:
        updates["agent_state_dir"] = settings.data_dir / "agents" / settings.agent_id
    if not settings.agent_name:
        updates["agent_name"] = settings.agent_id
    settings = settings.model_copy(update=updates)
    configure(settings.log_level, settings.log_format, {"agentId": settings.agent_id})
    daemon = importlib.import_module("agent_client")
    try:
        _run_fast(daemon.run_agent(settings))
    except KeyboardInterrupt:
        pass
    return 0


def create_agent(args: argparse.Namespace) -> int:
    settings = load_settings(args)

    async def create() -> tuple[str, str]:
        store = await _store(settings)
        try:
            owner = await store.get_user_by_name(args.owner) if args.owner else None
            if owner is None:
                admins = [u for u in await store.list_users() if u.is_admin]
                if args.owner or not admins:
                    raise SettingsError(
                        "no such owner: create a user first (orchestra user create NAME --admin)"
                    )
                owner = admins[0]
            agent, secret = await store.create_agent(
                args.name, owner.id, args.capability or ["custom"]
            )
            return agent.id, secret
        finally:
            await store.close()

    agent_id, secret = asyncio.run(create())
    if args.secret_file:
        _write_private(Path(args.secret_file), secret)
    print(f"agent id:     {agent_id}")
    if args.secret_file:
        print(f"secret file:  {args.secret_file}")
    else:
        print(f"agent secret: {secret}   (shown this once)")
    return 0


def create_user(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    password = args.password or os.environ.get("ORCHESTRA_NEW_PASSWORD")
    generated = False
    if not password:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.name}: ")
        else:
            password, generated = secrets.token_urlsafe(12), True

    async def create() -> str:
        store = await _store(settings)
        try:
            user = await store.create_user(args.name, password, is_admin=args.admin)
            return str(user.id)
        finally:
            await store.close()

    user_id = asyncio.run(create())
    print(f"user {args.name} created (id {user_id}{', admin' if args.admin else ''})")
    if generated:
        print(f"password: {password}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from orchestra.terminal import run_worker

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SettingsError("nothing to run: orchestra run [options] -- COMMAND [ARGS…]")
    user, password = _credentials(args)
    return asyncio.run(
        run_worker(
            _servers(args), user, password, command,
            agent_id=args.agent, session_id=args.session, working_directory=args.cwd,
        )
    )  # fmt: skip


def run_watch(args: argparse.Namespace) -> int:
    from orchestra.terminal import watch_session

    user, password = _credentials(args)
    return asyncio.run(watch_session(_servers(args), user, password, args.session))


def _run_fast(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a long-lived daemon on uvloop where it is installed (as Sanic does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _servers(args: argparse.Namespace) -> list[str]:
    given = args.server or os.environ.get("ORCHESTRA_SERVER_URL") or "http://127.0.0.1:8080"
    return [url.strip() for url in given.split(",") if url.strip()]


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The user to act as: --user or ORCHESTRA_USER, and ORCHESTRA_PASSWORD or a prompt."""
    user = args.user or os.environ.get("ORCHESTRA_USER")
    if not user:
        raise SettingsError("who are you? pass --user or set ORCHESTRA_USER")
    password = os.environ.get("ORCHESTRA_PASSWORD") or getpass.getpass(f"password for {user}: ")
    return user, password


def run_status(args: argparse.Namespace) -> int:
    """The cluster from Redis and SQL (`gateway.status`): a text table, or `--json`."""
    import json

    from orchestra.up import running_redis_file

    settings = load_settings(args)
    # On the data folder of a running `orchestra up`, its private Redis, unless a Redis
    # was named (flag, environment or config file).
    running = running_redis_file(settings.data_dir)
    named = (
        getattr(args, "redis_url", None)
        or os.environ.get("ORCHESTRA_REDIS_URL")
        or getattr(args, "config", None)
    )
    if not named and running.is_file():
        settings = load_settings(args, redis_url=running.read_text().strip())
    status_module = importlib.import_module("gateway.status")
    status = asyncio.run(status_module.collect(settings))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(status_module.render(status), end="")
    return 0


def run_redis_migrate(args: argparse.Namespace) -> int:
    """Move the data of an older key layout to this version's (`gateway.migrate`)."""
    settings = load_settings(args, partitions=args.partitions)  # (validated there)
    migrate = importlib.import_module("gateway.migrate").migrate
    report = asyncio.run(
        migrate(
            settings.redis_url,
            settings.partitions,
            dry_run=args.dry_run,
            say=lambda line: print(line, flush=True),
        )
    )
    print(("dry run, nothing changed: would have " if args.dry_run else "") + report.line())
    return 0


def run_up(args: argparse.Namespace) -> int:
    from orchestra.up import up

    return up(args)


# -- helpers -----------------------------------------------------------------------------


async def _store(settings: Settings) -> Any:
    from orchestra.db import Store

    return await Store.connect(settings.database_url, secrets_key=settings.secrets_key)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _app_name(node_id: str) -> str:
    # Sanic app names allow letters, digits, _ and -.
    return "orchestra_" + "".join(c if c.isalnum() or c in "_-" else "_" for c in node_id)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="a TOML settings file")
    parser.add_argument("--profile", choices=["development", "production"])
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    parser.add_argument("--data-dir", type=Path)


def _log_format(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        help=f"json (a JSON object a line), text, or auto: text on a terminal, else JSON "
        f"(default: ORCHESTRA_LOG_FORMAT, or {default})",
    )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", help="gateway URL(s), comma-separated (default: ORCHESTRA_SERVER_URL)"
    )
    parser.add_argument("--user", help="default: ORCHESTRA_USER; password: ORCHESTRA_PASSWORD")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestra", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(title="commands")

    up = commands.add_parser("up", help="run everything on this machine (embedded defaults)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path, default=Path(".orchestra"))
    up.add_argument("--no-agent", action="store_true", help="do not start the local agent")
    _log_format(up, "text")
    up.set_defaults(run=run_up)

    gateway = commands.add_parser("gateway", help="run one gateway node")
    _common(gateway)
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)
    gateway.add_argument("--node-id")
    _log_format(gateway)
    gateway.set_defaults(run=run_gateway)

    agent = commands.add_parser("agent", help="run the agent daemon (or: agent create NAME)")
    _common(agent)
    agent.add_argument(
        "--server", help="the gateway's URL, or several comma-separated to move between"
    )
    agent.add_argument("--agent-id")
    agent.add_argument("--secret-file", type=Path)
    agent.add_argument("--name")
    agent.add_argument("--state-dir", type=Path)
    agent.add_argument("--max-concurrency", type=int)
    _log_format(agent)
    agent.set_defaults(run=run_agent)
    agent_commands = agent.add_subparsers(title="agent commands")
    agent_create = agent_commands.add_parser("create", help="register an agent")
    _common(agent_create)
    agent_create.add_argument("name")
    agent_create.add_argument("--owner", help="username of the owner (default: an admin)")
    agent_create.add_argument(
        "--capability", action="append", default=None, help="repeatable; default: custom"
    )
    agent_create.add_argument("--secret-file", help="write the secret to this file (mode 600)")
    agent_create.set_defaults(run=create_agent)

    run = commands.add_parser("run", help="run a command on an agent, in this terminal")
    _client_options(run)
    run.add_argument("--agent", help="the agent's id (default: the dispatcher picks one)")
    run.add_argument("--session", help="run in this session (default: a new one)")
    run.add_argument("--cwd", help="the working directory on the agent")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS…]")
    run.set_defaults(run=run_command)

    watch = commands.add_parser("watch", help="follow a session's output")
    _client_options(watch)
    watch.add_argument("session")
    watch.set_defaults(run=run_watch)

    status = commands.add_parser("status", help="the cluster: nodes, leader, agents, queue, alerts")
    _common(status)
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.set_defaults(run=run_status)

    redis = commands.add_parser("redis", help="maintain the data in Redis")
    redis_commands = redis.add_subparsers(title="redis commands")
    migrate = redis_commands.add_parser(
        "migrate",
        help="move data of an older key layout to this version's (every gateway stopped)",
    )
    _common(migrate)
    migrate.add_argument(
        "--partitions", type=int, help="the partition count (default: ORCHESTRA_PARTITIONS)"
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="say what it would do; change nothing"
    )
    migrate.set_defaults(run=run_redis_migrate)

    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(title="user commands")
    user_create = user_commands.add_parser("create", help="create a user")
    _common(user_create)
    user_create.add_argument("name")
    user_create.add_argument("--admin", action="store_true")
    user_create.add_argument("--password", help="default: asked for, or generated and printed")
    user_create.set_defaults(run=create_user)
    return parser
