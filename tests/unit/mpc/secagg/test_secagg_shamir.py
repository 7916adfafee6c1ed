"""Shamir over GF(2^256 + 297): every t-subset rebuilds the secret, t − 1 shares do not."""

from itertools import combinations

import pytest
from Crypto.Util.number import isPrime
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.secagg.shamir import (
    PRIME,
    SHARE_BYTES,
    Share,
    decode_value,
    encode_value,
    reconstruct,
    reconstruct_bytes,
    split,
    split_bytes,
)


def test_field_is_prime_and_holds_every_32_byte_secret():
    assert isPrime(PRIME)
    assert all(not isPrime(2**256 + k) for k in range(1, 297, 2))  # smallest prime above 2^256
    assert 2**256 - 1 < PRIME < 2 ** (8 * SHARE_BYTES)


@settings(max_examples=40, deadline=None)
@given(
    secret=st.integers(min_value=0, max_value=PRIME - 1),
    n=st.integers(min_value=1, max_value=7),
    data=st.data(),
)
def test_every_threshold_subset_rebuilds_and_fewer_do_not(secret, n, data):
    t = data.draw(st.integers(min_value=1, max_value=n))
    points = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    shares = split(secret, t, points)
    assert [s.x for s in shares] == points
    for subset in combinations(shares, t):
        assert reconstruct(list(subset)) == secret
    if t > 1:
        for subset in combinations(shares, t - 1):
            assert reconstruct(list(subset)) != secret


@settings(max_examples=25, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32))
def test_bytes_round_trip_at_participant_points(secret):
    shares = split_bytes(secret, 4, [1, 2, 3, 4, 5, 6])
    assert reconstruct_bytes(shares[2:]) == secret
    assert reconstruct_bytes(shares[:4]) == secret


def test_share_values_encode_in_33_bytes():
    for y in (0, 1, PRIME - 1):
        assert decode_value(encode_value(y)) == y
        assert len(encode_value(y)) == SHARE_BYTES
    with pytest.raises(ValueError):
        decode_value(PRIME.to_bytes(SHARE_BYTES, "big"))
    with pytest.raises(ValueError):
        decode_value(b"\x00" * 32)


@pytest.mark.parametrize(
    ("secret", "threshold", "points"),
    [(PRIME, 2, [1, 2]), (5, 3, [1, 2]), (5, 0, [1, 2]), (5, 2, [1, 1]), (5, 2, [0, 1])],
)
def test_split_rejects_bad_parameters(secret, threshold, points):
    with pytest.raises(ValueError):
        split(secret, threshold, points)


def test_reconstruct_rejects_bad_shares():
    with pytest.raises(ValueError):
        reconstruct([])
    with pytest.raises(ValueError):
        reconstruct([Share(1, 5), Share(1, 6)])
    with pytest.raises(ValueError):
        reconstruct([Share(1, PRIME)])
