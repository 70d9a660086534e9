"""`/api/ai-configs`: each user's own AI configs (PROTOCOL.md §6).

`{name, tool, model?, apiKey?, settings?}`; the key is write-only (encrypted at rest,
answers say `hasApiKey`). On update, a field left out stays as it was; `apiKey: null`
clears the key, `model: null` the model, `settings` replaces the settings whole.
"""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.ai_configs import AIConfigSettings, config_view, owned_config
from gateway.openapi import documented
from gateway.rest.common import body, caller, changes, node_of
from orchestra.crypto import encrypt_field
from orchestra.db.models import new_id
from orchestra.errors import Forbidden
from orchestra.protocol import Payload
from orchestra.protocol.rest import AIConfigAnswer, AIConfigsAnswer, Empty

bp = Blueprint("ai_configs", url_prefix="/api/ai-configs")

TOOL_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
MAX_API_KEY = 16 * 1024


class CreateAIConfig(Payload):
    name: str = Field(min_length=1, max_length=200)
    tool: str = Field(min_length=1, max_length=64, pattern=TOOL_PATTERN)
    model: str | None = Field(None, min_length=1, max_length=200)
    api_key: str | None = Field(None, min_length=1, max_length=MAX_API_KEY, repr=False)
    settings: AIConfigSettings = Field(default_factory=lambda: AIConfigSettings.model_validate({}))


class UpdateAIConfig(Payload):
    name: str | None = Field(None, min_length=1, max_length=200)
    tool: str | None = Field(None, min_length=1, max_length=64, pattern=TOOL_PATTERN)
    model: str | None = Field(None, min_length=1, max_length=200)
    api_key: str | None = Field(None, min_length=1, max_length=MAX_API_KEY, repr=False)
    settings: AIConfigSettings | None = None


@bp.get("/")
@documented(answer=AIConfigsAnswer)
async def list_configs(request: Request) -> HTTPResponse:
    who = caller(request)
    records = await node_of(request).store.list_ai_configs(who.user_id)
    return json({"aiConfigs": [config_view(r) for r in records]})


@bp.post("/")
@documented(body=CreateAIConfig, answer=AIConfigAnswer, status=201)
async def create_config(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    given = body(request, CreateAIConfig)
    # The record's id is the key's associated data: make it first, then encrypt.
    config_id = new_id()
    encrypted = (
        None
        if given.api_key is None
        else encrypt_field(node.settings.secrets_key, config_id, given.api_key)
    )
    record = await node.store.create_ai_config(
        who.user_id,
        given.name,
        given.tool,
        model=given.model,
        api_key_encrypted=encrypted,
        settings=given.settings.stored(),
        config_id=config_id,
    )
    return json({"aiConfig": config_view(record)}, status=201)


@bp.get("/<config_id:str>")
@documented(answer=AIConfigAnswer, errors=["AUTH_002"])
async def get_config(request: Request, config_id: str) -> HTTPResponse:
    who = caller(request)
    record = await owned_config(node_of(request).store, who.user_id, config_id)
    return json({"aiConfig": config_view(record)})


@bp.route("/<config_id:str>", methods=["PATCH", "PUT"])
@documented(body=UpdateAIConfig, answer=AIConfigAnswer, errors=["AUTH_002"])
async def update_config(request: Request, config_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    await owned_config(node.store, who.user_id, config_id)
    given = body(request, UpdateAIConfig)
    sent = given.model_fields_set
    update = changes(given, ("name", "tool", "model"), not_null=("name", "tool"))
    if "api_key" in sent:
        update["api_key_encrypted"] = (
            None
            if given.api_key is None
            else encrypt_field(node.settings.secrets_key, config_id, given.api_key)
        )
    if "settings" in sent:
        update["settings"] = {} if given.settings is None else given.settings.stored()
    record = await node.store.update_ai_config(config_id, **update)
    if record is None:  # deleted meanwhile
        raise Forbidden("not your AI config")
    return json({"aiConfig": config_view(record)})


@bp.delete("/<config_id:str>")
@documented(answer=Empty, errors=["AUTH_002"])
async def delete_config(request: Request, config_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    await owned_config(node.store, who.user_id, config_id)
    await node.store.delete_ai_config(config_id)
    return json({})
