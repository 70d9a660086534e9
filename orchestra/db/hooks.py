"""Webhooks and Web Push subscriptions in the SQL store: where users want to be told of
events, with what is secret of them encrypted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import col, true

from orchestra.db.base import StoreBase, check_fields, guarded
from orchestra.db.models import PushSubscription, Webhook, new_id

__all__ = ["PushStore", "WebhookStore"]


class WebhookStore(StoreBase):
    """The store's methods for webhooks (`orchestra.db.store.Store` inherits them)."""

    @guarded
    async def create_webhook(
        self,
        owner_id: str,
        url: str,
        events: Iterable[str],
        secret_encrypted: str,
        *,
        webhook_id: str | None = None,
    ) -> Webhook:
        """A new active webhook; give ``webhook_id`` when its secret was encrypted for it."""
        webhook = Webhook(
            id=webhook_id or new_id(),
            owner_id=owner_id,
            url=url,
            events=list(events),
            secret_encrypted=secret_encrypted,
        )
        return await self._add(webhook)

    @guarded
    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        return await self._get(Webhook, webhook_id)

    @guarded
    async def list_webhooks(self, owner_id: str) -> list[Webhook]:
        """A user's webhooks, oldest first."""
        return await self._list(
            Webhook,
            col(Webhook.owner_id) == owner_id,
            order=[col(Webhook.created_at), col(Webhook.id)],
        )

    @guarded
    async def webhooks_for(self, owner_id: str, event: str) -> list[Webhook]:
        """A user's active webhooks subscribed to ``event``."""
        rows = await self._list(
            Webhook,
            col(Webhook.owner_id) == owner_id,
            col(Webhook.active) == true(),
            order=[col(Webhook.created_at), col(Webhook.id)],
        )
        # events is JSON, queried differently by the two databases; a user has few hooks.
        return [w for w in rows if event in w.events]

    @guarded
    async def update_webhook(self, webhook_id: str, **fields: Any) -> Webhook | None:
        """Change the given fields (url, events, active, secret_encrypted); None if unknown."""
        check_fields(Webhook, fields, frozen=("id", "owner_id", "created_at"))
        return await self._update(Webhook, webhook_id, fields)

    @guarded
    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._delete(Webhook, col(Webhook.id) == webhook_id) > 0


class PushStore(StoreBase):
    """The store's methods for Web Push subscriptions."""

    @guarded
    async def save_push_subscription(self, record: PushSubscription) -> PushSubscription:
        """Add `record`, replacing any other record of its endpoint (a browser subscribing
        again, maybe for another user), or, where its id is known, update that one."""
        await self._delete(
            PushSubscription,
            col(PushSubscription.endpoint_hash) == record.endpoint_hash,
            col(PushSubscription.id) != record.id,
        )
        fields = {
            "keys_encrypted": record.keys_encrypted,
            "events": list(record.events),
            "label": record.label,
        }
        updated = await self._update(PushSubscription, record.id, fields)
        return updated if updated is not None else await self._add(record)

    @guarded
    async def get_push_subscription(self, subscription_id: str) -> PushSubscription | None:
        return await self._get(PushSubscription, subscription_id)

    @guarded
    async def list_push_subscriptions(
        self, owner_id: str, event: str | None = None
    ) -> list[PushSubscription]:
        """A user's subscriptions, oldest first; with `event`, those that want it."""
        rows = await self._list(
            PushSubscription,
            col(PushSubscription.owner_id) == owner_id,
            order=[col(PushSubscription.created_at), col(PushSubscription.id)],
        )
        return [r for r in rows if event is None or event in r.events]

    @guarded
    async def update_push_subscription(
        self, subscription_id: str, **fields: Any
    ) -> PushSubscription | None:
        check_fields(
            PushSubscription,
            fields,
            frozen=("id", "owner_id", "created_at", "endpoint_hash", "keys_encrypted"),
        )
        return await self._update(PushSubscription, subscription_id, fields)

    @guarded
    async def delete_push_subscription(self, subscription_id: str) -> bool:
        return await self._delete(PushSubscription, col(PushSubscription.id) == subscription_id) > 0
