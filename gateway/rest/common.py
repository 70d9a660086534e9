"""What every REST route needs: the node, the caller, the validated body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sanic import Request

from gateway.auth import Principal
from gateway.node import Node
from orchestra.errors import AuthenticationFailed, Forbidden, InvalidParameters
from orchestra.protocol import Payload

P = TypeVar("P", bound=Payload)


def node_of(request: Request) -> Node:
    node: Node = request.app.ctx.node
    return node


def caller(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("missing bearer token")
    return node_of(request).tokens.verify_access(token.strip())


def admin(request: Request) -> Principal:
    who = caller(request)
    if not who.is_admin:
        raise Forbidden("administrators only")
    return who


def json_body(request: Request) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = request.json
    except Exception:
        raise InvalidParameters("the body is not valid JSON") from None
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
