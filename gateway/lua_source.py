"""The gateway's Lua scripts, each a `.lua` file in `gateway/lua/`."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua_source(name: str) -> str:
    return resources.files("gateway").joinpath("lua", f"{name}.lua").read_text()
