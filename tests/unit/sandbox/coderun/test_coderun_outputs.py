"""The parent's validation of outputs (in-process, no sandbox): canonical JSON and strict safetensors."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save

from sandbox.coderun.outputs import InvalidOutput, canonical_json, check_safetensors, validate_output


def tensors_file(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_canonical_json_sorts_and_strips():
    assert canonical_json(b'{ "b": 1,\n "a": [1, 2.5, "\xc3\xa9"] }') == '{"a":[1,2.5,"é"],"b":1}'.encode()


@pytest.mark.parametrize("raw", [b'{"a": 1, "a": 2}', b"NaN", b'{"x": Infinity}', b"[1,", b"\xff", b"",
                                 b"[" * 100_000 + b"]" * 100_000, b"1" * 5000])
def test_invalid_json_is_refused(raw):
    with pytest.raises(InvalidOutput):
        canonical_json(raw)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text()
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
                           max_leaves=20)


@given(json_values)
def test_canonical_json_round_trips_and_is_idempotent(value):
    out = canonical_json(json.dumps(value).encode())
    assert json.loads(out) == value
    assert canonical_json(out) == out


def test_size_is_checked_before_and_after_canonicalisation():
    with pytest.raises(InvalidOutput, match="too large"):
        validate_output("json", b"1" * 11, 10)
    assert validate_output("json", b'{"a": 1}', 8) == b'{"a":1}'
    with pytest.raises(InvalidOutput, match="too large"):
        validate_output("json", b"1e5", 5)  # re-encoded as 100000.0
    with pytest.raises(InvalidOutput):
        validate_output("json", b"1E400", 64)  # overflows to infinity


def test_real_safetensors_pass():
    data = save({"w": np.ones((3, 4), np.float32), "b": np.zeros(4, np.float64), "n": np.arange(3, dtype=np.int64)},
                metadata={"kind": "logistic_regression"})
    check_safetensors(data)
    assert validate_output("model", data, len(data)) == data
    check_safetensors(save({}))


@pytest.mark.parametrize(("header", "data"), [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 8),  # shape/offsets mismatch
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 12),  # trailing bytes
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),  # gap
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),  # overlap
    ({"w": {"dtype": "PY_OBJECT", "shape": [1], "data_offsets": [0, 8]}}, b"\x00" * 8),  # unknown dtype
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\x00" * 4),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}}, b"\x00" * 4),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}, b"\x00" * 4),  # beyond the buffer
    ({"__metadata__": {"a": 1}}, b""),  # metadata values must be strings
    ([1, 2], b""),
])
def test_malformed_safetensors_are_refused(header, data):
    with pytest.raises(InvalidOutput):
        check_safetensors(tensors_file(header, data))


@pytest.mark.parametrize("raw", [b"", b"\x05", struct.pack("<Q", 10**12) + b"{}", struct.pack("<Q", 2) + b"{}x",
                                 pickle.dumps({"w": [1.0, 2.0]}), b"PK\x03\x04" + b"\x00" * 64,
                                 struct.pack("<Q", 4) + b"\xff\xfe{}"])
def test_non_safetensors_bytes_are_refused(raw):
    with pytest.raises(InvalidOutput):
        check_safetensors(raw)
