"""Delivery of notifications to users' webhooks, once per event whichever node sees it.

Actors append notifications to the Redis stream `keys.webhook_events()` inside their
turns (`actors.notifications.notify`). Every node runs a `WebhookDispatcher`, one
consumer (its node id) of the consumer group `webhooks`; Redis hands each entry to one of
them. For an entry the dispatcher finds the owner's active webhooks subscribed to its
kind and POSTs a signed JSON body to each:

    {"id": <delivery id>, "event": kind, "timestamp": ISO-8601, "url": <console link>,
     "data": {...}}

with `X-Orchestra-Event`, `X-Orchestra-Delivery` (the id: the same for every attempt and
every node, derived from the event's key and the webhook's id), `X-Orchestra-Timestamp`
(the body's: when this attempt was signed) and `X-Orchestra-Signature:
sha256=<hex HMAC-SHA256 of the raw body under the webhook's secret>`.

A 2xx answer marks the webhook done for the entry, in a Redis set that outlives the node;
anything else, a connection error or no answer within `webhook_timeout_s` is retried 1 s,
2 s, 4 s... later, up to `webhook_max_attempts` tries, then given up with one log line. The
entry is acknowledged once every webhook is done or given up. An entry a dead node left
pending for `webhook_claim_idle_s` is taken over (XAUTOCLAIM) by another node, which skips
the webhooks already done; a node still retrying an entry keeps claiming it (XCLAIM
JUSTID) so that no one takes it from under it. Secrets and URLs never reach the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from actors.notifications import EVENTS
from actors.values import strings, text
from orchestra import keys
from orchestra.codec import now_iso
from orchestra.crypto import CryptoError, decrypt_field
from orchestra.db import Store, StoreError, Webhook
from orchestra.settings import Settings

__all__ = ["GROUP", "Notification", "WebhookDispatcher", "delivery_id", "sign"]

log = logging.getLogger(__name__)

GROUP = "webhooks"
READ_COUNT = 16
READ_BLOCK_MS = 1000
MAX_IN_FLIGHT = 64  # entries one node handles at once
FIRST_RETRY_S = 1.0
DELIVERED_TTL_S = 24 * 3600
ERROR_PAUSE_MAX_S = 5.0


def delivery_id(event_key: str, webhook_id: str) -> str:
    """The id of one event's delivery to one webhook: stable across attempts and nodes."""
    return hashlib.sha256(f"{event_key}\n{webhook_id}".encode()).hexdigest()[:32]


def sign(secret: str, body: bytes) -> str:
    """The `X-Orchestra-Signature` value of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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


class WebhookDispatcher:
    """One node's consumer of the webhook event stream; see the module docstring."""

    def __init__(self, redis: Redis, store: Store, settings: Settings) -> None:
        self._redis = redis
        self._store = store
        self._settings = settings
        self._consumer = settings.node_id
        self._stream = keys.webhook_events()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._loops = [
            asyncio.create_task(self._read_loop(), name="webhooks-read"),
            asyncio.create_task(self._claim_loop(), name="webhooks-claim"),
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
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
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
                log.warning("webhooks: reading the event stream failed (%s)", _why(exc))
                continue
            except Exception:
                # A bug: say so, and keep delivering rather than stop for good.
                pause = ERROR_PAUSE_MAX_S
                log.exception("webhooks: reading the event stream failed")
                continue
            if after != ">":
                after = entries[-1][0] if entries else ">"
            for entry_id, fields in entries:
                self._spawn(entry_id, fields)

    async def _read(self, after: str) -> list[tuple[str, dict[str, str]]]:
        answer: Any = await self._redis.xreadgroup(
            GROUP,
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
                log.warning("webhooks: claiming entries failed (%s)", _why(exc))
            except Exception:
                log.exception("webhooks: claiming entries failed")

    async def _keep_claimed(self) -> None:
        """Reset the idle time of the entries this node is still working on; stop working
        on any another node has taken meanwhile (this node stalled past the claim time)."""
        # Only entries spawned before the question count: one read meanwhile is not in it.
        working = dict(self._in_flight)
        if not working:
            return
        pending = await self._redis.xpending_range(
            self._stream, GROUP, "-", "+", MAX_IN_FLIGHT * 4, consumername=self._consumer
        )
        mine = {text(p["message_id"]) for p in pending}
        for entry_id, task in working.items():
            if entry_id not in mine and not task.done():
                # Acknowledged just now (harmless to cancel), or taken by another node.
                task.cancel()
        held: list[Any] = [entry_id for entry_id in working if entry_id in mine]
        if held:
            await self._redis.xclaim(self._stream, GROUP, self._consumer, 0, held, justid=True)

    async def _take_over(self) -> None:
        """Claim entries left pending longer than the claim time (a dead node's)."""
        idle_ms = int(self._settings.webhook_claim_idle_s * 1000)
        start = "0-0"
        while len(self._in_flight) < MAX_IN_FLIGHT:
            count = min(READ_COUNT, MAX_IN_FLIGHT - len(self._in_flight))
            answer: Any = await self._redis.xautoclaim(
                self._stream, GROUP, self._consumer, idle_ms, start_id=start, count=count
            )
            for raw_id, raw_fields in answer[1] or []:
                if raw_id is None:
                    continue
                entry_id = text(raw_id)
                if not raw_fields:  # trimmed from the stream before anyone delivered it
                    await self._ack(entry_id)
                elif entry_id not in self._in_flight:
                    log.info("webhooks: took over entry %s", entry_id)
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
        task = asyncio.create_task(self._handle(entry_id, fields), name=f"webhook-{entry_id}")
        self._in_flight[entry_id] = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._in_flight.get(entry_id) is done:
                del self._in_flight[entry_id]
            self._room.set()

        task.add_done_callback(finished)

    # ---- delivering ------------------------------------------------------------------------

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            note = Notification.from_fields(entry_id, fields)
        except ValueError:
            log.warning("webhooks: entry %s is not a notification; dropped", entry_id)
            await self._ack(entry_id)
            return
        try:
            hooks = await self._store.webhooks_for(note.user_id, note.kind)
            done = {text(v) for v in await self._redis.smembers(keys.webhook_delivered(entry_id))}
        except (StoreError, RedisError) as exc:
            # Left pending: taken over again (by any node) once it has been idle long enough.
            log.warning("webhooks: entry %s postponed (%s)", entry_id, _why(exc))
            return
        todo = [hook for hook in hooks if hook.id not in done]
        await asyncio.gather(*(self._deliver(note, hook) for hook in todo))
        await self._ack(entry_id)

    async def _ack(self, entry_id: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self._stream, GROUP, entry_id)
                pipe.delete(keys.webhook_delivered(entry_id))
                await pipe.execute()
        except RedisError as exc:
            log.warning("webhooks: acknowledging entry %s failed (%s)", entry_id, _why(exc))

    async def _deliver(self, note: Notification, hook: Webhook) -> None:
        """Post `note` to `hook` until it answers 2xx or the attempts run out."""
        delivery = delivery_id(note.key, hook.id)
        try:
            secret = decrypt_field(self._settings.secrets_key, hook.id, hook.secret_encrypted)
        except CryptoError:
            log.warning(
                "webhooks: webhook %s: its secret does not decrypt under this secrets key; "
                "delivery %s (%s) given up",
                hook.id,
                delivery,
                note.kind,
            )
            return
        attempts = self._settings.webhook_max_attempts
        failure = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(FIRST_RETRY_S * 2 ** (attempt - 1))
            failure = await self._post(hook, note, delivery, secret)
            if not failure:
                await self._mark_done(note.entry_id, hook.id)
                return
            log.debug("webhooks: delivery %s attempt %d failed: %s", delivery, attempt + 1, failure)
        log.warning(
            "webhooks: webhook %s: delivery %s (%s) given up after %d attempts, last: %s",
            hook.id,
            delivery,
            note.kind,
            attempts,
            failure,
        )

    async def _post(self, hook: Webhook, note: Notification, delivery: str, secret: str) -> str:
        """One attempt; "" when the receiver took it, else why not (no URL, no secret)."""
        assert self._http is not None
        timestamp = now_iso()
        body = json.dumps(
            {
                "id": delivery,
                "event": note.kind,
                "timestamp": timestamp,
                "url": self._link(note.data),
                "data": note.data,
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Orchestra-Webhooks/1",
            "X-Orchestra-Event": note.kind,
            "X-Orchestra-Delivery": delivery,
            "X-Orchestra-Timestamp": timestamp,
            "X-Orchestra-Signature": sign(secret, body),
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s)
        try:
            async with self._http.post(
                hook.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as answer:
                status = answer.status
        except TimeoutError:
            return f"no answer within {self._settings.webhook_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return type(exc).__name__  # the message may carry the URL
        return "" if 200 <= status < 300 else f"HTTP {status}"

    async def _mark_done(self, entry_id: str, webhook_id: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(keys.webhook_delivered(entry_id), webhook_id)
                pipe.expire(keys.webhook_delivered(entry_id), DELIVERED_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            # Delivered all the same; a node taking the entry over may deliver it again.
            log.warning("webhooks: recording delivery to %s failed (%s)", webhook_id, _why(exc))

    def _link(self, data: dict[str, Any]) -> str:
        session_id = data.get("sessionId")
        base = self._settings.console_url
        return f"{base}/#/sessions/{session_id}" if session_id else f"{base}/"


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
