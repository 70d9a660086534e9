"""`/api/users`: accounts, for administrators only (PROTOCOL.md §6).

- `GET /` → `{users: [UserView]}`
- `POST / {username, password, isAdmin?}` → 201 `{user}`; a taken username is PARAM_001
- `GET /<id>` → `{user}`
- `PATCH /<id> {isAdmin?, disabled?}` → `{user}`
- `POST /<id>/password {password}` → `{user}`: an administrator sets a new password
- `DELETE /<id>` → `{}`: the user and their refresh tokens go; their agents, sessions and
  tasks stay

`UserView = {id, username, isAdmin, disabled, createdAt}`. Passwords are 8 to 1024
characters. An unknown id is 404 TASK_002 (administrators may learn what exists). An
administrator may not demote, disable or delete themselves (PARAM_001), so there is always
one left. Every change is written to the audit log, and every change that takes away what a
token grants (deleted, disabled, admin flag changed, password reset) revokes all of the
user's tokens at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.audit import audit_request
from gateway.auth import user_view
from gateway.node import Node
from gateway.openapi import documented
from gateway.rest.common import admin, body, changes, node_of
from orchestra.db import User
from orchestra.errors import InvalidParameters, NotFound
from orchestra.protocol import Payload
from orchestra.protocol.rest import Empty, UserAnswer, UsersAnswer

bp = Blueprint("users", url_prefix="/api/users")

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, repr=False)]


class CreateUser(Payload):
    username: str = Field(min_length=1, max_length=200)
    password: Password
    is_admin: bool = False


class UpdateUser(Payload):
    is_admin: bool | None = None
    disabled: bool | None = None


class ResetPassword(Payload):
    password: Password


async def _revoke(node: Node, user_id: str) -> None:
    """Every token of the user stops working, on every node, and their sockets close.

    Until `node.credentials` exists, the user's refresh tokens at least are ended."""
    credentials = getattr(node, "credentials", None)
    if credentials is not None:
        await credentials.revoke_user(user_id)
    else:
        await node.store.revoke_user_tokens(user_id)


async def _user(node: Node, user_id: str) -> User:
    user = await node.store.get_user(user_id)
    if user is None:
        raise NotFound("unknown user")
    return user


_WIRE = {"is_admin": "isAdmin", "disabled": "disabled"}


def _not_yourself(what: str) -> InvalidParameters:
    return InvalidParameters(f"an administrator may not {what} themselves")


@bp.get("/")
@documented(answer=UsersAnswer, errors=["AUTH_002"])
async def list_users(request: Request) -> HTTPResponse:
    admin(request)
    users = await node_of(request).store.list_users()
    return json({"users": [user_view(u) for u in users]})


@bp.post("/")
@documented(body=CreateUser, answer=UserAnswer, status=201, errors=["AUTH_002"])
async def create_user(request: Request) -> HTTPResponse:
    who = admin(request)
    node = node_of(request)
    given = body(request, CreateUser)
    user = await node.store.create_user(given.username, given.password, is_admin=given.is_admin)
    await audit_request(
        request,
        "user.created",
        actor_id=who.user_id,
        target_type="user",
        target_id=user.id,
        username=user.username,
        isAdmin=user.is_admin,
    )
    return json({"user": user_view(user)}, status=201)


@bp.get("/<user_id:str>")
@documented(answer=UserAnswer, errors=["AUTH_002", "TASK_002"])
async def get_user(request: Request, user_id: str) -> HTTPResponse:
    admin(request)
    return json({"user": user_view(await _user(node_of(request), user_id))})


@bp.patch("/<user_id:str>")
@documented(body=UpdateUser, answer=UserAnswer, errors=["AUTH_002", "TASK_002"])
async def update_user(request: Request, user_id: str) -> HTTPResponse:
    who = admin(request)
    node = node_of(request)
    given = body(request, UpdateUser)
    update: dict[str, Any] = changes(
        given, ("is_admin", "disabled"), not_null=("is_admin", "disabled")
    )
    before = await _user(node, user_id)
    if user_id == who.user_id:
        if update.get("is_admin") is False:
            raise _not_yourself("demote")
        if update.get("disabled") is True:
            raise _not_yourself("disable")
    user = await node.store.update_user(user_id, **update)
    if user is None:  # deleted meanwhile
        raise NotFound("unknown user")
    changed = {k: v for k, v in update.items() if getattr(before, k) != v}
    if changed:
        # One entry per change: `user.disabled` when that is (part of) what happened.
        disabled = changed.get("disabled") is True
        await audit_request(
            request,
            "user.disabled" if disabled else "user.updated",
            actor_id=who.user_id,
            target_type="user",
            target_id=user_id,
            before={_WIRE[k]: getattr(before, k) for k in changed},
            after={_WIRE[k]: v for k, v in changed.items()},
        )
        if "is_admin" in changed or disabled:
            await _revoke(node, user_id)
    return json({"user": user_view(user)})


@bp.post("/<user_id:str>/password")
@documented(body=ResetPassword, answer=UserAnswer, errors=["AUTH_002", "TASK_002"])
async def reset_password(request: Request, user_id: str) -> HTTPResponse:
    who = admin(request)
    node = node_of(request)
    given = body(request, ResetPassword)
    await _user(node, user_id)
    user = await node.store.update_user(user_id, password=given.password)
    if user is None:
        raise NotFound("unknown user")
    await audit_request(
        request,
        "user.password_reset",
        actor_id=who.user_id,
        target_type="user",
        target_id=user_id,
    )
    await _revoke(node, user_id)
    return json({"user": user_view(user)})


@bp.delete("/<user_id:str>")
@documented(answer=Empty, errors=["AUTH_002", "TASK_002"])
async def delete_user(request: Request, user_id: str) -> HTTPResponse:
    who = admin(request)
    node = node_of(request)
    if user_id == who.user_id:
        raise _not_yourself("delete")
    user = await _user(node, user_id)
    if not await node.store.delete_user(user_id):
        raise NotFound("unknown user")
    await audit_request(
        request,
        "user.deleted",
        actor_id=who.user_id,
        target_type="user",
        target_id=user_id,
        username=user.username,
    )
    await _revoke(node, user_id)
    return json({})
