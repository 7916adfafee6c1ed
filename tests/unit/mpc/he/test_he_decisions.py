"""Encrypted decisions: the masked sign of (score − the bank's encrypted cut-off) against NumPy, near the cut-off
within the documented precision, what the masked value shows besides the sign, and every refusal."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import tenseal as ts

from mpc.he import client
from mpc.he.scoring import (
    MAX_MASK_BITS,
    LinearModel,
    decide_columns,
    decide_encrypted,
    decide_rows,
    decision_precision,
    decisions_exposed,
    declared_size,
    load_scoring_context,
    plan_decisions,
    score_precision,
)

D = 20
GEN = np.random.default_rng(20260114)  # synthetic test data only, never noise
WEIGHTS = GEN.normal(size=D)
BIAS = -0.3
MODEL = LinearModel(tuple(WEIGHTS.tolist()), BIAS)


def scores(x: np.ndarray) -> np.ndarray:
    return x @ WEIGHTS + BIAS


def cutoffs_around(s: np.ndarray, nearest: float) -> np.ndarray:
    """Cut-offs on either side of each score, at log-uniform distances from ``nearest`` up to 50."""
    side = GEN.choice([-1.0, 1.0], size=s.shape)
    gap = np.exp(GEN.uniform(np.log(nearest), np.log(50.0), size=s.shape))
    return s + side * gap


def masked(bank, encoded: str) -> np.ndarray:
    return np.asarray(ts.ckks_vector_from(bank, base64.b64decode(encoded)).decrypt())


def test_column_decisions_equal_the_plaintext_sign(bank, col_public):
    """4096 random applicants against cut-offs from 7 stated standard deviations to 50 away: every decision exact."""
    precision = decision_precision("columns", MODEL, col_public)
    x = GEN.normal(size=(4096, D))
    s = scores(x)
    t = cutoffs_around(s, 7 * precision + 1e-6)
    out = decide_columns(col_public, client.encrypt_columns(bank, x), client.encrypt_cutoffs(bank, t), MODEL)
    got = client.decrypt_decisions(bank, [out], "columns")
    assert got.shape == (4096,)
    assert np.array_equal(got, s >= t)


def test_row_decisions_equal_the_plaintext_sign(bank, row_public):
    precision = decision_precision("row", MODEL, row_public)
    x = np.vstack([np.zeros(D), GEN.normal(size=(5, D)) * 2])
    s = scores(x)
    t = cutoffs_around(s, 7 * precision + 1e-6)
    t[0] = s[0] - 7 * precision - 1e-6  # just below the cut-off's side
    out = decide_rows(row_public, [client.encrypt_row(bank, row) for row in x], client.encrypt_cutoffs(bank, t),
                      MODEL)
    assert len(out) == len(x)
    assert np.array_equal(client.decrypt_decisions(bank, out, "row"), s >= t)


def test_decisions_at_the_cut_off_are_randomised_by_the_flood(bank, col_public):
    """At score = cut-off the flood in front of the mask decides: about half yes, half no — the precision is the
    flood's, as documented, and the same input twice gives fresh answers."""
    x = GEN.normal(size=(4096, D))
    s = scores(x)
    cts, cut = client.encrypt_columns(bank, x), client.encrypt_cutoffs(bank, s)
    first = client.decrypt_decisions(bank, [decide_columns(col_public, cts, cut, MODEL)], "columns")
    second = client.decrypt_decisions(bank, [decide_columns(col_public, cts, cut, MODEL)], "columns")
    assert 0.45 < first.mean() < 0.55 and 0.4 < np.mean(first == second) < 0.6


def test_the_masked_value_shows_the_sign_and_a_masked_magnitude_only(bank, col_public):
    """|value| = r·|score − t| with r log-uniform on [1, 2^20): the ratio spans the whole mask range."""
    x = GEN.normal(size=(4096, D))
    s = scores(x)
    t = s - 1.0  # every applicant one logit above its cut-off
    values = masked(bank, decide_columns(col_public, client.encrypt_columns(bank, x), client.encrypt_cutoffs(bank, t),
                                         MODEL))
    ratio = np.log2(values / (s - t))
    assert plan_decisions(col_public).mask_bits == MAX_MASK_BITS
    assert ratio.min() > -0.01 and ratio.max() < MAX_MASK_BITS + 0.01
    # log-uniform: each of the 20 one-bit bands holds about 1/20 of the applicants
    counts = np.histogram(ratio, bins=MAX_MASK_BITS, range=(0, MAX_MASK_BITS))[0]
    assert counts.min() > 4096 / MAX_MASK_BITS / 2


def test_row_slots_spread_the_same_whatever_the_mask(bank, row_public):
    """Every slot of a row result carries r·(score − t) plus the r-independent slot flood: the spread over the
    slots is the flood's, so it cannot be used to estimate r (and with it |score − t|)."""
    x = GEN.normal(size=(4, D))
    s = scores(x)
    t = s - np.array([1e-3, 1.0, 10.0, 30.0])
    out = decide_rows(row_public, [client.encrypt_row(bank, row) for row in x], client.encrypt_cutoffs(bank, t),
                      MODEL)
    slot_std = score_precision("row", LinearModel((*MODEL.weights, -1.0), 0.0), row_public).slot_std
    for encoded in out:
        values = masked(bank, encoded)
        assert len(values) == 4096 and values.mean() > 0
        assert abs(values.std() / slot_std - 1) < 0.1


def test_column_slots_beyond_the_batch_are_cancelled(he, bank, col_public):
    """A bank that packs more applicants than it declares gets nothing for them: the masks are zero-padded."""
    x = GEN.normal(size=(4096, D)) * 5
    declared = 8
    cols = [he.relabel(ct, declared) for ct in client.encrypt_columns(bank, x)]
    t = scores(x) - 100.0
    out = decide_columns(col_public, cols, he.relabel(client.encrypt_cutoffs(bank, t), declared), MODEL)
    values = masked(bank, he.relabel(out, 4096))
    assert (values[:declared] > 0).all()
    rest = values[declared:]
    assert np.abs(rest).max() < 7 * decision_precision("columns", MODEL, col_public)
    assert abs(np.mean(rest > 0) - 0.5) < 0.05


def test_row_decisions_use_only_their_own_cut_off(bank, row_public):
    """The cut-off of applicant k sits in slot k; the other slots (and TenSEAL's replicas) are cancelled."""
    x = np.zeros((3, D))
    t = np.array([BIAS - 1.0, BIAS + 1.0, BIAS - 1.0])
    out = decide_rows(row_public, [client.encrypt_row(bank, row) for row in x], client.encrypt_cutoffs(bank, t),
                      MODEL)
    assert client.decrypt_decisions(bank, out, "row").tolist() == [True, False, True]


def test_decisions_exposed_and_declared_size(bank):
    assert decisions_exposed("row", 3, 0) == 6
    assert decisions_exposed("columns", 20, 7) == 14
    assert declared_size(client.encrypt_cutoffs(bank, np.zeros(7))) == 7


def test_precision_is_the_logit_flood_in_front_of_the_mask(col_public, row_public):
    column = decision_precision("columns", MODEL, col_public)
    row = decision_precision("row", MODEL, row_public)
    norm = float(np.hypot(np.linalg.norm(WEIGHTS), 1.0))
    assert column < 1e-4 * norm and row < 6e-6 * norm
    assert row < column / 10


# ---------------------------------------------------------------- refusals


def test_a_short_modulus_is_refused_for_decisions_but_scores_logits():
    """60/40/60 leaves 20 bits above Δ²: enough for a logit, not for a 2^8 mask and a 2^10 range."""
    small = client.make_ckks_context(coeff_mod_bit_sizes=(60, 40, 60))
    public = load_scoring_context(client.public_context_b64(small, galois_keys=False), "columns")
    from mpc.errors import MpcError

    with pytest.raises(MpcError) as info:
        plan_decisions(public)
    assert info.value.code == "CIPHERTEXT_INVALID" and "mask" in info.value.message
    wider = client.make_ckks_context(coeff_mod_bit_sizes=(60, 55, 60))
    plan = plan_decisions(load_scoring_context(client.public_context_b64(wider, galois_keys=False), "columns"))
    assert plan.mask_bits == MAX_MASK_BITS and plan.range_bits >= 10


def test_cut_off_shape_refusals(he, bank, col_public, row_public):
    x = GEN.normal(size=(5, D))
    cols = client.encrypt_columns(bank, x)
    he.refused("CIPHERTEXT_INVALID", decide_columns, col_public, cols, client.encrypt_cutoffs(bank, np.zeros(4)),
               MODEL)
    he.refused("CIPHERTEXT_INVALID", decide_columns, col_public, cols, "@@@", MODEL)
    he.refused("CIPHERTEXT_INVALID", decide_columns, col_public, cols,
               client.encrypt_thresholds(he.bfv_bank(), np.arange(5)), MODEL)
    he.refused("INVALID_REQUEST", decide_columns, col_public, cols[:-1], client.encrypt_cutoffs(bank, np.zeros(5)),
               MODEL)
    rows = [client.encrypt_row(bank, row) for row in x[:2]]
    he.refused("CIPHERTEXT_INVALID", decide_rows, row_public, rows, client.encrypt_cutoffs(bank, np.zeros(3)), MODEL)
    he.refused("CIPHERTEXT_INVALID", decide_encrypted, he.ckks_public(galois=False), rows,
               client.encrypt_cutoffs(bank, np.zeros(2)), "row", MODEL)
    he.refused("INVALID_REQUEST", decide_encrypted, he.ckks_public(galois=False), rows,
               client.encrypt_cutoffs(bank, np.zeros(2)), "diagonal", MODEL)
