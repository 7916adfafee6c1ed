"""Fixed point: clip, scale, round (nearest or CSPRNG-stochastic), and decode a wrapped sum within bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mpc.secagg import FixedPoint, dequantize_sum, quantize, simulate_round

floats = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)


def modular_sum(encodings, bits):
    total = np.zeros(encodings[0].shape, dtype=np.uint64)
    for e in encodings:
        total += e
    return (total % (1 << bits)).astype(np.uint32)


@settings(max_examples=60, deadline=None)
@given(
    clients=st.integers(1, 12),
    bits=st.sampled_from([16, 24, 32]),
    stochastic=st.booleans(),
    data=st.data(),
)
def test_sum_round_trip_within_the_error_bound(clients, bits, stochastic, data):
    clip = data.draw(st.sampled_from([0.5, 1.0, 3.0]))
    fp = FixedPoint(clip=clip, max_clients=12, modulus_bits=bits)
    vectors = [data.draw(arrays(np.float64, 6, elements=floats)) for _ in range(clients)]
    encodings = [fp.encode(v, stochastic=stochastic) for v in vectors]
    assert all(e.dtype == np.uint32 and int(e.max()) < 1 << bits for e in encodings)
    decoded = fp.decode_sum(modular_sum(encodings, bits))
    clipped = sum(np.clip(v, -clip, clip) for v in vectors)
    bound = fp.error_bound(clients, stochastic=stochastic)
    assert np.all(np.abs(decoded - clipped) <= bound * (1 + 1e-9))


def test_negative_sums_wrap_and_decode():
    fp = FixedPoint(clip=1.0, max_clients=4, modulus_bits=16)
    encodings = [fp.encode(np.full(3, -1.0), stochastic=False) for _ in range(4)]
    assert np.all(encodings[0] > 1 << 15)  # two's complement
    assert np.allclose(fp.decode_sum(modular_sum(encodings, 16)), -4.0, atol=fp.error_bound(4, stochastic=False))


def test_stochastic_rounding_is_unbiased():
    fp = FixedPoint(clip=1.0, max_clients=1, modulus_bits=8)  # coarse grid: 1/scale ≈ 1/126
    value = 0.3 / fp.scale + 5 / fp.scale  # 30 % of the way between two grid points
    x = np.full(20_000, value)
    q = fp.encode(x).astype(np.int64)
    assert set(np.unique(q)) == {5, 6}
    assert abs(q.mean() - 5.3) < 0.03


def test_helpers_and_validation():
    x = np.array([0.25, -0.75, 2.0])
    assert np.allclose(dequantize_sum(quantize(x, 1.0, 3, stochastic=False), 1.0, 3), [0.25, -0.75, 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        FixedPoint(clip=0.0, max_clients=2)
    with pytest.raises(ValueError):
        FixedPoint(clip=1.0, max_clients=0)
    with pytest.raises(ValueError):
        FixedPoint(clip=1.0, max_clients=1000, modulus_bits=8)
    with pytest.raises(ValueError):
        FixedPoint(clip=1.0, max_clients=2).encode([np.nan])


def test_secure_sum_of_float_vectors():
    fp = FixedPoint(clip=2.0, max_clients=6)
    floats_in = {f"c{i}": np.linspace(-3, 3, 16) * (i + 1) / 6 for i in range(6)}
    outcome = simulate_round({n: fp.encode(v) for n, v in floats_in.items()}, 4, {"masked_input": ["c5"]})
    expected = sum(np.clip(floats_in[n], -2, 2) for n in outcome.survivors)
    assert np.all(np.abs(fp.decode_sum(outcome.total) - expected) <= fp.error_bound(5))
