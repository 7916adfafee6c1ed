"""X25519 + HKDF derivations and the AES-GCM envelopes: symmetric keys, tamper and rebinding detection."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.secagg.channel import CIPHERTEXT_BYTES, open_shares, seal_shares
from mpc.secagg.errors import CiphertextInvalid
from mpc.secagg.keys import KeyPair, agree, channel_key, encode_fields, mask_seed

CONTEXT = {"round_id": "sa-1", "sender": "a", "recipient": "b", "stage": "share_keys"}


def pair_key():
    a, b = KeyPair.generate(), KeyPair.generate()
    return a, b, channel_key(agree(a.private, b.public), "sa-1", "a", "b")


def test_both_ends_derive_the_same_keys_bound_to_round_and_purpose():
    a, b, key = pair_key()
    assert channel_key(agree(b.private, a.public), "sa-1", "b", "a") == key
    assert channel_key(agree(a.private, b.public), "sa-2", "a", "b") != key
    shared = agree(a.private, b.public)
    assert mask_seed(shared, "sa-1", "a", "b") == mask_seed(shared, "sa-1", "b", "a") != key


def test_low_order_peer_key_is_refused():
    with pytest.raises(ValueError):
        agree(KeyPair.generate().private, bytes(32))


def test_field_encoding_is_unambiguous():
    assert encode_fields("ab", "c") != encode_fields("a", "bc")


def test_round_trip():
    _, _, key = pair_key()
    sealed = seal_shares(key, 11, 22, **CONTEXT)
    assert len(sealed) == CIPHERTEXT_BYTES
    assert open_shares(key, sealed, **CONTEXT) == (11, 22)
    assert seal_shares(key, 11, 22, **CONTEXT) != sealed  # fresh nonce


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, CIPHERTEXT_BYTES - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_detected(position, bit):
    _, _, key = pair_key()
    sealed = bytearray(seal_shares(key, 11, 22, **CONTEXT))
    sealed[position] ^= 1 << bit
    with pytest.raises(CiphertextInvalid) as err:
        open_shares(key, bytes(sealed), **CONTEXT)
    assert err.value.code == "CIPHERTEXT_INVALID"


@pytest.mark.parametrize(
    "change",
    [{"round_id": "sa-2"}, {"sender": "c"}, {"recipient": "c"}, {"stage": "unmask"}],
)
def test_rebinding_to_another_context_is_detected(change):
    _, _, key = pair_key()
    sealed = seal_shares(key, 11, 22, **CONTEXT)
    with pytest.raises(CiphertextInvalid):
        open_shares(key, sealed, **{**CONTEXT, **change})


def test_truncated_or_wrong_key_is_detected():
    _, _, key = pair_key()
    _, _, other = pair_key()
    sealed = seal_shares(key, 11, 22, **CONTEXT)
    for bad_key, bad in ((key, sealed[:20]), (key, b""), (other, sealed)):
        with pytest.raises(CiphertextInvalid):
            open_shares(bad_key, bad, **CONTEXT)
