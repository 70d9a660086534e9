"""`/api/push`: Web Push to each user's devices (`gateway.web_push` delivers).

- `GET /api/push/key` → `{publicKey}`: the VAPID application server key a browser
  subscribes with (base64url).
- `GET /api/push/subscriptions` → `{subscriptions: [PushSubscriptionView]}`: the caller's.
- `POST /api/push/subscriptions {subscription: <PushSubscription.toJSON()>, events?,
  label?}` → 201 `{subscription: PushSubscriptionView}`; a browser subscribing again (the
  same endpoint) replaces its earlier record, whoever it was for.
- `PATCH /api/push/subscriptions/{id} {events?, label?}`, `DELETE /api/push/subscriptions/{id}`.

`PushSubscriptionView = {id, events, label, host, createdAt}`: never the endpoint or the
keys, which are kept encrypted. `events` are any of `permission.requested`,
`input.requested`, `task.completed`, `task.failed` (all four when left out). Anyone but the
owner and an unknown id get the same AUTH_002.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors.notifications import EVENTS
from gateway.ai_configs import validate_base_url
from gateway.openapi import documented
from gateway.rest.common import body, caller, changes, node_of
from orchestra.codec import format_timestamp
from orchestra.crypto import encrypt_field
from orchestra.db import PushSubscription
from orchestra.db.models import new_id
from orchestra.errors import Forbidden, InvalidParameters
from orchestra.protocol import Payload
from orchestra.protocol.rest import (
    Empty,
    PushKey,
    PushSubscriptionAnswer,
    PushSubscriptionsAnswer,
)

bp = Blueprint("push", url_prefix="/api/push")

MAX_PER_USER = 20
_B64URL = r"^[A-Za-z0-9_-]+={0,2}$"


def _check_events(value: list[str]) -> list[str]:
    if not value or set(value) - set(EVENTS):
        raise ValueError(f"events must be a non-empty list of {', '.join(EVENTS)}")
    return list(dict.fromkeys(value))


Events = Annotated[list[str], Field(max_length=len(EVENTS) * 2), AfterValidator(_check_events)]
Label = Annotated[str, Field(max_length=200)]


class _Keys(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # A P-256 public key (65 bytes) and a 16-byte secret, base64url.
    p256dh: str = Field(min_length=80, max_length=100, pattern=_B64URL, repr=False)
    auth: str = Field(min_length=16, max_length=32, pattern=_B64URL, repr=False)


class _Subscription(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(max_length=2048, repr=False)
    keys: _Keys


class CreatePush(Payload):
    subscription: _Subscription
    events: Events | None = None
    label: Label = ""


class UpdatePush(Payload):
    events: Events | None = None
    label: Label | None = None


def push_view(record: PushSubscription) -> dict[str, Any]:
    return {
        "id": record.id,
        "events": list(record.events),
        "label": record.label,
        "host": record.endpoint_host,
        "createdAt": format_timestamp(record.created_at),
    }


def _endpoint(value: str, insecure: bool) -> str:
    try:
        validate_base_url(value, "subscription.endpoint")
    except ValueError as exc:
        raise InvalidParameters(str(exc)) from None
    if urlsplit(value).scheme != "https" and not insecure:
        raise InvalidParameters("subscription.endpoint must be an https URL")
    return value


async def _owned(request: Request, subscription_id: str) -> PushSubscription:
    record = await node_of(request).store.get_push_subscription(subscription_id)
    if record is None or record.owner_id != caller(request).user_id:
        raise Forbidden("not your push subscription")
    return record


@bp.get("/key")
@documented(answer=PushKey)
async def public_key(request: Request) -> HTTPResponse:
    caller(request)
    return json({"publicKey": node_of(request).push.vapid.public_key})


@bp.get("/subscriptions")
@documented(answer=PushSubscriptionsAnswer)
async def list_subscriptions(request: Request) -> HTTPResponse:
    who = caller(request)
    records = await node_of(request).store.list_push_subscriptions(who.user_id)
    return json({"subscriptions": [push_view(r) for r in records]})


@bp.post("/subscriptions")
@documented(body=CreatePush, answer=PushSubscriptionAnswer, status=201)
async def subscribe(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    given = body(request, CreatePush)
    endpoint = _endpoint(given.subscription.endpoint, node.settings.push_insecure_endpoints)
    endpoint_hash = hashlib.sha256(endpoint.encode()).hexdigest()
    mine = await node.store.list_push_subscriptions(who.user_id)
    if len(mine) >= MAX_PER_USER and all(r.endpoint_hash != endpoint_hash for r in mine):
        raise InvalidParameters(f"at most {MAX_PER_USER} push subscriptions per user")
    # The id is the keys' associated data; a browser subscribing again for the same user
    # keeps its record's (for another user, it replaces that user's record).
    known = next((r for r in mine if r.endpoint_hash == endpoint_hash), None)
    record_id = known.id if known else new_id()
    secret = jsonlib.dumps(
        {
            "endpoint": endpoint,
            "keys": {
                "p256dh": given.subscription.keys.p256dh,
                "auth": given.subscription.keys.auth,
            },
        }
    )
    record = await node.store.save_push_subscription(
        PushSubscription(
            id=record_id,
            owner_id=who.user_id,
            endpoint_hash=endpoint_hash,
            endpoint_host=urlsplit(endpoint).hostname or "",
            keys_encrypted=encrypt_field(node.settings.secrets_key, record_id, secret),
            events=given.events or list(EVENTS),
            label=given.label,
        )
    )
    return json({"subscription": push_view(record)}, status=201)


@bp.route("/subscriptions/<subscription_id:str>", methods=["PATCH", "PUT"])
@documented(body=UpdatePush, answer=PushSubscriptionAnswer, errors=["AUTH_002"])
async def update_subscription(request: Request, subscription_id: str) -> HTTPResponse:
    await _owned(request, subscription_id)
    given = body(request, UpdatePush)
    update = changes(given, ("events", "label"), not_null=("events", "label"))
    record = await node_of(request).store.update_push_subscription(subscription_id, **update)
    if record is None:  # deleted meanwhile
        raise Forbidden("not your push subscription")
    return json({"subscription": push_view(record)})


@bp.delete("/subscriptions/<subscription_id:str>")
@documented(answer=Empty, errors=["AUTH_002"])
async def delete_subscription(request: Request, subscription_id: str) -> HTTPResponse:
    await _owned(request, subscription_id)
    await node_of(request).store.delete_push_subscription(subscription_id)
    return json({})
