"""Every message survives a JSON round trip, with bytes as base64 text."""

import base64
import json

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
