"""`/api/webhooks`: each user's own webhooks, told of events in their sessions.

`{url, events, secret?}`. The secret signs every delivery (`gateway.webhooks`); one is made
when none is given, and it is shown in the create answer only (`secret`), kept encrypted,
never shown again. On update, a field left out stays as it was; `secret` sets a new one.
Anyone but the owner, admins included, and an unknown id get the same AUTH_002.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors.notifications import EVENTS
from gateway.ai_configs import validate_base_url
from gateway.openapi import documented
from gateway.rest.common import body, caller, changes, node_of
from orchestra.codec import format_timestamp
from orchestra.crypto import encrypt_field
from orchestra.db import Store, Webhook
from orchestra.db.models import new_id
from orchestra.errors import Forbidden, InvalidParameters
from orchestra.protocol import Payload
from orchestra.protocol.rest import Empty, WebhookAnswer, WebhookCreated, WebhooksAnswer

bp = Blueprint("webhooks", url_prefix="/api/webhooks")

MAX_PER_USER = 20


def _check_events(value: list[str]) -> list[str]:
    if not value or set(value) - set(EVENTS):
        raise ValueError(f"events must be a non-empty list of {', '.join(EVENTS)}")
    return list(dict.fromkeys(value))  # once each, in the order given


Url = Annotated[str, AfterValidator(lambda value: validate_base_url(value, "url"))]
Events = Annotated[list[str], Field(max_length=len(EVENTS) * 2), AfterValidator(_check_events)]
Secret = Annotated[str, Field(min_length=16, max_length=256)]


class CreateWebhook(Payload):
    url: Url
    events: Events
    secret: Secret | None = Field(None, repr=False)


class UpdateWebhook(Payload):
    url: Url | None = None
    events: Events | None = None
    active: bool | None = None
    secret: Secret | None = Field(None, repr=False)


def webhook_view(record: Webhook) -> dict[str, Any]:
    """The answer shape: never the secret, never its ciphertext."""
    return {
        "id": record.id,
        "url": record.url,
        "events": list(record.events),
        "active": record.active,
        "createdAt": format_timestamp(record.created_at),
    }


async def _owned(store: Store, user_id: str, webhook_id: str) -> Webhook:
    record = await store.get_webhook(webhook_id)
    if record is None or record.owner_id != user_id:
        raise Forbidden("not your webhook")
    return record


@bp.get("/")
@documented(answer=WebhooksAnswer)
async def list_webhooks(request: Request) -> HTTPResponse:
    who = caller(request)
    records = await node_of(request).store.list_webhooks(who.user_id)
    return json({"webhooks": [webhook_view(r) for r in records]})


@bp.post("/")
@documented(body=CreateWebhook, answer=WebhookCreated, status=201)
async def create_webhook(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    given = body(request, CreateWebhook)
    if len(await node.store.list_webhooks(who.user_id)) >= MAX_PER_USER:
        raise InvalidParameters(f"at most {MAX_PER_USER} webhooks per user")
    secret = given.secret or "whsec_" + secrets.token_urlsafe(32)
    # The record's id is the secret's associated data: make it first, then encrypt.
    webhook_id = new_id()
    record = await node.store.create_webhook(
        who.user_id,
        given.url,
        given.events,
        encrypt_field(node.settings.secrets_key, webhook_id, secret),
        webhook_id=webhook_id,
    )
    # The one answer that shows the secret.
    return json({"webhook": webhook_view(record), "secret": secret}, status=201)


@bp.get("/<webhook_id:str>")
@documented(answer=WebhookAnswer, errors=["AUTH_002"])
async def get_webhook(request: Request, webhook_id: str) -> HTTPResponse:
    who = caller(request)
    record = await _owned(node_of(request).store, who.user_id, webhook_id)
    return json({"webhook": webhook_view(record)})


@bp.route("/<webhook_id:str>", methods=["PATCH", "PUT"])
@documented(body=UpdateWebhook, answer=WebhookAnswer, errors=["AUTH_002"])
async def update_webhook(request: Request, webhook_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    await _owned(node.store, who.user_id, webhook_id)
    given = body(request, UpdateWebhook)
    fields = ("url", "events", "active")
    update = changes(given, fields, not_null=(*fields, "secret"))
    if given.secret is not None:
        update["secret_encrypted"] = encrypt_field(
            node.settings.secrets_key, webhook_id, given.secret
        )
    record = await node.store.update_webhook(webhook_id, **update)
    if record is None:  # deleted meanwhile
        raise Forbidden("not your webhook")
    return json({"webhook": webhook_view(record)})


@bp.delete("/<webhook_id:str>")
@documented(answer=Empty, errors=["AUTH_002"])
async def delete_webhook(request: Request, webhook_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    await _owned(node.store, who.user_id, webhook_id)
    await node.store.delete_webhook(webhook_id)
    return json({})
