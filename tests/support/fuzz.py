"""What the fuzz tests (tests/e2e/test_fuzz_*.py) share: hypothesis strategies for malformed
values and payloads, what makes JSON non-strict, the checks of a Response and an ErrorInfo
(PROTOCOL.md §1, §2), and a tally that says what went wrong in a failure message.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import math
import re
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zstandard
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.support.raw_socketio import Raw, dumps

T = TypeVar("T")

# -- the protocol's figures ----------------------------------------------------------------

CODES = {
    "CONN_001",
    "CONN_002",
    "AUTH_001",
    "AUTH_002",
    "AGENT_001",
    "TASK_001",
    "TASK_002",
    "PARAM_001",
    "RATE_001",
    "SYS_001",
    "DB_001",
    "RES_001",
}
#: what a malformed request over a socket may fairly be answered with: any code of §2 but
#: SYS_001 (a bug) and DB_001 (input that reaches the SQL store unchecked). PARAM_001,
#: AUTH_002, TASK_002, AGENT_001 and RES_001 are the usual ones; TASK_001 comes for input
#: to a task that has ended.
SOCKET_REFUSALS = CODES - {"SYS_001", "DB_001"}
#: the codes an HTTP status goes with (§6); other 4xx: PARAM_001
STATUS_CODES = {
    400: {"PARAM_001"},
    422: {"PARAM_001"},
    401: {"AUTH_001"},
    403: {"AUTH_002"},
    404: {"TASK_002", "AGENT_001"},
    413: {"RES_001"},
    429: {"RATE_001"},
    500: {"SYS_001"},
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MAX_DEPTH = 64
INT64 = (-(2**63), 2**63)
MAX_PAYLOAD = 1024 * 1024

RESERVED_EVENTS = [
    "connect",
    "disconnect",
    "connect_error",
    "disconnecting",
    "newListener",
    "removeListener",
]

# One settings object for every property test: deterministic, no example database in the
# repository, no shrinking (the tests record every answer and fail once, at the end, with
# all of them), and no health check (a real gateway is slower than hypothesis likes).
FUZZ_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "phases": [Phase.generate],
    "suppress_health_check": list(HealthCheck),
    "print_blob": False,
}


def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, **FUZZ_SETTINGS)  # type: ignore[arg-type]


# -- what is not strict JSON ---------------------------------------------------------------


def _is_lone_surrogate_text(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def non_strict(value: Any) -> str | None:
    """Why `value`, written by `raw_socketio.dumps`, is not strict JSON; None if it is.

    Not strict: NaN, Infinity, -Infinity, numbers that overflow a double (1e400),
    integers outside [-2**63, 2**63), lone surrogates, nesting deeper than 64, and binary
    (bytes, sent as Socket.IO attachments)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Raw):
            if item.non_strict:
                return item.non_strict
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64[0] <= item < INT64[1]:
                return f"integer past 64 bits ({str(item)[:24]})"
        elif isinstance(item, float):
            if math.isnan(item) or math.isinf(item):
                return f"non-finite number {item}"
        elif isinstance(item, str):
            if _is_lone_surrogate_text(item):
                return "lone surrogate"
        elif isinstance(item, bytes | bytearray):
            return "binary attachment"
        elif isinstance(item, dict | list | tuple):
            if depth > MAX_DEPTH:
                return f"nesting deeper than {MAX_DEPTH}"
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _is_lone_surrogate_text(key):
                        return "lone surrogate in a key"
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def json_length(value: Any) -> int:
    """Length of the JSON text of `value` (binary counted by its size)."""
    attachments: list[bytes] = []
    return len(dumps(value, attachments)) + sum(len(a) for a in attachments)


def nested(depth: int, inner: Any = 0, kind: str = "list") -> Any:
    """`depth` containers, one inside the other (depth 1 is `[inner]` or `{"a": inner}`)."""
    value = inner
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def describe(value: Any, limit: int = 240) -> str:
    """A short, printable account of a value for a failure message."""
    if isinstance(value, Raw):
        text = value.text
    else:
        try:
            text = dumps(value, [])
        except (TypeError, ValueError, RecursionError) as exc:
            text = f"<{exc}>"
    if len(text) > limit:
        text = f"{text[: limit // 2]}…({len(text)} chars)…{text[-limit // 4 :]}"
    return text


# -- Responses and ErrorInfo ---------------------------------------------------------------


def error_info_problem(info: Any, *, stack_allowed: bool) -> str | None:
    """What is wrong with an ErrorInfo (PROTOCOL.md §2), or None."""
    if not isinstance(info, dict):
        return f"ErrorInfo is not an object: {describe(info)}"
    code = info.get("code")
    if code not in CODES:
        return f"code {code!r} is not one of §2's"
    if not (isinstance(info.get("message"), str) and info["message"]):
        return "no message"
    if not TIMESTAMP.match(str(info.get("timestamp"))):
        return f"timestamp {info.get('timestamp')!r} is not ISO-8601 UTC with milliseconds"
    if "stack" in info and not (stack_allowed and code == "SYS_001"):
        return f"a {code} ErrorInfo carries a stack" + (
            "" if stack_allowed else " (unauthenticated)"
        )
    if "details" in info and not isinstance(info["details"], dict | list | str | None):
        return "details of an odd type"
    return None


def response_problem(answer: Any, request_id: str | None) -> str | None:
    """What is wrong with an ack's Response (PROTOCOL.md §1), or None."""
    if not isinstance(answer, dict):
        return f"the ack is not one Response object: {describe(answer)}"
    if not (isinstance(answer.get("requestId"), str) and answer["requestId"]):
        return "no requestId"
    if request_id is not None and answer["requestId"] != request_id:
        return f"requestId {answer['requestId']!r} does not echo the payload's id"
    if answer.get("success") is True:
        return None if isinstance(answer.get("data"), dict) else "success without a data object"
    if answer.get("success") is not False:
        return "success is neither true nor false"
    return error_info_problem(answer.get("error"), stack_allowed=True)


# -- the tally -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Every answer counted by kind; the problems kept with what caused them."""

    name: str
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_kinds: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    def count(self, key: str) -> None:
        self.counts[key] += 1

    def problem(self, kind: str, what: str) -> None:
        self.problem_kinds[kind] += 1
        self.problems.append(f"[{kind}] {what}")

    def summary(self, first: int = 25) -> str:
        lines = [f"{self.name}: {self.sent} sent"]
        lines += [f"  {key}: {n}" for key, n in sorted(self.counts.items())]
        if self.problems:
            lines.append(f"{len(self.problems)} problems, by kind:")
            lines += [f"  {kind}: {n}" for kind, n in self.problem_kinds.most_common()]
            lines.append(f"the first of each kind (up to {first} in all):")
            shown: Counter[str] = Counter()
            for line in self.problems:
                kind = line[1 : line.index("]")]
                if shown[kind] < max(1, first // max(1, len(self.problem_kinds))):
                    shown[kind] += 1
                    lines.append("  " + line)
        return "\n".join(lines)


# -- running async code from hypothesis's (synchronous) test function ----------------------


class LoopBridge:
    """Runs coroutines on the test's event loop from the thread hypothesis runs in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)


# -- values --------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
NON_STRICT_NUMBERS: list[Any] = [
    NAN,
    INF,
    -INF,
    Raw("NaN", "NaN"),
    Raw("Infinity", "Infinity"),
    Raw("-Infinity", "-Infinity"),
    Raw("1e400", "1e400"),
    Raw("-1e400", "-1e400"),
    Raw("1E999", "1E999"),
    10**30,
    -(2**70),
    2**63,
    -(2**63) - 1,
    2**64,
    10**400,
]
EDGE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    0.1,
    -0.0,
    1e308,
    5e-324,
    Raw("1e-400"),  # underflows to 0.0: strict
    Raw("-0"),
    Raw("1.0e+2"),
]
LONE_SURROGATES = ["\ud800", "x\udfffy", "\udc00\ud800", "\ud83d", "a" * 40 + "\udbff"]
ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[31mred\x1b[0m",
    "\r\n",
    "\u202eevil",
    "\ufeff",
    "\u2028\u2029",
    "😀" * 8,
    "名前",
    "\uff46\uff55\uff4c\uff4c",  # fullwidth "full"
    "null",
    "undefined",
    "NaN",
    "true",
    "0",
    "-1",
    "1e400",
    "__proto__",
    "constructor",
    "../../../etc/passwd",
    "%00%2e%2e",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "\\",
    '"',
    "{}",
    "[]",
    "٣",  # Arabic-Indic digit three: isdigit() and int() both take it
    "²",  # superscript two: isdigit() says yes, int() says no
    "0-0",
    "99999999999999999999999-1",
    "18446744073709551615-18446744073709551615",
    "1-",
    "-1",
    "a" * 300,
]
ODD_KEYS = [
    "",
    "__proto__",
    "constructor",
    "prototype",
    "id",
    "timestamp",
    "compressed",
    "__type",
    "value",
    "_placeholder",
    "num",
    "$where",
    "a.b",
    "a b",
    "\x00",
    "名前",
    "k" * 200,
]


def leaves(*, binary: bool, loose: bool) -> st.SearchStrategy[Any]:
    """Single values of every type; `loose` adds non-strict ones, `binary` bytes."""
    options: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.booleans(),
        st.integers(min_value=INT64[0], max_value=INT64[1] - 1),
        st.sampled_from(EDGE_NUMBERS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=24),
        st.sampled_from(ODD_STRINGS),
        st.text(min_size=100, max_size=1500),
    ]
    if loose:
        options += [st.sampled_from(NON_STRICT_NUMBERS), st.sampled_from(LONE_SURROGATES)]
    if binary:
        options.append(st.binary(max_size=48))
    return st.one_of(options)


def keys(*, loose: bool) -> st.SearchStrategy[str]:
    options = [st.text(max_size=12), st.sampled_from(ODD_KEYS)]
    if loose:
        options.append(st.sampled_from(LONE_SURROGATES))
    return st.one_of(options)


def junk(*, binary: bool, loose: bool) -> st.SearchStrategy[Any]:
    """Any value: leaves, small containers of them, deep nesting, tagged values."""
    base = leaves(binary=binary, loose=loose)
    tree = st.recursive(
        base,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys(loose=loose), children, max_size=4),
        ),
        max_leaves=8,
    )
    tagged = st.fixed_dictionaries(
        {"__type": st.sampled_from(["Date", "BigInt", "Map", 5, None]), "value": base}
    )
    options = [tree, tree, tree, tagged]
    if loose:
        options.append(
            st.tuples(st.integers(MAX_DEPTH + 6, 300), st.sampled_from(["list", "dict"])).map(
                lambda t: nested(t[0], 1, t[1])
            )
        )
    return st.one_of(options)


def _zstd(raw: bytes) -> str:
    return base64.b64encode(zstandard.ZstdCompressor().compress(raw)).decode()


def _gzip(raw: bytes) -> str:
    return base64.b64encode(gzip.compress(raw)).decode()


# Compressed payloads (PROTOCOL.md §1), and why what they hold is not strict (None: it is).
_INNER: list[tuple[bytes, str | None]] = [
    (b"{}", None),
    (b'{"a":1}', None),
    (b"[1,2]", None),
    (b"null", None),
    (b'"x"', None),
    (b'{"a":NaN}', "NaN (compressed)"),
    (b'{"a":Infinity}', "Infinity (compressed)"),
    (b'{"a":1e400}', "1e400 (compressed)"),
    (b'{"a":100000000000000000000000000000}', "integer past 64 bits (compressed)"),
    (b'{"a":"\\ud800"}', "lone surrogate (compressed)"),
    (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", "nesting deeper than 64 (compressed)"),
    (b"\xff\xfe\xfd", None),
    (b'{"a":', None),
]
COMPRESSED_REASONS: dict[str, str | None] = {}
for _raw, _why in _INNER:
    COMPRESSED_REASONS[_zstd(_raw)] = _why
    COMPRESSED_REASONS[_gzip(_raw)] = _why


def compressed_envelopes(*, loose: bool) -> st.SearchStrategy[dict[str, Any]]:
    data = sorted(COMPRESSED_REASONS)
    good = st.sampled_from(data).map(
        lambda b64: {
            "compressed": True,
            "algorithm": "zstd" if base64.b64decode(b64)[:4] == b"\x28\xb5\x2f\xfd" else "gzip",
            "originalSize": 4096,
            "compressedData": b64,
        }
    )
    broken = st.fixed_dictionaries(
        {
            "compressed": st.just(True),
            "algorithm": st.one_of(
                st.sampled_from(["zstd", "gzip", "br", "ZSTD", ""]),
                leaves(binary=False, loose=loose),
            ),
            "originalSize": st.one_of(
                st.sampled_from([0, -1, 10**30, 2**31, MAX_PAYLOAD + 1]),
                leaves(binary=False, loose=loose),
            ),
            "compressedData": st.one_of(
                st.sampled_from([*data, "!!!", "", "AAAA", "=" * 8]),
                leaves(binary=False, loose=loose),
            ),
        }
    )
    return st.one_of(good, good, broken)


def compressed_reason(payload: Any) -> tuple[bool, str | None]:
    """(whether `payload` is a well-formed compressed envelope of ours, why its content is
    not strict JSON)."""
    if not (isinstance(payload, dict) and payload.get("compressed") is True):
        return False, None
    data = payload.get("compressedData")
    well_formed = (
        payload.get("algorithm") in ("zstd", "gzip")
        and isinstance(data, str)
        and data in COMPRESSED_REASONS
        and isinstance(payload.get("originalSize"), int)
        and 0 < payload["originalSize"] <= MAX_PAYLOAD
    )
    return well_formed, COMPRESSED_REASONS.get(data) if well_formed else None  # type: ignore[arg-type]


# -- payloads ------------------------------------------------------------------------------


@dataclass
class Case:
    """One request to send: the event (or route), its arguments, whether to ask an ack."""

    what: str  # how it was made: mutate, replace, wrap, ...
    args: list[Any]  # the event's arguments after its name (usually one payload)

    @property
    def payload(self) -> Any:
        return self.args[0] if len(self.args) == 1 else None

    def non_strict(self) -> str | None:
        for arg in self.args:
            reason = non_strict(arg) or compressed_reason(arg)[1]
            if reason:
                return reason
        return None


HUGE = 1024 * 1024 + 4096  # over the 1 MiB limit


@st.composite
def malformed(
    draw: st.DrawFn, template: dict[str, Any], *, binary: bool, loose: bool = True
) -> Case:
    """A payload made from a valid `template`: fields dropped, of the wrong type, unknown
    ones added, the whole thing replaced by a non-object, wrapped in an array, and so on."""
    any_value = junk(binary=binary, loose=loose)
    how = draw(
        st.sampled_from(
            ["mutate"] * 8
            + ["replace", "replace", "wrap", "args", "none", "huge", "compressed", "deep", "typed"]
        )
    )
    payload: Any = dict(template)
    if how == "mutate":
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["set", "set", "set", "drop", "add"]))
            names = sorted(payload) or ["x"]
            name = draw(st.sampled_from(names))
            if op == "set":
                payload[name] = draw(any_value)
            elif op == "drop":
                payload.pop(name, None)
            else:
                payload[draw(keys(loose=loose))] = draw(any_value)
        return Case(how, [payload])
    if how == "typed":
        # Every field of the template of one wrong type at once.
        kind = draw(leaves(binary=binary, loose=loose))
        return Case(how, [dict.fromkeys(payload, kind)])
    if how == "replace":
        return Case(
            how,
            [draw(st.one_of(leaves(binary=binary, loose=loose), st.lists(any_value, max_size=3)))],
        )
    if how == "wrap":
        return Case(how, [draw(st.sampled_from([[payload], [payload, payload], [[payload]]]))])
    if how == "args":
        return Case(how, [payload, draw(any_value)])
    if how == "none":
        return Case(how, [])
    if how == "huge":
        name = draw(st.sampled_from([*sorted(payload), "padding"]))
        size = draw(st.sampled_from([70_000, HUGE]))
        payload[name] = draw(st.sampled_from(["x" * size, ["y" * 1000] * (size // 1000 + 1)]))
        return Case(how, [payload])
    if how == "compressed":
        return Case(how, [draw(compressed_envelopes(loose=loose))])
    # deep
    if not loose:
        return Case("mutate", [payload])
    depth = draw(st.sampled_from([MAX_DEPTH + 6, 100, 500]))
    where = draw(st.sampled_from([*sorted(payload), "nest"]))
    payload[where] = nested(
        depth - 1, draw(leaves(binary=False, loose=False)), draw(st.sampled_from(["list", "dict"]))
    )
    return Case(how, [payload])
