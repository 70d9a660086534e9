"""`/api/auth`: log in, refresh, log out, who am I."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.auth import user_view
from gateway.rest.common import body, caller, node_of
from orchestra.errors import AuthenticationFailed
from orchestra.protocol import Payload

bp = Blueprint("auth", url_prefix="/api/auth")


class Login(Payload):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(Payload):
    refresh_token: str = Field(min_length=1, max_length=4096)


@bp.post("/login")
async def login(request: Request) -> HTTPResponse:
    node = node_of(request)
    credentials = body(request, Login)
    user = await node.store.authenticate(credentials.username, credentials.password)
    if user is None:
        raise AuthenticationFailed("wrong username or password")
    return json(await node.tokens.issue(user))


@bp.post("/refresh")
async def refresh(request: Request) -> HTTPResponse:
    node = node_of(request)
    return json(await node.tokens.refresh(body(request, Refresh).refresh_token))


@bp.post("/logout")
async def logout(request: Request) -> HTTPResponse:
    who = caller(request)
    await node_of(request).store.revoke_user_tokens(who.user_id)
    return json({})


@bp.get("/me")
async def me(request: Request) -> HTTPResponse:
    who = caller(request)
    user = await node_of(request).store.get_user(who.user_id)
    if user is None or user.disabled:
        raise AuthenticationFailed("user no longer exists or is disabled")
    return json({"user": user_view(user)})
