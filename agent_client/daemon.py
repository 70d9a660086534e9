"""The agent daemon: registration, heartbeats, pings, and the commands of the gateway.

`AgentDaemon.run` keeps a connection to the gateway (see `connection`), registers on every
(re)connect with what it still holds (`lastCommandId`, `runningTasks`), sends heartbeats,
answers pings, and hands each command to the task manager once (see `commands`). It runs
until cancelled or until SIGINT/SIGTERM, then stops its workers and disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from agent_client.commands import CommandLog
from agent_client.connection import AgentConnection, Handler, LinkDown, Session, response_error
from agent_client.tasks import TaskManager
from agent_client.workdirs import allowed_roots
from agent_client.workers import discover, load_workers
from orchestra.aio import cancel_and_wait
from orchestra.codec import now_iso
from orchestra.loop_watch import LoopWatch, settle_heap
from orchestra.settings import Settings, SettingsError

__all__ = ["AgentDaemon", "agent_version", "run_agent"]

log = logging.getLogger(__name__)

# How long a shutting-down daemon waits for its last output and results to be acknowledged.
_FLUSH_TIMEOUT_S = 5.0


def agent_version() -> str:
    """Orchestra's version string, as `agent:register` reports it."""
    try:
        return importlib.metadata.version("orchestra")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class AgentDaemon:
    """One agent: a connection to the gateway and the workers it runs."""

    def __init__(self, settings: Settings) -> None:
        """Raises `SettingsError` when the agent id or its secret is missing."""
        if not settings.agent_id:
            raise SettingsError("no agent id: set ORCHESTRA_AGENT_ID or --agent-id")
        self.settings = settings
        secret = settings.read_agent_secret()  # fail at start, not at the first connect
        settings.agent_state_dir.mkdir(parents=True, exist_ok=True)
        self.commands = CommandLog(settings.agent_state_dir / "last-command-id")
        handlers: dict[str, Handler] = {
            "task:assign": self._command("task:assign", self._assign),
            "worker:input": self._command("worker:input", self._input),
            "worker:stop": self._command("worker:stop", self._stop_worker),
            "worker:permission": self._command("worker:permission", self._permission),
            "ping": self._on_ping,
            "agent:registered": self._on_registered,
        }
        self.connection = AgentConnection(settings, secret, handlers, self._register)
        self.workers = load_workers()
        self.tasks = TaskManager(settings, self.connection, secret, self.workers)
        self._stop = asyncio.Event()
        # The version of the recent working directories the gateway has been told.
        self._reported_recent = -1

    # -- life cycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled, `request_stop`, SIGINT or SIGTERM; then shut down cleanly."""
        installed = self._install_signal_handlers()
        watch = None
        if self.settings.loop_stall_warn_ms:
            watch = LoopWatch(self.settings.loop_stall_warn_ms / 1000)
            await watch.start()
        await self._find_tools()
        self.tasks.restore()
        settle_heap()  # what the start made lives as long as the daemon
        connection = asyncio.create_task(self.connection.run(), name="agent-connection")
        heartbeat = asyncio.create_task(self._heartbeats(), name="agent-heartbeat")
        log.info("agent %s starting, gateway %s", self.settings.agent_id, self.settings.server_url)
        try:
            await self._stop.wait()
        finally:
            log.info("agent %s shutting down", self.settings.agent_id)
            heartbeat.cancel()
            flush = _FLUSH_TIMEOUT_S if self.connection.session is not None else 0.0
            await self.tasks.shutdown(flush)
            connection.cancel()
            for task in (heartbeat, connection):
                await cancel_and_wait(task)
            await self.connection.close()
            self._remove_signal_handlers(installed)
            if watch is not None:
                await watch.stop()
            log.info("agent %s stopped", self.settings.agent_id)

    def request_stop(self) -> None:
        """Ask `run` to shut down (what SIGINT and SIGTERM do)."""
        self._stop.set()

    def _install_signal_handlers(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread (tests), or no signals here
            installed.append(sig)
        return installed

    def _remove_signal_handlers(self, installed: list[signal.Signals]) -> None:
        loop = asyncio.get_running_loop()
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    # -- connection events -------------------------------------------------------------

    async def _find_tools(self) -> None:
        """Which tools of those this agent knows are installed here (and their versions);
        `AGENT_TOOLS` narrows them down to the ones listed."""
        found = await discover(self.workers)
        wanted = set(self.settings.agent_tools)
        tools = {t.name: t for t in found if not wanted or t.name in wanted}
        self.tasks.tools = tools
        log.info(
            "tools: %s",
            ", ".join(f"{t.name} {t.version or ''}".strip() for t in tools.values()) or "none",
        )

    def registration(self) -> dict[str, Any]:
        """The `agent:register` payload, as of now."""
        tools = list(self.tasks.tools.values())
        capabilities = list(self.settings.agent_capabilities)
        capabilities += [t.name for t in tools if t.name not in capabilities]
        return {
            "agentId": self.settings.agent_id,
            "name": self.settings.agent_name or socket.gethostname() or self.settings.agent_id,
            "capabilities": capabilities,
            "tools": [t.wire() for t in tools],
            "agentVersion": agent_version(),
            "metadata": {
                "allowedRoots": [str(r) for r in allowed_roots(self.settings)],
                "recentWorkdirs": self.tasks.recent.items,
            },
            "maxConcurrency": self.settings.agent_max_concurrency,
            "lastCommandId": self.commands.last,
            "runningTasks": self.tasks.running_tasks(),
        }

    async def _register(self, session: Session) -> bool:
        """Register on a new connection; True when the gateway took it."""
        recent_version = self.tasks.recent.version
        response = await session.request(
            "agent:register", self.registration(), self.settings.connection_timeout_s
        )
        error = response_error(response)
        if error is not None:
            log.error("the gateway refused the registration (%s: %s)", *error)
            return False
        self._reported_recent = recent_version
        data = response.get("data") or {}
        log.info(
            "registered as %s; the gateway lists %d task(s) as assigned",
            self.settings.agent_id,
            len(data.get("assignedTasks") or []),
        )
        return True

    async def _on_registered(self, data: dict[str, Any]) -> None:
        log.debug("agent:registered %s", data.get("agentId"))

    async def _on_ping(self, data: dict[str, Any]) -> None:
        """Answer `ping {timestamp}` with `pong` echoing the same timestamp."""
        session = self.connection.current
        if session is not None:
            with contextlib.suppress(LinkDown):
                await session.emit("pong", {"timestamp": data.get("timestamp")})

    async def _heartbeats(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading only sets the baseline
        recent = self.tasks.recent
        while True:
            session = await self.connection.wait_ready()
            recent.changed.clear()
            version = recent.version
            try:
                await session.emit(
                    "agent:heartbeat",
                    self._heartbeat(),
                    functools.partial(self._heartbeat_ack, recent_version=version),
                )
            except LinkDown:
                continue
            # A new connection gets its heartbeat at once, not an interval later; so do
            # new recent working directories.
            waits = [asyncio.create_task(e.wait()) for e in (session.closed, recent.changed)]
            try:
                await asyncio.wait(
                    waits, timeout=self.settings.heartbeat_interval_s, return_when="FIRST_COMPLETED"
                )
            finally:
                for waiting in waits:
                    waiting.cancel()

    def _heartbeat(self) -> dict[str, Any]:
        """`agent:heartbeat`, with `metadata.recentWorkdirs` while the gateway has not
        acknowledged the list as it is now."""
        try:
            disk = psutil.disk_usage(str(self.settings.agent_state_dir)).percent
        except OSError:
            disk = 0.0
        heartbeat: dict[str, Any] = {
            "agentId": self.settings.agent_id,
            "timestamp": now_iso(),
            "systemInfo": {
                "cpu": psutil.cpu_percent(interval=None),
                "memory": psutil.virtual_memory().percent,
                "disk": disk,
            },
        }
        if self.tasks.recent.version != self._reported_recent:
            heartbeat["metadata"] = {"recentWorkdirs": self.tasks.recent.items}
        return heartbeat

    def _heartbeat_ack(self, response: Any, recent_version: int) -> None:
        error = response_error(response)
        if error is not None:
            log.warning("heartbeat refused (%s: %s)", *error)
        else:
            self._reported_recent = max(self._reported_recent, recent_version)

    # -- commands ----------------------------------------------------------------------

    def _command(self, event: str, action: Callable[[dict[str, Any]], Awaitable[None]]) -> Handler:
        """A command handler: taken once by commandId, acknowledged with `{commandId}`."""

        async def handle(data: dict[str, Any]) -> Any:
            command_id = data.get("commandId")
            if not isinstance(command_id, int) or isinstance(command_id, bool) or command_id < 1:
                log.error("%s without a valid commandId, ignored", event)
                return None
            return await self.commands.take(command_id, lambda: action(data))

        return handle

    async def _assign(self, data: dict[str, Any]) -> None:
        if data.get("agentId") not in (None, self.settings.agent_id):
            log.warning("task:assign addressed to agent %r, not us", data.get("agentId"))
        await self.tasks.assign(data)

    async def _input(self, data: dict[str, Any]) -> None:
        await self.tasks.input(data)

    async def _stop_worker(self, data: dict[str, Any]) -> None:
        await self.tasks.stop(data)

    async def _permission(self, data: dict[str, Any]) -> None:
        await self.tasks.permission(data)


async def run_agent(settings: Settings) -> None:
    """Run an agent daemon until cancelled or signalled (`asyncio.run(run_agent(s))`)."""
    await AgentDaemon(settings).run()
