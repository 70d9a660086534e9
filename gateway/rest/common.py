"""What every REST route needs: the node, the caller, the validated body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sanic import Request

from gateway.auth import Principal
from gateway.node import Node
from orchestra import strict_json
from orchestra.errors import AuthenticationFailed, Forbidden, InvalidParameters
from orchestra.protocol import Payload

P = TypeVar("P", bound=Payload)


def node_of(request: Request) -> Node:
    node: Node = request.app.ctx.node
    return node


async def authenticate(request: Request, node: Node) -> Principal:
    """The caller of a request with a bearer token, checked against revocations (run once
    per request, by the app's middleware)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("missing bearer token")
    return await node.tokens.authenticate(token.strip())


def caller(request: Request) -> Principal:
    """Who is calling: AUTH_001 unless the request carried a token that holds now."""
    principal: Principal | None = getattr(request.ctx, "principal", None)
    if principal is not None:
        return principal
    error: Exception | None = getattr(request.ctx, "auth_error", None)
    raise error or AuthenticationFailed("missing bearer token")


def admin(request: Request) -> Principal:
    who = caller(request)
    if not who.is_admin:
        raise Forbidden("administrators only")
    return who


def json_body(request: Request) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = strict_json.loads(request.body)
    except ValueError:  # UnicodeDecodeError is one
        raise InvalidParameters("the body is not valid JSON") from None
    if isinstance(data, strict_json.NotStrict):
        raise InvalidParameters(f"the body is not strict JSON: {data.reason}")
    if not isinstance(data, dict):
        raise InvalidParameters("the body must be a JSON object")
    return data


def body(request: Request, model: type[P]) -> P:
    return model.parse(json_body(request))


def changes(
    given: Payload, fields: Iterable[str], *, not_null: Iterable[str] = ()
) -> dict[str, Any]:
    """An update's fields that its body sent (a field left out stays as it was), by name;
    PARAM_001 when one of `not_null` was sent as null."""
    sent = given.model_fields_set
    for name in not_null:
        if name in sent and getattr(given, name) is None:
            raise InvalidParameters(
                "invalid parameters", {"errors": [{"field": name, "problem": "may not be null"}]}
            )
    return {name: getattr(given, name) for name in fields if name in sent}


def bad_param(field: str, problem: str) -> InvalidParameters:
    """PARAM_001 naming the query or body field at fault and what is wrong with it."""
    return InvalidParameters(
        f"invalid parameters ({field}: {problem})",
        {"errors": [{"field": field, "problem": problem}]},
    )


def query_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """A `?limit=`: `default` when absent, PARAM_001 unless an integer in [1, maximum]."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise bad_param("limit", f"must be an integer from 1 to {maximum}")
    return int(raw)
