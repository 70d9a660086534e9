"""`/api/auth`: log in, refresh, log out, who am I."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.audit import audit_request, request_ip
from gateway.auth import RefreshTokenReused, user_view
from gateway.openapi import documented
from gateway.rest.common import body, caller, node_of
from gateway.rest.users import Password, _revoke
from orchestra.errors import AuthenticationFailed
from orchestra.protocol import Payload
from orchestra.protocol.rest import Empty, Tokens, UserAnswer

bp = Blueprint("auth", url_prefix="/api/auth")


class Login(Payload):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(Payload):
    refresh_token: str = Field(min_length=1, max_length=4096)


class ChangePassword(Payload):
    current_password: str = Field(min_length=1, max_length=1024, repr=False)
    new_password: Password


@bp.post("/login")
@documented(body=Login, answer=Tokens, public=True, errors=["AUTH_001"])
async def login(request: Request) -> HTTPResponse:
    node = node_of(request)
    credentials = body(request, Login)
    # Failures count per account and per address, whatever token comes along.
    address = request_ip(request) or ""
    await node.login_limiter.check(credentials.username, address)
    user = await node.store.authenticate(credentials.username, credentials.password)
    if user is None:
        await node.login_limiter.failed(credentials.username, address)
        await audit_request(
            request,
            "auth.login_failed",
            actor_id=None,
            target_type="user",
            target_id=None,
            username=credentials.username,
        )
        raise AuthenticationFailed("wrong username or password")
    await node.login_limiter.succeeded(credentials.username)
    await audit_request(
        request,
        "auth.login",
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
    )
    return json(await node.tokens.issue(user))


class Logout(Payload):
    # Every sign-in of the user (all devices), not only this one.
    everywhere: bool = False


@bp.post("/refresh")
@documented(body=Refresh, answer=Tokens, public=True, errors=["AUTH_001"])
async def refresh(request: Request) -> HTTPResponse:
    node = node_of(request)
    try:
        return json(await node.tokens.refresh(body(request, Refresh).refresh_token))
    except RefreshTokenReused:
        await audit_request(
            request,
            "auth.refresh_reused",
            actor_id=None,
            target_type="token-family",
            target_id=None,
        )
        raise


@bp.post("/logout")
@documented(body=Logout, answer=Empty)
async def logout(request: Request) -> HTTPResponse:
    """Ends this sign-in (its tokens and sockets, on every node), or with `everywhere`
    every sign-in of the user."""
    who = caller(request)
    node = node_of(request)
    if body(request, Logout).everywhere:
        await node.store.revoke_user_tokens(who.user_id)
        await node.credentials.revoke_user(who.user_id)
    elif who.family:
        await node.tokens.revoke_family(who.family)
    else:  # a token from before families: only ending them all ends it
        await node.store.revoke_user_tokens(who.user_id)
        await node.credentials.revoke_user(who.user_id)
    await audit_request(
        request,
        "auth.logout",
        actor_id=who.user_id,
        target_type="user",
        target_id=who.user_id,
    )
    return json({})


@bp.get("/me")
@documented(answer=UserAnswer)
async def me(request: Request) -> HTTPResponse:
    who = caller(request)
    user = await node_of(request).store.get_user(who.user_id)
    if user is None or user.disabled:
        raise AuthenticationFailed("user no longer exists or is disabled")
    return json({"user": user_view(user)})


@bp.patch("/me")
@documented(body=ChangePassword, answer=Tokens)
async def change_password(request: Request) -> HTTPResponse:
    """`{currentPassword, newPassword}`: change one's own password. A wrong current password
    is AUTH_001 (401), like a failed login. Every other token of the user is revoked; the
    answer carries fresh ones (as login does)."""
    who = caller(request)
    node = node_of(request)
    given = body(request, ChangePassword)
    user = await node.store.get_user(who.user_id)
    if user is None or user.disabled:
        raise AuthenticationFailed("user no longer exists or is disabled")
    if await node.store.authenticate(user.username, given.current_password) is None:
        raise AuthenticationFailed("wrong password")
    changed = await node.store.update_user(user.id, password=given.new_password)
    if changed is None:
        raise AuthenticationFailed("user no longer exists or is disabled")
    await audit_request(
        request,
        "auth.password_changed",
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
    )
    await _revoke(node, user.id)
    return json(await node.tokens.issue(changed))
