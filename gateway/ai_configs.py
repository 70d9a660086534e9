"""AI configs: a user's named settings for a tool, and what a worker starting with one gets.

A config is `{name, tool, model?, apiKey?, settings?}` (PROTOCOL.md §6). The API key is
write-only: it is kept encrypted under the gateway's master key with the record's id as
associated data (`orchestra.crypto.encrypt_field`), never returned, never logged; answers
say only `hasApiKey`. Each config is its owner's alone, admins included: anyone else, and
an id that does not exist, get the same AUTH_002, so existence never leaks (§7).

`resolve_ai_config` is what the rest of the gateway calls when a worker starts with an
`aiConfigId`: the config as a `ResolvedConfig`, its key decrypted (for sealing to the
agent at once, never for keeping).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from orchestra.codec import format_timestamp
from orchestra.crypto import CryptoError, decrypt_field
from orchestra.db import AIConfig, Store
from orchestra.errors import Forbidden, InvalidParameters
from orchestra.settings import Settings

__all__ = [
    "AIConfigSettings",
    "ResolvedConfig",
    "config_view",
    "owned_config",
    "resolve_ai_config",
    "validate_base_url",
]

log = logging.getLogger(__name__)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that by their name hold a credential: these belong in `apiKey`, which is
# encrypted, not in `env`, which is stored and shown as plain text.
SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.I)
MAX_ENV = 64
MAX_ENV_VALUE = 4096
MAX_URL = 2048


def validate_base_url(value: str, what: str = "baseUrl") -> str:
    """An absolute http(s) URL with a host and no credentials in it; ValueError if not."""
    if len(value) > MAX_URL:
        raise ValueError(f"{what} must be at most {MAX_URL} characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        # Never echo it: the part before the host may be a password.
        raise ValueError(f"{what} must not carry credentials")
    del port
    return value


class AIConfigSettings(BaseModel):
    """The options a config may set for its tool; anything else is refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    permission_mode: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$"
    )
    allowed_tools: list[str] | None = Field(None, max_length=256)
    base_url: str | None = None
    env: dict[str, str] | None = None

    @field_validator("allowed_tools")
    @classmethod
    def _check_tools(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not name or len(name) > 256:
                raise ValueError("each allowed tool is 1 to 256 characters")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else validate_base_url(value)

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_ENV:
            raise ValueError(f"at most {MAX_ENV} variables")
        for name, text in value.items():
            if not ENV_NAME.match(name):
                raise ValueError(f"{name[:64]!r} is not a valid variable name")
            if SECRET_NAME.search(name):
                raise ValueError(f"{name} looks like a secret: put it in apiKey (encrypted)")
            if len(text) > MAX_ENV_VALUE or "\x00" in text:
                raise ValueError(f"the value of {name} is too long or holds a NUL")
        return value

    def stored(self) -> dict[str, Any]:
        """The form kept in SQL and shown in answers: camelCase, unset options left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class ResolvedConfig:
    """An AI config ready for a worker; `api_key` is plaintext and never in `repr`."""

    id: str
    tool: str
    model: str | None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    base_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)


def config_view(record: AIConfig) -> dict[str, Any]:
    """The answer shape: never the key, never its ciphertext."""
    return {
        "id": record.id,
        "name": record.name,
        "tool": record.tool,
        "model": record.model,
        "settings": dict(record.settings or {}),
        "hasApiKey": record.api_key_encrypted is not None,
        "createdAt": format_timestamp(record.created_at),
        "updatedAt": format_timestamp(record.updated_at),
    }


async def owned_config(store: Store, user_id: str, config_id: str) -> AIConfig:
    """The config if `user_id` owns it; AUTH_002 alike when it is another's or unknown."""
    if not config_id or len(config_id) > 128:
        raise InvalidParameters("aiConfigId must be 1 to 128 characters")
    record = await store.get_ai_config(config_id)
    if record is None or record.owner_id != user_id:
        raise Forbidden("not your AI config")
    return record


async def resolve_ai_config(
    store: Store, settings: Settings, user_id: str, config_id: str
) -> ResolvedConfig:
    """The config `config_id` of `user_id`, its API key decrypted, for starting a worker.

    AUTH_002 when it is someone else's or unknown; PARAM_001 when the id is malformed or
    the stored config no longer opens (its key was set under another master key).
    """
    record = await owned_config(store, user_id, config_id)
    try:
        options = AIConfigSettings.model_validate(record.settings or {})
    except ValidationError:
        raise InvalidParameters(
            "the AI config's settings are no longer valid: update them", {"aiConfigId": record.id}
        ) from None
    api_key: str | None = None
    if record.api_key_encrypted is not None:
        try:
            api_key = decrypt_field(settings.secrets_key, record.id, record.api_key_encrypted)
        except CryptoError:
            log.warning("AI config %s: its API key does not decrypt under this key", record.id)
            raise InvalidParameters(
                "the AI config's API key cannot be read: set it again", {"aiConfigId": record.id}
            ) from None
    return ResolvedConfig(
        id=record.id,
        tool=record.tool,
        model=record.model,
        permission_mode=options.permission_mode,
        allowed_tools=None if options.allowed_tools is None else tuple(options.allowed_tools),
        base_url=options.base_url,
        env=dict(options.env or {}),
        api_key=api_key,
    )
