"""The evaluation of the alert rules: the leader's job, every `alert_interval_s`.

A run reads the alerts firing now (the Redis hash `keys.alerts_firing()`, field
`<rule>:<subject>`, value JSON `{id, rule, subject, severity, message, since, details}`),
the facts, and the conditions holding now (`gateway.alerts.rules`); then

- a condition not firing yet fires (`alert_fire.lua`): into the hash, unless it fired
  last less than `alert_cooldown_s` ago (a flapping fault is reported once per
  cool-down), with its event appended to the alert stream (`keys.alert_events()`), from
  which every node's `AlertDispatcher` delivers it once, to SQL and the webhooks; one
  WARNING line in the log;
- an alert whose condition no longer holds is resolved (`alert_resolve.lua`): out of the
  hash, its event appended to the stream; one INFO line.

Both steps are single scripts that check before they change, so two nodes evaluating at
once (a change of leader) report each change once. A rule whose facts could not be read
(Redis or SQL away) is left as it was: neither fired nor resolved. The leader exports
the number of alerts firing by rule (`orchestra_alerts_firing`); other nodes export none.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from actors.values import strings, text
from gateway.alerts import facts, rules
from gateway.alerts.rules import RULES, Condition
from gateway.alerts.tally import window_counts
from gateway.lua_source import lua_source
from orchestra import keys
from orchestra.codec import format_timestamp, new_id
from orchestra.db import Store, StoreError
from orchestra.metrics import ALERTS_FIRING
from orchestra.settings import Settings

__all__ = ["FIRING", "RESOLVED", "AlertEvaluator", "event_data"]

log = logging.getLogger(__name__)

FIRING, RESOLVED = "alert.firing", "alert.resolved"

Found = dict[str, list[Condition]]


def event_data(alert: dict[str, Any], status: str, resolved_at: str | None = None) -> str:
    """The alert as its event carries it (the webhook's `alert`, the SQL row's fields)."""
    data = {
        "id": alert["id"],
        "key": f"{alert['rule']}:{alert['subject']}",
        "rule": alert["rule"],
        "subject": alert["subject"],
        "severity": alert["severity"],
        "status": status,
        "message": alert["message"],
        "since": alert["since"],
        "resolvedAt": resolved_at,
        "details": alert.get("details") or {},
    }
    return json.dumps(data, separators=(",", ":"))


class AlertEvaluator:
    def __init__(self, redis: Redis, store: Store, settings: Settings) -> None:
        self._redis = redis
        self._store = store
        self._settings = settings
        self._fire: AsyncScript = redis.register_script(lua_source("alert_fire"))
        self._resolve: AsyncScript = redis.register_script(lua_source("alert_resolve"))

    async def evaluate(self) -> None:
        """One run (the leader's job)."""
        firing = strings(await self._redis.hgetall(keys.alerts_firing()))
        found = await self._conditions()
        for rule, conditions in found.items():
            holding = {c.key: c for c in conditions}
            for key, condition in holding.items():
                if key not in firing:
                    await self._start(condition)
            for key, raw in firing.items():
                if key.partition(":")[0] == rule and key not in holding:
                    await self._end(key, raw)
        for key, raw in firing.items():
            if key.partition(":")[0] not in RULES:  # a rule this version no longer has
                await self._end(key, raw)
        await self._forget_cooled_down()
        await self.export()

    async def export(self) -> None:
        """The number of alerts firing, by rule, as this node's metric (the leader's)."""
        fields = await self._redis.hkeys(keys.alerts_firing())
        counts = dict.fromkeys(RULES, 0)
        for key in fields:
            rule = text(key).partition(":")[0]
            if rule in counts:
                counts[rule] += 1
        for rule, count in counts.items():
            ALERTS_FIRING.labels(rule).set(count)

    # ---- the conditions --------------------------------------------------------------------

    async def _conditions(self) -> Found:
        s = self._settings
        found: Found = {}

        async def agent_rules() -> Found:
            agents = await facts.agents(self._redis, self._store, s.partitions)
            return {
                rules.AGENT_OFFLINE: rules.agent_offline(agents),
                rules.HIGH_LATENCY: rules.high_latency(agents, s.alert_latency_ms),
            }

        async def error_rate() -> Found:
            counts = await window_counts(self._redis, s.alert_window_s, time.time())
            return {
                rules.HIGH_ERROR_RATE: rules.high_error_rate(
                    counts, s.alert_error_rate, s.alert_error_min_requests, s.alert_window_s
                )
            }

        async def permissions() -> Found:
            waiting = await facts.waiting_permissions(self._redis, self._store, s.partitions)
            return {
                rules.PERMISSION_WAITING: rules.permission_waiting(
                    waiting, s.alert_permission_wait_s
                )
            }

        async def queue() -> Found:
            queued = await facts.queued_tasks(self._redis, s.alert_queue_wait_s, s.partitions)
            return {rules.TASK_QUEUED: rules.task_queued(queued, s.alert_queue_wait_s)}

        sources: list[Callable[[], Awaitable[Found]]] = [
            agent_rules,
            error_rate,
            permissions,
            queue,
        ]
        for source in sources:
            try:
                found.update(await source())
            except (RedisError, StoreError) as exc:
                log.warning("alert rules (%s) not evaluated: %s", source.__name__, exc)
        return found

    # ---- firing and resolving --------------------------------------------------------------

    async def _start(self, condition: Condition) -> None:
        now = datetime.now(UTC)
        alert: dict[str, Any] = {
            "id": new_id(),
            "rule": condition.rule,
            "subject": condition.subject,
            "severity": condition.severity,
            "message": condition.message,
            "since": format_timestamp(now),
            "details": condition.details,
        }
        value = json.dumps(alert, separators=(",", ":"))
        result = await self._fire(
            keys=[keys.alerts_firing(), keys.alerts_fired_at(), keys.alert_events()],
            args=[
                condition.key,
                value,
                int(now.timestamp() * 1000),
                int(self._settings.alert_cooldown_s * 1000),
                self._settings.webhook_stream_max_len,
                FIRING,
                f"{alert['id']}:firing",
                event_data(alert, "firing"),
                alert["since"],
            ],
        )
        if int(result) == 1:
            log.warning(
                "alert firing: %s [%s] %s", condition.key, condition.severity, condition.message
            )
        elif int(result) == -1:
            log.debug("alert %s holds again within its cool-down: not reported", condition.key)

    async def _end(self, key: str, raw: str) -> None:
        try:
            alert = json.loads(raw)
        except ValueError:
            alert = None
        if not isinstance(alert, dict) or not all(
            isinstance(alert.get(f), str) for f in ("id", "rule", "subject", "severity", "since")
        ):
            # Not ours to read: dropped (nothing can be reported of it).
            await self._redis.hdel(keys.alerts_firing(), key)
            return
        at = format_timestamp(datetime.now(UTC))
        done = await self._resolve(
            keys=[keys.alerts_firing(), keys.alert_events()],
            args=[
                key,
                raw,
                self._settings.webhook_stream_max_len,
                RESOLVED,
                f"{alert['id']}:resolved",
                event_data(alert, "resolved", at),
                at,
            ],
        )
        if int(done) == 1:
            log.info("alert resolved: %s (firing since %s)", key, alert.get("since"))

    async def _forget_cooled_down(self) -> None:
        """Last firing times whose cool-down is over: they matter no more."""
        cutoff_ms = (time.time() - self._settings.alert_cooldown_s) * 1000
        fired = strings(await self._redis.hgetall(keys.alerts_fired_at()))
        old = [key for key, at in fired.items() if not at.isdigit() or int(at) < cutoff_ms]
        if old:
            await self._redis.hdel(keys.alerts_fired_at(), *old)
