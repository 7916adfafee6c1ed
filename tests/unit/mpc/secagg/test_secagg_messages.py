"""Every message survives a JSON round trip, with bytes as base64 text, and a binary frame round trip, with bytes
raw; a frame that does not parse is a `ProtocolError`, never another exception."""

import base64
import json
import struct

import numpy as np
import pytest

from mpc.secagg import (
    AdvertiseKeys,
    ForwardedShares,
    KeyRoster,
    MaskedInput,
    ProtocolError,
    PublicKeys,
    RoundConfig,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
    decode_frame,
    encode_frame,
    new_round,
    parse_client_message,
    parse_server_message,
)

KEY = PublicKeys(c_public=b"\x01" * 32, s_public=b"\x02" * 32)
CLIENT = [
    AdvertiseKeys(round_id="r", sender="a", c_public=b"\x01" * 32, s_public=b"\x02" * 32),
    ShareKeys(round_id="r", sender="a", ciphertexts={"b": b"\x00\xff" * 50}),
    MaskedInput(round_id="r", sender="a", vector=np.arange(4, dtype="<u4").tobytes()),
    UnmaskShares(round_id="r", sender="a", b_shares={"a": b"\x03" * 33}, s_shares={"c": b"\x04" * 33}),
]
SERVER = [
    KeyRoster(round_id="r", keys={"a": KEY}),
    ForwardedShares(round_id="r", recipient="a", ciphertexts={"b": b"\x05" * 10}),
    UnmaskRequest(round_id="r", survivors=("a", "b")),
]


@pytest.mark.parametrize("message", CLIENT, ids=lambda m: m.kind)
def test_client_messages_round_trip(message):
    data = json.loads(json.dumps(message.to_json()))
    assert parse_client_message(data) == message


@pytest.mark.parametrize("message", SERVER, ids=lambda m: m.kind)
def test_server_messages_round_trip(message):
    data = json.loads(json.dumps(message.to_json()))
    assert parse_server_message(data) == message


def test_bytes_are_standard_base64():
    data = CLIENT[0].to_json()
    assert base64.b64decode(data["c_public"]) == b"\x01" * 32
    assert np.array_equal(CLIENT[2].array(), np.arange(4, dtype=np.uint32))


def test_kinds_do_not_cross_directions():
    with pytest.raises(ProtocolError):
        parse_client_message(SERVER[0].to_json())
    with pytest.raises(ProtocolError):
        parse_server_message(CLIENT[0].to_json())


def test_round_config_is_public_json():
    config = new_round(["a", "b", "c"], 2, 10)
    data = json.loads(json.dumps(config.to_json()))
    assert RoundConfig.model_validate(data) == config
    assert config.point == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(ValueError):
        RoundConfig.model_validate({**data, "participants": ["a", "a", "b"]})
    with pytest.raises(ValueError):
        RoundConfig.model_validate({**data, "modulus_bits": 33})


@pytest.mark.parametrize("message", CLIENT, ids=lambda m: m.kind)
def test_client_messages_round_trip_through_the_binary_frame(message) -> None:
    frame = encode_frame(message)
    assert frame.startswith(b"VBSA\x01") and b"base64" not in frame
    assert parse_client_message(decode_frame(frame)) == message


def test_a_masked_vector_travels_as_packed_words() -> None:
    words = np.arange(1000, dtype="<u4")
    frame = encode_frame(MaskedInput(round_id="r", sender="a", vector=words.tobytes()))
    assert frame.endswith(struct.pack(">I", 4000) + words.tobytes())
    assert len(frame) < 4000 + 128  # the words and a small header, no base64 or JSON list


def _frame(header: dict, *blobs: bytes) -> bytes:
    head = json.dumps(header).encode()
    return b"VBSA\x01" + struct.pack(">I", len(head)) + head + b"".join(struct.pack(">I", len(b)) + b for b in blobs)


GOOD = {"kind": "masked_input", "round_id": "r", "sender": "a", "blobs": ["vector"]}


@pytest.mark.parametrize("body", [
    b"",
    b"VBHE\x01\x00\x00\x00\x02{}",  # another frame's magic
    b"VBSA\x02\x00\x00\x00\x02{}",  # another version
    b"VBSA\x01\xff\xff\xff\xff{}",  # a header beyond the body
    _frame(GOOD, b"\x00" * 8) + b"\x00",  # trailing bytes
    _frame(GOOD),  # a blob the body does not carry
    _frame(GOOD)[:-1] + b"\x00\x00\x00\x09" + b"\x00" * 4,  # a blob longer than the body
    _frame({**GOOD, "blobs": ["vector", "vector"]}, b"\x00" * 4, b"\x00" * 4),  # a repeated place
    _frame({**GOOD, "vector": "AAAAAA==", "blobs": ["vector"]}, b"\x00" * 4),  # a blob's field in the header
    _frame({**GOOD, "blobs": [["a", "b", "c"]]}, b"\x00" * 4),  # not a field or [field, key]
    _frame({**GOOD, "blobs": "vector"}, b"\x00" * 4),  # blobs is not a list
    b"VBSA\x01\x00\x00\x00\x02[]",  # a header that is not an object
    b"VBSA\x01\x00\x00\x00\x13{\"blobs\":[],\"a\":NaN}",  # not JSON
    b"VBSA\x01\x00\x00\x00\x15{\"blobs\":[],\"blobs\":[]}",  # a repeated key
], ids=lambda b: f"{len(b)}B")
def test_a_frame_that_does_not_parse_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed frame"):
        decode_frame(body)


def test_a_frame_is_validated_like_json() -> None:
    with pytest.raises(ProtocolError, match="malformed message"):  # a 33-byte key
        parse_client_message(decode_frame(_frame(
            {"kind": "advertise_keys", "round_id": "r", "sender": "a", "blobs": ["c_public", "s_public"]},
            b"\x01" * 33, b"\x02" * 32)))
