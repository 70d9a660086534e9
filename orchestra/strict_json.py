"""Strict JSON at the edge: what every peer's text is parsed with, and what we write.

RFC 8259 JSON has no NaN or Infinity, and a browser's `JSON.parse` rejects them, so one
peer that slipped them in could break every other peer's page. Python's `json` accepts
them (and turns `1e400` into `inf`), so text from outside is parsed here instead, where a
value that is not strict JSON is not refused by raising (which would lose the event's
name and ack id) but recorded: `loads` hands back a `NotStrict` marker in the place of the
payload, and the namespace or route answers PARAM_001 saying what was wrong.

Not strict, here: NaN, Infinity and -Infinity; a number that overflows a double (`1e400`);
an integer outside 64 bits (use the BigInt tag, PROTOCOL.md §1); a lone surrogate escape
(`"\\ud800"`, which UTF-8 cannot carry); nesting deeper than `MAX_DEPTH`; and, on
Socket.IO, binary attachments (no event of the protocol takes bytes).

`dumps` writes NaN and Infinity as null, so nothing non-finite is ever sent.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "NotStrict", "dumps", "loads", "problem"]

MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# A number of 19 digits or more (after `:`, `,` or `[`, where JSON numbers stand): maybe
# an integer orjson would read as a float.
_LONG_DIGITS = re.compile(r"[:,\[]\s*-?[0-9]{19}")
# A surrogate escape; only when there is one is the parsed value searched for lone ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


@dataclass(frozen=True, slots=True)
class NotStrict:
    """Stands where a payload was that is not strict JSON; `reason` says why, and
    `request_id` is the payload's `id`, which the refusal still echoes."""

    reason: str
    request_id: str | None = None


class _Problems:
    """The parser hooks of one `loads` call, noting the first problem they meet."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def constant(self, name: str) -> None:
        self.reason = self.reason or f"{name} is not JSON"

    def number(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.reason = self.reason or f"the number {text[:32]} is too large"
            return 0.0
        return value

    def integer(self, text: str) -> int:
        # 20 characters hold every 64-bit integer; longer text is not converted at all.
        value = int(text) if len(text) <= 20 else _INT_MAX + 1
        if not _INT_MIN <= value <= _INT_MAX:
            self.reason = self.reason or "an integer outside 64 bits (use the BigInt tag)"
            return 0
        return value


def loads(text: str | bytes) -> Any:
    """Parse JSON text; a value that is not strict JSON comes back as `NotStrict` (for a
    Socket.IO event, `[name, NotStrict]`, so the event can still be answered).

    Text that is not JSON at all raises ValueError (RecursionError is raised as one).

    orjson parses first: it refuses NaN, Infinity, overflowing numbers and lone
    surrogates by itself, so what it takes is strict unless it holds a long run of digits
    (orjson reads integers past 64 bits as floats) or deep nesting, which the careful
    parser below looks at. What orjson refuses goes there too, to say why."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    if _LONG_DIGITS.search(text) is None:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            if (text.count("[") + text.count("{")) > MAX_DEPTH and (
                reason := _depth_problem(value)
            ):
                return refused(value, reason)
            return value
    return _careful_loads(text)


def _careful_loads(text: str) -> Any:
    problems = _Problems()
    try:
        value = json.loads(
            text,
            parse_constant=problems.constant,
            parse_float=problems.number,
            parse_int=problems.integer,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
    reason = problems.reason
    if reason is None and (text.count("[") + text.count("{")) > MAX_DEPTH:
        reason = _depth_problem(value)
    if reason is None and _SURROGATE_ESCAPE.search(text):
        reason = _surrogate_problem(value)
    if reason is None:
        return value
    return refused(value, reason)


def refused(value: Any, reason: str) -> Any:
    """`value` replaced by a `NotStrict`, keeping a Socket.IO event's name."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        payload = value[1] if len(value) > 1 else None
        request_id = payload.get("id") if isinstance(payload, dict) else None
        if not (isinstance(request_id, str) and request_id.isascii() and len(request_id) <= 128):
            request_id = None
        return [value[0], NotStrict(reason, request_id)]
    return NotStrict(reason)


def dumps(value: Any, *args: Any, **kwargs: Any) -> str:
    """Compact JSON text (orjson; python-socketio's `separators` are what it writes
    anyway). NaN and Infinity, which nothing should hold since every model refuses them,
    come out as null (orjson), never as bare `NaN` a browser could not parse."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits, a type orjson does not know
        kwargs["allow_nan"] = False
        return json.dumps(value, *args, **kwargs)


def problem(value: Any) -> str | None:
    """Why a parsed value is not strict JSON (a `NotStrict` anywhere in it), else None."""
    if isinstance(value, NotStrict):
        return value.reason
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, NotStrict):
                return item.reason
    return None


def _depth_problem(value: Any) -> str | None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _surrogate_problem(value: Any) -> str | None:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate, which is not Unicode text"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
