"""Base of every protocol payload model: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from orchestra.errors import InvalidParameters


class Payload(BaseModel):
    """A validated event payload; the envelope fields are accepted and kept aside."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        str_max_length=1024 * 1024,
        # NaN and Infinity are not JSON: a browser's JSON.parse rejects them.
        allow_inf_nan=False,
    )

    id: str | None = None
    timestamp: Any = None
    source: str | None = None
    version: str | None = None
    target: str | None = None

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate wire data, turning any failure into PARAM_001 with the fields at fault."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidParameters(f"{cls.__name__} payload must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in exc.errors()[:10]
            ]
            raise InvalidParameters("invalid parameters", {"errors": problems}) from None

    def wire(self) -> dict[str, Any]:
        """The payload's own fields as the wire spells them, without unset optionals."""
        return self.model_dump(
            by_alias=True,
            exclude_none=True,
            exclude={"id", "timestamp", "source", "version", "target"},
            mode="json",
        )


class View(BaseModel):
    """A read model sent to clients (AgentView, SessionView, TaskView)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")
