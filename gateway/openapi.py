"""The OpenAPI 3.1 document of the REST API (`GET /api/openapi.json`), generated.

Nothing of it is written by hand: the paths and methods are the app's routes
(`app.router.routes`) under `/api`, `/health` and `/metrics`; an operation's description is
its handler's docstring; its request and answer schemas are the pydantic models the handler
names with `@documented` (`Model.model_json_schema()`, JSON Schema 2020-12 as OpenAPI 3.1
takes it); its error answers are the PROTOCOL.md §2 codes it may give, each `{"error":
ErrorInfo}`. A route without `@documented` is listed all the same, undescribed.

    @bp.post("/")
    @documented(body=CreateAgent, answer=AgentSecret, status=201, errors=["AUTH_002"])
    async def create_agent(request: Request) -> HTTPResponse: ...

The codes every operation may give are added by themselves: AUTH_001 unless `public`,
PARAM_001 with parameters or a body, RES_001 with a body, RATE_001 under the rate limit.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from sanic import Sanic

from orchestra.codec import PROTOCOL_VERSION
from orchestra.errors import BY_CODE
from orchestra.protocol import Payload
from orchestra.protocol.rest import ErrorAnswer

H = TypeVar("H", bound=Callable[..., Any])

#: the routes the document covers, with `/health` and `/metrics` (the console's page and
#: files, and Socket.IO, are not REST)
DOCUMENTED = ("/api/", "/health/")
#: paths under the per-caller rate limit (`gateway.app`; signing in has its own limits too)
_RATE_LIMITED = ("/api/", "/health/")
_ATTRIBUTE = "__openapi__"
_REF = "#/components/schemas/{model}"
#: fields every Payload accepts and sets aside (PROTOCOL.md §1's envelope): not the body's own
_ENVELOPE = ("id", "timestamp", "source", "version", "target")
_PARAMETER = re.compile(r"<([^:>]+)(?::([^>]*))?>")
_PARAMETER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")
BEARER = "bearerAuth"

Schema = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Doc:
    """What `@documented` says of one handler."""

    body: type[BaseModel] | None = None
    answer: Schema | None = None
    status: int = 200
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    public: bool = False
    media_type: str = "application/json"
    also: Mapping[int, Schema] = field(default_factory=dict)


def documented(
    *,
    body: type[BaseModel] | None = None,
    answer: Schema | None = None,
    status: int = 200,
    query: Mapping[str, Mapping[str, Any]] | None = None,
    errors: Iterable[str] = (),
    public: bool = False,
    media_type: str = "application/json",
    also: Mapping[int, Schema] | None = None,
) -> Callable[[H], H]:
    """Describe a REST handler for the OpenAPI document: the model its body is validated
    with, the model (or JSON schema) of its answer and the answer's status, its query
    parameters (name -> JSON schema, a `description` in it describes the parameter), the
    error codes it gives besides those added by themselves, whether it needs no token, and
    any other answer that is not an error (`also`: status -> model)."""
    unknown = set(errors) - set(BY_CODE)
    if unknown:
        raise ValueError(f"unknown error codes {sorted(unknown)}")
    doc = Doc(
        body, answer, status, dict(query or {}), tuple(errors), public, media_type, dict(also or {})
    )

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, doc)
        return handler

    return mark


def integer(description: str, minimum: int, maximum: int) -> dict[str, Any]:
    """A query parameter's schema: an integer in [minimum, maximum]."""
    return {"type": "integer", "minimum": minimum, "maximum": maximum, "description": description}


def text(description: str, **schema: Any) -> dict[str, Any]:
    """A query parameter's schema: a string (`maxLength`, `enum`, `pattern` may be added)."""
    return {"type": "string", "description": description, **schema}


def doc_of(handler: Any) -> Doc | None:
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Doc) else None


def openapi_document(app: Sanic) -> dict[str, Any]:
    """The document of `app`'s REST routes, made once per app."""
    cached: dict[str, Any] | None = getattr(app.ctx, "openapi_document", None)
    if cached is None:
        cached = build_document(app)
        app.ctx.openapi_document = cached
    return cached


@dataclass
class _Operation:
    path: str
    method: str
    handler: Any
    doc: Doc | None
    tag: str | None
    parameters: list[tuple[str, str]]  # (name, sanic type label) of the path
    operation_id: str


def build_document(app: Sanic) -> dict[str, Any]:
    operations = list(_operations(app))
    schemas, refs = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for op in sorted(operations, key=_method_order):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
        if op.tag is not None and op.tag not in tags:
            tags[op.tag] = _first_paragraph(inspect.getmodule(op.handler))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Orchestra REST API",
            "version": PROTOCOL_VERSION,
            "description": (
                "Generated from the gateway's routes and the models they validate with. "
                "Every call but signing in and the health check takes an access token "
                "(`POST /api/auth/login`) as a bearer token. An error answers with its HTTP "
                'status and `{"error": ErrorInfo}` (PROTOCOL.md §2).'
            ),
        },
        "tags": [{"name": name, "description": about} for name, about in sorted(tags.items())],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The `accessToken` of `POST /api/auth/login`.",
                }
            },
        },
    }


def _method_order(op: _Operation) -> int:
    return _METHOD_ORDER.index(op.method) if op.method in _METHOD_ORDER else len(_METHOD_ORDER)


def _operations(app: Sanic) -> Iterable[_Operation]:
    for route in app.router.routes:
        path = "/" + route.path
        if not (path.startswith(DOCUMENTED) or path in ("/health", "/metrics")):
            continue
        handler = route.handler
        parts = route.name.split(".")
        tag = parts[1] if len(parts) == 3 else None
        methods = sorted(set(route.methods) - {"HEAD", "OPTIONS"})
        parameters = [(m.group(1), m.group(2) or "str") for m in _PARAMETER.finditer(path)]
        for method in methods:
            name = getattr(handler, "__name__", parts[-1])
            yield _Operation(
                path=_PARAMETER.sub(r"{\1}", path),
                method=method,
                handler=handler,
                doc=doc_of(handler),
                tag=tag,
                parameters=parameters,
                operation_id=".".join(filter(None, (tag, name)))
                + (f"_{method.lower()}" if len(methods) > 1 else ""),
            )


def _schemas(
    operations: list[_Operation],
) -> tuple[dict[str, Any], dict[tuple[Any, JsonSchemaMode], dict[str, Any]]]:
    """Every model's schema under `components.schemas`, and a `$ref` to each by model."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorAnswer, "serialization"): None
    }
    for op in operations:
        if op.doc is None:
            continue
        if op.doc.body is not None:
            wanted[(op.doc.body, "validation")] = None
        for answer in (op.doc.answer, *op.doc.also.values()):
            if isinstance(answer, type):
                wanted[(answer, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=_REF, schema_generator=_Untitled)
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
    for (model, mode), ref in refs.items():
        if mode == "validation" and issubclass(model, Payload):
            name = ref["$ref"].rsplit("/", 1)[-1]
            _drop_envelope(schemas[name])
    return schemas, dict(refs)


class _Untitled(GenerateJsonSchema):
    """No `title` on each field: a field's name says it (models keep theirs)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _drop_envelope(schema: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    for name in _ENVELOPE:
        properties.pop(name, None)


def _operation(
    op: _Operation, refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]
) -> dict[str, Any]:
    doc = op.doc
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.operation_id.rsplit(".", 1)[-1].replace("_", " ").capitalize(),
    }
    if op.tag is not None:
        operation["tags"] = [op.tag]
    description = inspect.getdoc(op.handler)
    if description:
        # One paragraph a line: a docstring's own line breaks are not the text's.
        operation["description"] = re.sub(r"(?<!\n)\n(?!\n)", " ", description)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PARAMETER_TYPES.get(label, {"type": "string", "pattern": "^[^/]+$"}),
        }
        for name, label in op.parameters
    ]
    if doc is None:
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = {
            "200": {"description": "Not described yet (its handler has no `@documented`)."}
        }
        return operation
    for name, given in doc.query.items():
        schema = dict(given)
        parameter = {"name": name, "in": "query", "required": False}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameters.append({**parameter, "schema": schema})
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {
            "required": any(f.is_required() for f in doc.body.model_fields.values()),
            "content": {"application/json": {"schema": refs[(doc.body, "validation")]}},
        }
    answer: dict[str, Any] = {"description": _status_text(doc.status)}
    if doc.answer is not None:
        schema = doc.answer if isinstance(doc.answer, dict) else refs[(doc.answer, "serialization")]
        answer["content"] = {doc.media_type: {"schema": schema}}
    responses = {str(doc.status): answer}
    for status, other in doc.also.items():
        schema = other if isinstance(other, dict) else refs[(other, "serialization")]
        responses[str(status)] = {
            "description": _status_text(status),
            "content": {doc.media_type: {"schema": schema}},
        }
    responses.update(_errors(op, refs[(ErrorAnswer, "serialization")]))
    operation["responses"] = responses
    operation["security"] = [] if doc.public else [{BEARER: []}]
    return operation


def _errors(op: _Operation, error_ref: dict[str, Any]) -> dict[str, Any]:
    """The operation's error answers by HTTP status, each naming the codes it carries."""
    assert op.doc is not None
    codes = list(op.doc.errors)
    if not op.doc.public:
        codes.append("AUTH_001")
    if op.parameters or op.doc.query or op.doc.body is not None:
        codes.append("PARAM_001")
    if op.doc.body is not None:
        codes.append("RES_001")
    if op.path.startswith(_RATE_LIMITED):
        codes.append("RATE_001")
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(BY_CODE[code].http_status, []).append(code)
    answers: dict[str, Any] = {}
    for status, found in sorted(by_status.items()):
        lines = [f"`{code}` {BY_CODE[code].name}: {_meaning(code)}" for code in found]
        answers[str(status)] = {
            "description": "\n\n".join(lines),
            "content": {"application/json": {"schema": error_ref}},
        }
    return answers


def _meaning(code: str) -> str:
    """The error class's docstring, as a sentence of its own."""
    first = (inspect.getdoc(BY_CODE[code]) or "").split("\n\n")[0].replace("\n", " ")
    first = first.removeprefix("Raised when ").removeprefix("Raised for ")
    return first[:1].upper() + first[1:]


def _status_text(status: int) -> str:
    return {200: "OK", 201: "Created", 503: "Unavailable"}.get(status, str(status))


def _first_paragraph(module: Any) -> str:
    return (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
