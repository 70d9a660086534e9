"""The wire codec (PROTOCOL.md §1): envelope, tagged values, compression and its limits."""

from __future__ import annotations

import base64
import gzip
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra import codec
from orchestra.errors import InvalidParameters, ResourceExhausted

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MIB = 1024 * 1024


def big_payload(size: int = 4096) -> dict[str, Any]:
    return {"taskId": "t-1", "data": "line of output\n" * (size // 15 + 1)}


# -- envelope -------------------------------------------------------------------------------


def test_envelope_carries_every_field_and_keeps_the_payloads_own() -> None:
    payload = codec.envelope({"taskId": "t-1", "seq": 3}, "agent")
    assert payload["taskId"] == "t-1" and payload["seq"] == 3
    assert isinstance(payload["id"], str) and payload["id"]
    assert payload["source"] == "agent"
    assert payload["version"] == "1.1"
    assert TIMESTAMP.match(payload["timestamp"]), payload["timestamp"]


def test_envelope_ids_are_unique_and_given_ones_are_kept() -> None:
    ids = {codec.envelope({})["id"] for _ in range(1000)}
    assert len(ids) == 1000
    assert codec.envelope({"id": "mine"})["id"] == "mine"
    assert codec.envelope({})["source"] == "server"


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    assert TIMESTAMP.match(codec.now_iso())
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    assert codec.format_timestamp(moment) == "2024-02-29T23:59:58.123Z"
    # Whole seconds still get their milliseconds.
    assert codec.format_timestamp(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000Z"
    # Another offset is converted to UTC.
    plus_two = datetime(2024, 1, 1, 2, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert codec.format_timestamp(plus_two) == "2024-01-01T00:00:00.000Z"
    parsed = codec.parse_timestamp("2024-02-29T23:59:58.123Z")
    assert parsed == datetime(2024, 2, 29, 23, 59, 58, 123000, tzinfo=UTC)


# -- tagged values --------------------------------------------------------------------------


def test_date_and_bigint_round_trip_through_json() -> None:
    moment = datetime(2025, 5, 17, 8, 30, 1, 250000, tzinfo=UTC)
    huge = 2**64 + 7
    encoded = codec.encode_tagged({"at": moment, "count": huge})
    assert encoded == {
        "at": {"__type": "Date", "value": "2025-05-17T08:30:01.250Z"},
        "count": {"__type": "BigInt", "value": str(huge)},
    }
    decoded = codec.decode_tagged(json.loads(json.dumps(encoded)))
    assert decoded == {"at": moment, "count": huge}
    assert isinstance(decoded["count"], int)


def test_tagged_values_nested_in_lists_and_objects() -> None:
    moment = datetime(2020, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    value = {
        "result": {"runs": [{"started": moment, "bytes": -(2**60)}, [moment, 2**53]]},
        "plain": [1, "two", None, True, 2.5],
    }
    wire = json.loads(json.dumps(codec.encode_tagged(value)))
    assert wire["result"]["runs"][0]["started"] == {
        "__type": "Date",
        "value": "2020-01-02T03:04:05.006Z",
    }
    assert wire["result"]["runs"][1][1] == {"__type": "BigInt", "value": str(2**53)}
    assert codec.decode_tagged(wire) == value


def test_small_ints_and_bools_are_not_tagged() -> None:
    safe = 2**53 - 1
    assert codec.encode_tagged({"n": safe, "neg": -safe, "b": True}) == {
        "n": safe,
        "neg": -safe,
        "b": True,
    }


def test_tags_from_a_javascript_peer_decode() -> None:
    wire = {"details": {"when": {"__type": "Date", "value": "2021-06-01T12:00:00.000Z"}}}
    assert codec.decode_tagged(wire)["details"]["when"] == datetime(2021, 6, 1, 12, tzinfo=UTC)
    assert codec.decode_tagged({"__type": "BigInt", "value": "9007199254740993"}) == 2**53 + 1


@pytest.mark.parametrize(
    "bad",
    [
        {"__type": "Date", "value": "not a date"},
        {"__type": "BigInt", "value": "12x"},
        {"__type": "BigInt", "value": "1.5"},
    ],
)
def test_a_bad_tagged_value_is_param_001(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        codec.decode_tagged({"nested": [bad]})
    assert caught.value.code == "PARAM_001"


def test_objects_that_only_look_tagged_pass_through() -> None:
    value = {"__type": "Date", "value": "2021-06-01T12:00:00.000Z", "other": 1}
    assert codec.decode_tagged(value) == value
    assert codec.decode_tagged({"__type": "Custom", "value": 1}) == {"__type": "Custom", "value": 1}


json_leaves = st.none() | st.booleans() | st.text(max_size=20) | st.floats(allow_nan=False)
ints = st.integers(min_value=-(2**80), max_value=2**80)
moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
keys = st.text(max_size=10).filter(lambda k: k != "__type")
tagged_trees = st.recursive(
    json_leaves | ints | moments,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(tagged_trees)
def test_encode_then_decode_through_json_is_the_identity(value: Any) -> None:
    wire = json.dumps(codec.encode_tagged(value))
    assert codec.decode_tagged(json.loads(wire)) == value


# -- compression ----------------------------------------------------------------------------


def test_small_payloads_are_never_compressed() -> None:
    small = {"taskId": "t-1", "data": "x" * 100}
    assert codec.compress(small, ["zstd", "gzip"], 1024) is small
    # Exactly at the threshold is not above it.
    at = {"d": "x" * (1024 - len('{"d":""}'))}
    assert codec.json_size(at) == 1024
    assert codec.compress(at, ["zstd"], 1024) is at


def test_large_payloads_are_compressed_only_with_an_accepted_algorithm() -> None:
    payload = big_payload()
    assert codec.compress(payload, [], 1024) is payload
    assert codec.compress(payload, ["brotli", "deflate"], 1024) is payload
    packed = codec.compress(payload, ["gzip"], 1024)
    assert packed["compressed"] is True and packed["algorithm"] == "gzip"
    assert set(packed) == {"compressed", "algorithm", "originalSize", "compressedData"}
    assert packed["originalSize"] == codec.json_size(payload)
    assert len(packed["compressedData"]) < codec.json_size(payload)
    # Agents use zstd when offered.
    assert codec.compress(payload, ["gzip", "zstd"], 1024)["algorithm"] == "zstd"


def test_the_production_threshold_applies() -> None:
    payload = {"d": "y" * 700}
    assert codec.compress(payload, ["zstd"], 1024) is payload
    assert codec.compress(payload, ["zstd"], 512)["compressed"] is True


@pytest.mark.parametrize("algorithm", ["zstd", "gzip"])
def test_round_trip(algorithm: str) -> None:
    payload = big_payload(20_000) | {"nested": {"list": list(range(100)), "ok": True}}
    packed = codec.compress(payload, [algorithm], 512)
    assert packed["algorithm"] == algorithm
    assert codec.decompress(json.loads(json.dumps(packed)), MIB) == payload


def test_the_wire_format_is_standard_zstd_and_gzip() -> None:
    """A peer in another language decodes it with its ordinary libraries, and vice versa."""
    payload = big_payload()
    raw = json.dumps(payload).encode()
    for algorithm, packed in [
        ("zstd", zstandard.ZstdCompressor().compress(raw)),
        ("gzip", gzip.compress(raw)),
    ]:
        message = {
            "compressed": True,
            "algorithm": algorithm,
            "originalSize": len(raw),
            "compressedData": base64.b64encode(packed).decode(),
        }
        assert codec.decompress(message, MIB) == payload
    zstd_packed = codec.compress(payload, ["zstd"], 0)
    data = base64.b64decode(zstd_packed["compressedData"])
    assert json.loads(zstandard.ZstdDecompressor().decompress(data)) == payload
    gzip_packed = codec.compress(payload, ["gzip"], 0)
    assert json.loads(gzip.decompress(base64.b64decode(gzip_packed["compressedData"]))) == payload


def test_uncompressed_payloads_pass_through_decompress() -> None:
    for value in [{"a": 1}, {"compressed": False, "x": 1}, "text", None, [1, 2]]:
        assert codec.decompress(value, MIB) == value


@pytest.mark.parametrize("algorithm", ["zstd", "gzip"])
def test_a_compression_bomb_is_refused_with_res_001(algorithm: str) -> None:
    zeros = b"\0" * (50 * MIB)
    if algorithm == "zstd":
        # No content size in the frame header: nothing tells the reader how big it gets.
        packed = zstandard.ZstdCompressor(write_content_size=False).compress(zeros)
    else:
        packed = gzip.compress(zeros)
    assert len(packed) < 100 * 1024
    bomb = {
        "compressed": True,
        "algorithm": algorithm,
        "originalSize": 100,  # a lie
        "compressedData": base64.b64encode(packed).decode(),
    }
    with pytest.raises(ResourceExhausted) as caught:
        codec.decompress(bomb, MIB)
    assert caught.value.code == "RES_001"


def test_an_announced_size_over_the_limit_is_refused_before_decoding() -> None:
    packed = codec.compress(big_payload(), ["zstd"], 0)
    packed["originalSize"] = 2 * MIB
    with pytest.raises(ResourceExhausted) as caught:
        codec.decompress(packed, MIB)
    assert caught.value.code == "RES_001"


def test_a_payload_just_over_the_limit_is_refused() -> None:
    payload = {"d": "z" * 5000}
    packed = codec.compress(payload, ["zstd"], 0)
    packed["originalSize"] = 10
    with pytest.raises(ResourceExhausted):
        codec.decompress(packed, 4096)
    assert codec.decompress(packed, 8192) == payload


@pytest.mark.parametrize(
    "message",
    [
        {"compressed": True, "algorithm": "zstd", "originalSize": 10, "compressedData": "!!!***"},
        {"compressed": True, "algorithm": "gzip", "originalSize": 10, "compressedData": "a"},
        {
            "compressed": True,
            "algorithm": "zstd",
            "originalSize": 10,
            "compressedData": base64.b64encode(b"not zstd at all").decode(),
        },
        {
            "compressed": True,
            "algorithm": "gzip",
            "originalSize": 10,
            "compressedData": base64.b64encode(b"not gzip at all").decode(),
        },
        {
            "compressed": True,
            "algorithm": "gzip",
            "originalSize": 9,
            "compressedData": base64.b64encode(gzip.compress(b"not json!")).decode(),
        },
        {"compressed": True, "algorithm": "brotli", "originalSize": 10, "compressedData": ""},
        {"compressed": True, "algorithm": "zstd", "originalSize": "10", "compressedData": ""},
        {"compressed": True, "algorithm": "zstd", "originalSize": 10, "compressedData": 5},
        {"compressed": True},
    ],
    ids=[
        "garbage-base64",
        "truncated-base64",
        "not-zstd",
        "not-gzip",
        "not-json",
        "unknown-algorithm",
        "size-not-int",
        "data-not-str",
        "fields-missing",
    ],
)
def test_malformed_compressed_payloads_are_param_001(message: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        codec.decompress(message, MIB)
    assert caught.value.code == "PARAM_001"


payload_values = st.recursive(
    # Strict JSON (orchestra.strict_json): integers past 64 bits travel as BigInt tags.
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=200),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=25,
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10), payload_values, max_size=8),
    st.sampled_from(["zstd", "gzip"]),
    st.integers(min_value=0, max_value=2048),
)
def test_compress_then_decompress_is_the_identity(
    payload: dict[str, Any], algorithm: str, threshold: int
) -> None:
    packed = codec.compress(payload, [algorithm], threshold)
    if codec.json_size(payload) > threshold:
        assert packed["compressed"] is True and packed["algorithm"] == algorithm
    else:
        assert packed is payload
    assert codec.decompress(json.loads(json.dumps(packed)), MIB) == payload
