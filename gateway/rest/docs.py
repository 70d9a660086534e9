"""`/api/openapi.json`: this API's OpenAPI 3.1 document, generated from its routes and
models (`gateway.openapi`); `/api/docs` renders it (a page of the console's files)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, json

from gateway.console_site import CONSOLE_DIR, PAGE_HEADERS
from gateway.openapi import documented, openapi_document

bp = Blueprint("docs", url_prefix="/api")


@bp.get("/openapi.json")
@documented(public=True, answer={"type": "object", "required": ["openapi", "paths"]})
async def openapi(request: Request) -> HTTPResponse:
    """This document (OpenAPI 3.1): every REST route, its parameters, body and answers,
    and its error answers. No token needed."""
    return json(openapi_document(request.app))


@bp.get("/docs")
@documented(public=True, answer={"type": "string"}, media_type="text/html")
async def docs_page(request: Request) -> HTTPResponse:
    """A page listing the operations of this document with their schemas."""
    return await file(CONSOLE_DIR / "docs.html", headers=PAGE_HEADERS)
