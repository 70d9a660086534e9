"""Delivery of the notifications stream, once per event and target whichever node sees it.

Actors append notifications to the Redis stream `keys.webhook_events()` inside their turns
(`actors.notifications.notify`; the output script appends `input.requested`). Each kind of
delivery (users' webhooks, Web Push to their devices) is a `NotificationConsumer`: its own
consumer group on that stream, of which every node is one consumer (its node id), so
Redis hands each entry of a group to one node. For an entry, the consumer finds the
owner's targets that want its kind and delivers to each.

A target done is recorded in a Redis set per entry and group that outlives the node; a
failed attempt is retried 1 s, 2 s, 4 s... later, up to `webhook_max_attempts` tries, then
given up with one log line. The entry is acknowledged once every target is done or given
up. An entry a dead node left pending for `webhook_claim_idle_s` is taken over
(XAUTOCLAIM) by another node, which skips the targets already done; a node still retrying
an entry keeps claiming it (XCLAIM JUSTID) so that no one takes it from under it.
Secrets and URLs never reach the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from actors.notifications import EVENTS
from actors.values import strings, text
from orchestra import keys
from orchestra.db import Store, StoreError
from orchestra.settings import Settings

__all__ = ["GiveUp", "Notification", "NotificationConsumer", "why"]

log = logging.getLogger(__name__)

READ_COUNT = 16
READ_BLOCK_MS = 1000
MAX_IN_FLIGHT = 64  # entries one node handles at once, per group
FIRST_RETRY_S = 1.0
DELIVERED_TTL_S = 24 * 3600
ERROR_PAUSE_MAX_S = 5.0

Target = TypeVar("Target")


class GiveUp(Exception):
    """An attempt failed in a way another attempt would not mend (the reason, loggable)."""


@dataclass(frozen=True)
class Notification:
    """One entry of the event stream, as `actors.notifications.notification_fields` wrote it."""

    entry_id: str
    kind: str
    user_id: str
    key: str
    data: dict[str, Any]
    at: str

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> Notification:
        """ValueError when the entry is not a notification."""
        kind, user_id, key = fields.get("kind"), fields.get("userId"), fields.get("key")
        if kind not in EVENTS or not user_id or not key:
            raise ValueError("not a notification")
        data = json.loads(fields.get("data") or "{}")
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        return cls(entry_id, kind, user_id, key, data, fields.get("at", ""))


class NotificationConsumer(Generic[Target]):
    """One node's consumer of the notifications stream for one kind of delivery.

    A subclass names its `group`, finds an entry's `targets`, says a target's `target_id`
    and makes one `attempt` (with `post`, say): None when the target took it, else why not
    (tried again), or `GiveUp`. `still_wanted` may drop an entry that no longer matters
    when it comes up.
    """

    group: str = ""

    def __init__(self, redis: Redis, store: Store, settings: Settings) -> None:
        self._redis = redis
        self._store = store
        self._settings = settings
        self._consumer = settings.node_id
        self._stream = self.stream()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    # ---- what a kind of delivery says ------------------------------------------------------

    async def targets(self, note: Notification) -> list[Target]:
        raise NotImplementedError

    def target_id(self, target: Target) -> str:
        raise NotImplementedError

    async def attempt(self, note: Notification, target: Target) -> str | None:
        raise NotImplementedError

    def stream(self) -> str:
        """The stream this kind of delivery reads (another kind than users' notifications,
        alerts, has its own)."""
        return keys.webhook_events()

    def parse(self, entry_id: str, fields: dict[str, str]) -> Notification:
        """An entry of the stream; ValueError when it is not one this consumer delivers."""
        return Notification.from_fields(entry_id, fields)

    async def still_wanted(self, note: Notification) -> bool:
        return True

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | str:
        """POST `body` to `url`: the answer's status, or why there was none (never the
        URL, which the exception's message may carry)."""
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s)
        try:
            async with self._http.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as answer:
                return answer.status
        except TimeoutError:
            return f"no answer within {self._settings.webhook_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return type(exc).__name__

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._loops = [
            asyncio.create_task(self._read_loop(), name=f"{self.group}-read"),
            asyncio.create_task(self._claim_loop(), name=f"{self.group}-claim"),
        ]

    async def stop(self) -> None:
        """Stop reading and delivering. Entries being delivered stay pending: another node
        (or this one, started again) takes them over."""
        tasks = [*self._loops, *self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops, self._in_flight = [], {}
        if self._http is not None:
            await self._http.close()
            self._http = None

    # ---- reading and claiming --------------------------------------------------------------

    async def _ensure_group(self) -> None:
        try:
            # From the stream's start: nothing written before any node listened is lost.
            await self._redis.xgroup_create(self._stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_loop(self) -> None:
        pause = 0.0
        ready = False
        after = "0"  # first this consumer's own pending entries (a restart), then new ones
        while True:
            if pause:
                await asyncio.sleep(pause)
            try:
                if not ready:
                    await self._ensure_group()
                    ready = True
                await self._wait_for_room()
                entries = await self._read(after)
                pause = 0.0
            except RedisError as exc:
                # NOGROUP after a Redis restart without its data, or Redis away for a while.
                ready = False
                pause = min(max(pause * 2, 0.5), ERROR_PAUSE_MAX_S)
                log.warning("%s: reading the event stream failed (%s)", self.group, why(exc))
                continue
            except Exception:
                # A bug: say so, and keep delivering rather than stop for good.
                pause = ERROR_PAUSE_MAX_S
                log.exception("%s: reading the event stream failed", self.group)
                continue
            if after != ">":
                after = entries[-1][0] if entries else ">"
            for entry_id, fields in entries:
                self._spawn(entry_id, fields)

    async def _read(self, after: str) -> list[tuple[str, dict[str, str]]]:
        answer: Any = await self._redis.xreadgroup(
            self.group,
            self._consumer,
            {self._stream: after},
            count=min(READ_COUNT, MAX_IN_FLIGHT - len(self._in_flight)),
            block=READ_BLOCK_MS if after == ">" else None,
        )
        if not answer:
            return []
        return [(text(entry_id), strings(fields or {})) for entry_id, fields in answer[0][1] or []]

    async def _claim_loop(self) -> None:
        interval = max(0.1, self._settings.webhook_claim_idle_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._keep_claimed()
                await self._take_over()
            except RedisError as exc:
                log.warning("%s: claiming entries failed (%s)", self.group, why(exc))
            except Exception:
                log.exception("%s: claiming entries failed", self.group)

    async def _keep_claimed(self) -> None:
        """Reset the idle time of the entries this node is still working on; stop working
        on any another node has taken meanwhile (this node stalled past the claim time)."""
        # Only entries spawned before the question count: one read meanwhile is not in it.
        working = dict(self._in_flight)
        if not working:
            return
        pending = await self._redis.xpending_range(
            self._stream, self.group, "-", "+", MAX_IN_FLIGHT * 4, consumername=self._consumer
        )
        mine = {text(p["message_id"]) for p in pending}
        for entry_id, task in working.items():
            if entry_id not in mine and not task.done():
                # Acknowledged just now (harmless to cancel), or taken by another node.
                task.cancel()
        held: list[Any] = [entry_id for entry_id in working if entry_id in mine]
        if held:
            await self._redis.xclaim(self._stream, self.group, self._consumer, 0, held, justid=True)

    async def _take_over(self) -> None:
        """Claim entries left pending longer than the claim time (a dead node's)."""
        idle_ms = int(self._settings.webhook_claim_idle_s * 1000)
        start = "0-0"
        while len(self._in_flight) < MAX_IN_FLIGHT:
            count = min(READ_COUNT, MAX_IN_FLIGHT - len(self._in_flight))
            answer: Any = await self._redis.xautoclaim(
                self._stream, self.group, self._consumer, idle_ms, start_id=start, count=count
            )
            for raw_id, raw_fields in answer[1] or []:
                if raw_id is None:
                    continue
                entry_id = text(raw_id)
                if not raw_fields:  # trimmed from the stream before anyone delivered it
                    await self._ack(entry_id)
                elif entry_id not in self._in_flight:
                    log.info("%s: took over entry %s", self.group, entry_id)
                    self._spawn(entry_id, strings(raw_fields))
            start = text(answer[0])
            if start in ("0-0", "0"):
                return

    async def _wait_for_room(self) -> None:
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            self._room.clear()
            await self._room.wait()

    def _spawn(self, entry_id: str, fields: dict[str, str]) -> None:
        if entry_id in self._in_flight:
            return
        task = asyncio.create_task(self._handle(entry_id, fields), name=f"{self.group}-{entry_id}")
        self._in_flight[entry_id] = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._in_flight.get(entry_id) is done:
                del self._in_flight[entry_id]
            self._room.set()

        task.add_done_callback(finished)

    # ---- delivering ------------------------------------------------------------------------

    def _delivered_key(self, entry_id: str) -> str:
        return keys.notification_delivered(self.group, entry_id)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            note = self.parse(entry_id, fields)
        except ValueError:
            log.warning("%s: entry %s is not a notification; dropped", self.group, entry_id)
            await self._ack(entry_id)
            return
        try:
            found = await self.targets(note) if await self.still_wanted(note) else []
            done = {text(v) for v in await self._redis.smembers(self._delivered_key(entry_id))}
        except (StoreError, RedisError) as exc:
            # Left pending: taken over again (by any node) once it has been idle long enough.
            log.warning("%s: entry %s postponed (%s)", self.group, entry_id, why(exc))
            return
        todo = [target for target in found if self.target_id(target) not in done]
        await asyncio.gather(*(self._deliver(note, target) for target in todo))
        await self._ack(entry_id)

    async def _ack(self, entry_id: str) -> None:
        # XACK, then (only once it is done) DEL of the delivered set, which may sit in
        # another slot of a Redis Cluster: a DEL that fails leaves a set that expires; a
        # DEL without the XACK would deliver the entry again to every target.
        try:
            await self._redis.xack(self._stream, self.group, entry_id)
            await self._redis.delete(self._delivered_key(entry_id))
        except RedisError as exc:
            log.warning("%s: acknowledging entry %s failed (%s)", self.group, entry_id, why(exc))

    async def _deliver(self, note: Notification, target: Target) -> None:
        """Attempt `note` to `target` until it is taken, given up, or the attempts run out."""
        target_id = self.target_id(target)
        attempts = self._settings.webhook_max_attempts
        failure = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(FIRST_RETRY_S * 2 ** (attempt - 1))
            try:
                result = await self.attempt(note, target)
            except GiveUp as exc:
                log.warning(
                    "%s: %s to %s given up: %s", self.group, note.kind, target_id, exc.args[0]
                )
                return
            if result is None:
                await self._mark_done(note.entry_id, target_id)
                return
            failure = result
            log.debug(
                "%s: %s to %s, attempt %d: %s",
                self.group,
                note.kind,
                target_id,
                attempt + 1,
                failure,
            )
        log.warning(
            "%s: %s to %s given up after %d attempts, last: %s",
            self.group,
            note.kind,
            target_id,
            attempts,
            failure,
        )

    async def _mark_done(self, entry_id: str, target_id: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self._delivered_key(entry_id), target_id)
                pipe.expire(self._delivered_key(entry_id), DELIVERED_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            # Delivered all the same; a node taking the entry over may deliver it again.
            log.warning("%s: recording delivery to %s failed (%s)", self.group, target_id, why(exc))

    def link(self, data: dict[str, Any]) -> str:
        """The console's page of the notification's session."""
        session_id = data.get("sessionId")
        base = self._settings.console_url
        return f"{base}/#/sessions/{session_id}" if session_id else f"{base}/"


def why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
