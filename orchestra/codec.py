"""The wire codec (PROTOCOL.md §1): envelope fields, tagged values, compression.

- Envelope: every payload carries `id`, `timestamp`, `source`, `version`.
- Tagged values in free-form fields: `{"__type": "Date", "value": iso}` <-> `datetime`,
  `{"__type": "BigInt", "value": "123"}` <-> `int` (only integers JavaScript cannot hold
  exactly are tagged on the way out).
- Compression: a payload whose JSON is larger than the threshold is sent as
  `{"compressed": true, "algorithm", "originalSize", "compressedData"}` to a peer that
  listed the algorithm in its handshake. Decoding is bounded by the payload limit, so a
  small compressed bomb cannot make us allocate more than that.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import zstandard

from orchestra import strict_json
from orchestra.errors import InvalidParameters, ResourceExhausted

__all__ = [
    "ALGORITHMS",
    "PROTOCOL_VERSION",
    "compress",
    "decode_tagged",
    "decompress",
    "encode_tagged",
    "envelope",
    "format_timestamp",
    "from_json",
    "json_size",
    "new_id",
    "now_iso",
    "parse_event_id",
    "parse_timestamp",
    "to_json",
    "to_json_bytes",
    "valid_event_id",
]

PROTOCOL_VERSION = "1.1"
ALGORITHMS: tuple[str, ...] = ("zstd", "gzip")
_JS_SAFE_INT = 2**53 - 1

Source = Literal["web", "server", "agent"]


def new_id() -> str:
    return uuid.uuid4().hex


class _EnvelopeIds:
    """Envelope ids: unique, not secret, so not worth a `uuid4` (a system call) each. A
    random prefix per process (drawn again in a forked child), then a counter; both as 32
    hex digits, like `new_id`."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self.reseed()

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_envelope_ids = _EnvelopeIds()
os.register_at_fork(after_in_child=_envelope_ids.reseed)


def parse_event_id(event_id: str) -> tuple[int, int]:
    """A session's eventId, a Redis stream entry id "<ms>-<seq>" (or "<ms>", as Redis takes
    it), as the two numbers that order eventIds; ValueError for anything else."""
    ms, _, seq = event_id.partition("-")
    seq = seq or "0"
    # Redis allows 64 unsigned bits; the SQL archive keeps 63 (BIGINT), and no real
    # eventId comes near either.
    if not (
        ms.isascii()
        and ms.isdigit()
        and seq.isascii()
        and seq.isdigit()
        and len(ms) <= 19
        and len(seq) <= 19
        and int(ms) < 2**63
        and int(seq) < 2**63
    ):
        raise ValueError(f"not a stream entry id: {event_id!r}")
    return int(ms), int(seq)


def valid_event_id(event_id: str) -> bool:
    try:
        parse_event_id(event_id)
    except ValueError:
        return False
    return True


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a `Z`, as the protocol writes timestamps."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock:
    """`now_iso` formats the time once per millisecond, and the date once per second."""

    def __init__(self) -> None:
        self._ms = -1
        self._second = -1
        self._text = ""
        self._date = ""

    def now(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            second, milli = divmod(ms, 1000)
            if second != self._second:
                self._second = second
                self._date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._ms, self._text = ms, f"{self._date}.{milli:03d}Z"
        return self._text


_clock = _Clock()


def now_iso() -> str:
    """This moment as `format_timestamp` writes it."""
    return _clock.now()


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def envelope(payload: dict[str, Any], source: Source = "server") -> dict[str, Any]:
    """The payload with the envelope fields added (existing ones are kept)."""
    out = {
        "id": _envelope_ids.next(),
        "timestamp": now_iso(),
        "source": source,
        "version": PROTOCOL_VERSION,
    }
    out.update(payload)
    return out


def encode_tagged(value: Any) -> Any:
    """Turn `datetime` and large `int` values into the protocol's tagged objects."""
    if isinstance(value, datetime):
        return {"__type": "Date", "value": format_timestamp(value)}
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > _JS_SAFE_INT:
        return {"__type": "BigInt", "value": str(value)}
    if isinstance(value, dict):
        return {k: encode_tagged(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_tagged(v) for v in value]
    return value


def decode_tagged(value: Any) -> Any:
    """Turn tagged objects back into `datetime` and `int`; bad tags are a PARAM_001."""
    if isinstance(value, dict):
        tag = value.get("__type")
        if tag is not None and set(value) == {"__type", "value"}:
            raw = value["value"]
            try:
                if tag == "Date":
                    return parse_timestamp(str(raw))
                if tag == "BigInt":
                    return int(str(raw))
            except ValueError:
                raise InvalidParameters(f"bad {tag} value: {str(raw)[:64]!r}") from None
        return {k: decode_tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tagged(v) for v in value]
    return value


def to_json_bytes(value: Any) -> bytes:
    """Compact JSON of our own data (stored, spooled, sent), fast: orjson, with anything
    it does not know written as text (`default=str`), as the standard library was asked
    to; an integer past 64 bits falls back to the standard library."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def to_json(value: Any) -> str:
    return to_json_bytes(value).decode()


def from_json(text: str | bytes) -> Any:
    """Parse JSON we wrote ourselves (Redis, the spool): fast, and not the edge's strict
    parser, which is for what peers send."""
    return orjson.loads(text)


def json_size(payload: Any) -> int:
    return len(to_json_bytes(payload))


def compress(
    payload: dict[str, Any], accepted: Iterable[str], threshold_bytes: int
) -> dict[str, Any]:
    """The payload as the peer should receive it: compressed when large and accepted."""
    algorithm = next((a for a in ALGORITHMS if a in set(accepted)), None)
    if algorithm is None:
        return payload
    raw = to_json_bytes(payload)
    if len(raw) <= threshold_bytes:
        return payload
    if algorithm == "zstd":
        packed = zstandard.ZstdCompressor(level=3).compress(raw)
    else:
        packed = _gzip(raw)
    return {
        "compressed": True,
        "algorithm": algorithm,
        "originalSize": len(raw),
        "compressedData": base64.b64encode(packed).decode(),
    }


def decompress(payload: Any, max_bytes: int) -> Any:
    """Undo `compress`; anything else passes through. Refuses output over `max_bytes`."""
    if not (isinstance(payload, dict) and payload.get("compressed") is True):
        return payload
    algorithm = payload.get("algorithm")
    size = payload.get("originalSize")
    data = payload.get("compressedData")
    if algorithm not in ALGORITHMS or not isinstance(data, str) or not isinstance(size, int):
        raise InvalidParameters("malformed compressed payload")
    if size > max_bytes:
        raise ResourceExhausted(f"payload of {size} bytes is over the limit of {max_bytes}")
    try:
        packed = base64.b64decode(data, validate=True)
        if algorithm == "zstd":
            # A stream reader stops at the limit whatever the frame header claims.
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed)) as reader:
                raw = reader.read(max_bytes + 1)
        else:
            inflater = zlib.decompressobj(wbits=31)
            raw = inflater.decompress(packed, max_bytes + 1)
    except (binascii.Error, zstandard.ZstdError, zlib.error) as exc:
        raise InvalidParameters(f"cannot decompress payload: {exc}") from None
    if len(raw) > max_bytes:
        raise ResourceExhausted(f"payload is over the limit of {max_bytes} bytes")
    try:
        payload = strict_json.loads(raw)
    except ValueError:
        raise InvalidParameters("compressed payload is not JSON") from None
    if isinstance(payload, strict_json.NotStrict):
        raise InvalidParameters(f"the payload is not strict JSON: {payload.reason}")
    return payload


def _gzip(raw: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, 31)
    return deflater.compress(raw) + deflater.flush()
