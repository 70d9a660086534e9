"""What every worker's output items need to fit in one event (PROTOCOL.md §8).

A text longer than the chunk limit goes out as parts of one message (`split_text`, whose
details say `part` and `parts`); a tool's input or result, a turn's answer, is cut to the
limit instead (`cut`, which says whether it cut). Neither splits a UTF-8 character
(`utf8_boundary`). `summary` is the one line that names a tool call.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["cut", "split_text", "summary", "utf8_boundary"]


def summary(name: str, tool_input: Any) -> str:
    """One line saying what a tool call does (the command, the file, the pattern...)."""
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description"):
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                first = value.splitlines()[0] if value.strip() else value
                return f"{name}: {first[:500]}"
    return name


def split_text(text: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """`text` in parts of at most `limit` bytes, each with its details (none when the text
    is one part, as it mostly is)."""
    data = text.encode()
    if len(data) <= limit:
        return [(text, {})]
    parts: list[str] = []
    while data:
        cut_at = utf8_boundary(data, limit)
        parts.append(data[:cut_at].decode())
        data = data[cut_at:]
    return [(part, {"part": n, "parts": len(parts)}) for n, part in enumerate(parts, 1)]


def cut(value: Any, limit: int) -> tuple[Any, bool]:
    """`value` if its JSON fits in `limit` bytes, else its text cut to fit, and whether it
    was cut."""
    text = value if isinstance(value, str) else None
    if text is not None:
        data = text.encode()
        if len(data) <= limit:
            return text, False
        return data[: utf8_boundary(data, limit)].decode(), True
    encoded = json.dumps(value, ensure_ascii=False, default=str)
    if len(encoded.encode()) <= limit:
        return value, False
    data = encoded.encode()
    return data[: utf8_boundary(data, limit)].decode(), True


def utf8_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below `limit` that does not split a UTF-8 character."""
    if len(data) <= limit:
        return len(data)
    cut_at = limit
    while cut_at > 0 and (data[cut_at] & 0xC0) == 0x80:
        cut_at -= 1
    return cut_at or limit
