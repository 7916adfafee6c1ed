"""BFV masked sign: exact signs at every edge, the mask's distribution, the flood, and every refusal."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
import tenseal as ts

from mpc.he import client, flooding
from mpc.he.masked_sign import (
    MaskPlan,
    SignBounds,
    evaluate_masked_sign,
    evaluate_masked_sign_with,
    load_sign_context,
    plan_mask,
)

INCOME = SignBounds(value_min=0, value_max=200_000, threshold_min=0, threshold_max=200_000)
GEN = np.random.default_rng(7)  # synthetic subjects only, never masks or noise


@pytest.fixture(scope="module")
def bank(he):
    return he.bfv_bank()


@pytest.fixture(scope="module")
def checked(he):
    return load_sign_context(he.bfv_public(), INCOME)


def run(bank, checked, x, t, bounds=INCOME):
    public, plan = checked
    encrypted = client.encrypt_thresholds(bank, np.asarray(t, dtype=np.int64))
    return client.decrypt_masked(bank, evaluate_masked_sign_with(public, plan, encrypted, list(x), bounds))


def test_edges_of_the_comparison(bank, checked):
    lo, hi = INCOME.value_min, INCOME.value_max
    pairs = [(5, 5), (5, 4), (5, 6), (0, 0), (0, 1), (1, 0), (hi, lo), (lo, hi), (hi, hi), (lo, lo),
             (hi, hi - 1), (hi - 1, hi), (100_000, 99_999), (99_999, 100_000)]
    x, t = map(np.array, zip(*pairs, strict=True))
    values = run(bank, checked, x, t)
    assert np.array_equal(values > 0, x >= t)
    assert np.all(values != 0)
    half = checked[1].plain_modulus // 2
    assert np.all(np.abs(values) < half)  # never wraps: the bank's centred decoding is exact


def test_many_slots(bank, checked):
    n = 8192
    x = GEN.integers(0, 200_001, size=n)
    t = np.where(GEN.random(n) < 0.3, x + GEN.integers(-1, 2, size=n), GEN.integers(0, 200_001, size=n))
    t = np.clip(t, 0, 200_000)
    values = run(bank, checked, x, t)
    assert np.array_equal(values > 0, x >= t)


def test_values_follow_the_mask_algebra(bank, checked):
    """r·(x − t) + r' with 2 ≤ r ≤ r_max, 1 ≤ r' < r: |value| lies between r_min·gap and r_max·(gap + 1)."""
    plan = checked[1]
    x = np.full(4000, 150_000)
    t = np.full(4000, 50_000)
    values = run(bank, checked, x, t)
    gap = 100_000
    assert np.all(values >= 2 * gap + 1) and np.all(values <= plan.r_max * (gap + 1))
    # log2(r) is uniform on [1, log2(r_max + 1)): its mean and spread pin the log-uniform draw
    log_r = np.log2(values // gap)
    top = math.log2(plan.r_max + 1)
    assert abs(log_r.mean() - (1 + top) / 2) < 0.3
    assert abs(log_r.std() - (top - 1) / math.sqrt(12)) < 0.3


def test_fresh_masks_each_time(bank, checked):
    x, t = np.array([10, 20, 30]), np.array([1, 50, 30])
    first, second = run(bank, checked, x, t), run(bank, checked, x, t)
    assert not np.array_equal(first, second)
    assert np.array_equal(first > 0, second > 0)


def test_flood_uses_the_whole_safe_budget(bank, checked):
    public, plan = checked
    encrypted = client.encrypt_thresholds(bank, np.array([1, 2, 3]))
    out = evaluate_masked_sign_with(public, plan, encrypted, [3, 2, 1], INCOME)
    vector = ts.bfv_vector_from(bank, base64.b64decode(out))
    budget = bank.data.decryptor().invariant_noise_budget(vector.data.ciphertext()[0])
    assert budget <= 3  # the flood fills q/(8p): about two bits of budget remain
    fresh = ts.bfv_vector_from(bank, base64.b64decode(encrypted)).data.ciphertext()[0]
    assert bank.data.decryptor().invariant_noise_budget(fresh) > 60


def test_flood_margin_of_the_default_parameters(checked):
    info = checked[0].info
    shortfall = flooding.bfv_flood_shortfall_bits(info.data_primes, info.plain_modulus, 8192)
    assert shortfall < -10  # 2^-40 statistical flooding with more than 10 bits to spare


def test_entry_point(he, bank):
    x, t = np.array([8000, 7999, 8001]), np.array([8000, 8000, 8000])
    out = evaluate_masked_sign(he.bfv_public(), client.encrypt_thresholds(bank, t), x, INCOME)
    assert client.read_signs(bank, out).tolist() == [True, False, True]


def test_plan_mask():
    plan = plan_mask(2**45 + 1, SignBounds(0, 2**24, 0, 2**24))
    assert plan.max_gap == 2**24 and plan.r_max == (2**44) // (2**24 + 1)
    assert plan.r_max * (plan.max_gap + 1) <= (2**45) // 2
    assert isinstance(plan, MaskPlan) and 19 < plan.mask_bits < 20


@pytest.mark.parametrize("bounds", [(0, 1.5, 0, 2), (3, 2, 0, 1), (0, 1, 5, 4), (True, 2, 0, 1)])
def test_sign_bounds_validation(bounds):
    with pytest.raises(ValueError):
        SignBounds(*bounds)


def test_gap_for_disjoint_ranges():
    assert SignBounds(10, 20, 30, 40).max_gap == 30
    assert SignBounds(-5, 5, 0, 0).max_gap == 5


# ---------------------------------------------------------------- refusals


def test_plain_modulus_too_small_for_the_bounds(he):
    small = client.make_bfv_context(plain_modulus_bits=30)
    public = client.public_context_b64(small, galois_keys=False)
    info = he.refused("CIPHERTEXT_INVALID", load_sign_context, public, SignBounds(0, 2**24, 0, 2**24))
    assert "too small" in info.message
    assert load_sign_context(public, SignBounds(0, 1000, 0, 1000))[1].r_max > 2**16


def test_plain_modulus_too_large_for_the_flood(he):
    wide = client.make_bfv_context(plain_modulus_bits=58)
    info = he.refused("CIPHERTEXT_INVALID", load_sign_context, client.public_context_b64(wide, galois_keys=False),
                      INCOME)
    assert "noise budget" in info.message


def test_ckks_context_where_bfv_is_expected(he):
    he.refused("CIPHERTEXT_INVALID", evaluate_masked_sign, he.ckks_public(galois=False), "AAAA", [1], INCOME)


def test_secret_context_is_refused(he, bank):
    secret = base64.b64encode(bank.serialize(save_secret_key=True)).decode()
    he.refused("CIPHERTEXT_INVALID", load_sign_context, secret, INCOME)


def test_values_and_shape_refusals(he, bank, checked):
    public, plan = checked
    encrypted = client.encrypt_thresholds(bank, np.array([1, 2, 3]))
    he.refused("INVALID_REQUEST", evaluate_masked_sign_with, public, plan, encrypted, [1, 2, 300_000], INCOME)
    he.refused("INVALID_REQUEST", evaluate_masked_sign_with, public, plan, encrypted, [1, 2], INCOME)
    he.refused("INVALID_REQUEST", evaluate_masked_sign_with, public, plan, encrypted, [1, 2, 2.5], INCOME)
    he.refused("INVALID_REQUEST", evaluate_masked_sign, he.bfv_public(), encrypted, [], INCOME)


def test_ciphertext_refusals(he, bank, checked):
    public, plan = checked
    good = client.encrypt_thresholds(bank, np.array([1, 2, 3]))
    raw = base64.b64decode(good)
    other = client.make_bfv_context(plain_modulus_bits=40)
    foreign = client.encrypt_thresholds(other, np.array([1, 2, 3]))
    ckks = client.encrypt_row(he.ckks_bank(), [1.0, 2.0, 3.0])
    for bad in ("%%%", base64.b64encode(raw[: len(raw) // 3]).decode(), foreign, ckks):
        he.refused("CIPHERTEXT_INVALID", evaluate_masked_sign_with, public, plan, bad, [1, 2, 3], INCOME)


def test_large_values_with_a_narrow_gap(bank, he):
    """|x| far above the gap: r is large, r·x overflows int64, the exact big-integer path takes over."""
    base = 2**40
    bounds = SignBounds(base, base + 10, base, base + 10)
    public, plan = load_sign_context(he.bfv_public(), bounds)
    assert plan.r_max > 2**30
    x = np.array([base, base + 10, base + 3, base + 4])
    t = np.array([base, base, base + 4, base + 4])
    out = evaluate_masked_sign_with(public, plan, client.encrypt_thresholds(bank, t), x.tolist(), bounds)
    assert client.read_signs(bank, out).tolist() == [True, True, False, True]


def test_plan_must_match_the_context(he, bank, checked):
    public, _ = checked
    encrypted = client.encrypt_thresholds(bank, np.array([1]))
    foreign_plan = plan_mask(client.batching_prime(40, 8192), INCOME)
    he.refused("INVALID_REQUEST", evaluate_masked_sign_with, public, foreign_plan, encrypted, [1], INCOME)
    narrow = load_sign_context(he.bfv_public(), SignBounds(0, 10, 0, 10))[1]
    he.refused("INVALID_REQUEST", evaluate_masked_sign_with, public, narrow, encrypted, [1], INCOME)


def test_mutated_ciphertexts_never_crash(bank, checked):
    """Flipped bytes anywhere in a valid ciphertext give a refusal (or, in the data area, a result)."""
    from mpc.errors import MpcError

    public, plan = checked
    raw = bytearray(base64.b64decode(client.encrypt_thresholds(bank, np.array([1, 2, 3]))))
    positions = np.linspace(0, len(raw) - 1, 25).astype(int)
    for pos in positions:
        mutated = bytearray(raw)
        mutated[pos] ^= 0xA5
        try:
            evaluate_masked_sign_with(public, plan, base64.b64encode(bytes(mutated)).decode(), [1, 2, 3], INCOME)
        except MpcError as err:
            assert err.code in ("CIPHERTEXT_INVALID", "INVALID_REQUEST")
