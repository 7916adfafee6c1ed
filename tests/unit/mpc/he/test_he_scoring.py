"""Encrypted linear scoring: correctness against NumPy, flooding, extraction bound, and every refusal."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
import tenseal as ts

from mpc.he import client, flooding
from mpc.he.scoring import (
    LinearModel,
    extraction_query_bound,
    score_columns,
    score_encrypted,
    score_precision,
    score_rows,
    scores_exposed,
)

D = 6
GEN = np.random.default_rng(20240611)  # synthetic test data only, never noise
WEIGHTS = GEN.normal(size=D)
BIAS = -0.4
MODEL = LinearModel(tuple(WEIGHTS.tolist()), BIAS)


def logits(x: np.ndarray) -> np.ndarray:
    return x @ WEIGHTS + BIAS


def tolerance(public, layout: str) -> float:
    """Six flood standard deviations plus CKKS's own approximation error."""
    return 6 * score_precision(layout, MODEL, public).logit_std + 1e-4


def test_row_layout_matches_numpy(bank, row_public):
    x = np.vstack([np.zeros(D), np.eye(D)[2], GEN.normal(size=(2, D)) * 3])
    out = score_rows(row_public, [client.encrypt_row(bank, row) for row in x], MODEL)
    assert len(out) == len(x)
    got = client.decrypt_scores(bank, out, "row")
    assert np.max(np.abs(got - logits(x))) < tolerance(row_public, "row")


def test_column_layout_matches_numpy(bank, col_public):
    x = GEN.normal(size=(4096, D))
    got = client.decrypt_scores(bank, [score_columns(col_public, client.encrypt_columns(bank, x), MODEL)], "columns")
    assert got.shape == (4096,)
    assert np.max(np.abs(got - logits(x))) < tolerance(col_public, "columns")


def test_column_layout_small_batch_through_the_entry_point(he, bank):
    x = GEN.normal(size=(7, D))
    out = score_encrypted(he.ckks_public(galois=False), client.encrypt_columns(bank, x), "columns", MODEL)
    assert len(out) == 1
    got = client.decrypt_scores(bank, out, "columns")
    assert np.allclose(got, logits(x), atol=1e-2)


def test_zero_weight_is_handled(bank, col_public):
    model = LinearModel((0.0, 1.5), 0.0)
    x = GEN.normal(size=(10, 2))
    out = score_columns(col_public, client.encrypt_columns(bank, x), model)
    assert np.allclose(client.decrypt_scores(bank, [out], "columns"), 1.5 * x[:, 1], atol=1e-2)


def test_row_junk_outside_the_features_is_cancelled(he, bank, row_public):
    """A bank may fill slots ≥ d with anything; the zero-padded weights cancel it, no partial sum leaks."""
    x = GEN.normal(size=D)
    junk = np.concatenate([x, GEN.normal(size=4096 - D) * 100])
    forged = he.relabel(base64.b64encode(ts.ckks_vector(bank, junk.tolist()).serialize()).decode(), D)
    out = score_rows(row_public, [forged], MODEL)
    slots = ts.ckks_vector_from(bank, base64.b64decode(out[0])).decrypt()
    assert len(slots) == 4096  # every slot carries the same logit
    assert abs(np.mean(slots) - logits(x)) < tolerance(row_public, "row")
    assert abs(np.std(slots) / score_precision("row", MODEL, row_public).slot_std - 1) < 0.1


def test_results_are_flooded_with_the_stated_noise(bank, col_public):
    x = np.zeros((4096, D))
    encrypted = client.encrypt_columns(bank, x)
    first = client.decrypt_scores(bank, [score_columns(col_public, encrypted, MODEL)], "columns")
    second = client.decrypt_scores(bank, [score_columns(col_public, encrypted, MODEL)], "columns")
    stated = score_precision("columns", MODEL, col_public).slot_std
    assert abs(np.std(first - BIAS) / stated - 1) < 0.1
    assert not np.allclose(first, second, atol=stated / 10)  # fresh noise each time


def test_flood_covers_the_imaginary_half(he, bank, col_public):
    """The flood is complex: the imaginary parts of the slots are as noisy as the real parts."""
    x = np.zeros((4096, D))
    out = score_columns(col_public, client.encrypt_columns(bank, x), MODEL)
    slots, _ = he.complex_slots(bank, ts.ckks_vector_from(bank, base64.b64decode(out)))
    assert abs(np.std(slots.imag) / np.std(slots.real - BIAS) - 1) < 0.1


@pytest.mark.parametrize("layout", ["row", "columns"])
def test_deviation_bound_holds(he, bank, row_public, col_public, layout):
    """What the flood must hide stays below `ckks_deviation_bound` (measured on an unflooded evaluation).

    The reference is the exact function on the true inputs, evaluated with the weights as SEAL encodes
    them (in the row layout: zero-padded, with rounding residues < 2^-35 in the other slots, which the
    bank's replicated inputs pick up; they are part of the model as evaluated, not of the error).
    """
    public = row_public if layout == "row" else col_public
    x = np.random.default_rng(5).normal(size=(4096, D))  # synthetic inputs, fixed for a stable ratio
    if layout == "row":
        fresh = ts.ckks_vector(public.tenseal, x[0].tolist())
        product = base64.b64encode(fresh.mul(list(MODEL.weights)).serialize()).decode()
        result = ts.ckks_vector_from(public.tenseal, base64.b64decode(he.relabel(product, 4096))).sum()
        replicated = np.resize(x[0], 4096)  # TenSEAL repeats a short vector over all slots
        encoded_weights = he.encoded_slots(bank, WEIGHTS, 2.0**40)
        exact = complex(np.sum(replicated * encoded_weights))
    else:
        vectors = [ts.ckks_vector(public.tenseal, x[:, j].tolist()) for j in range(D)]
        noisy = np.stack([he.complex_slots(bank, v)[0] for v in vectors], axis=1)
        result = vectors[0] * WEIGHTS[0]
        for vector, weight in zip(vectors[1:], WEIGHTS[1:], strict=True):
            result = result + vector * weight
        exact = x @ WEIGHTS
    slots, scale = he.complex_slots(bank, result)
    assert scale == 2.0**80  # never rescaled
    bound = flooding.ckks_deviation_bound(layout, float(np.linalg.norm(WEIGHTS)), 8192, 3, 2.0**40)
    measured = he.coefficient_norm(slots - exact, scale, 8192)
    assert measured < bound / 1.5  # the heuristic holds with room
    if layout == "columns":
        assert measured > bound / 8  # spread over N coefficients, the estimate is tight
        # exact on the bank's own decrypted inputs, up to the 2^-40 weight rounding
        assert he.coefficient_norm(slots - noisy @ WEIGHTS, scale, 8192) < bound / 2**10


def test_extraction_with_d_plus_one_queries(bank, row_public):
    """A linear model falls to d + 1 chosen queries: x = 0 gives b, x = e_j gives w_j + b."""
    assert extraction_query_bound(D) == D + 1
    queries = np.vstack([np.zeros(D), np.eye(D)])
    answers = client.decrypt_scores(bank, score_rows(row_public, [client.encrypt_row(bank, q) for q in queries],
                                                     MODEL), "row")
    bias = answers[0]
    weights = answers[1:] - bias
    tol = 2 * tolerance(row_public, "row")
    assert abs(bias - BIAS) < tol and np.max(np.abs(weights - WEIGHTS)) < tol


def test_scores_exposed_counts_every_slot():
    assert scores_exposed("row", 3, 8192) == 6
    assert scores_exposed("columns", 6, 8192) == 8192


def test_precision_is_documented_scale(col_public, row_public):
    col = score_precision("columns", MODEL, col_public)
    row = score_precision("row", MODEL, row_public)
    norm = float(np.linalg.norm(WEIGHTS))
    assert col.slot_std == col.logit_std < 1e-4 * norm
    assert row.logit_std < 4e-6 * norm and math.isclose(row.logit_std * 64, row.slot_std)


@pytest.mark.parametrize("bad", [(), (float("nan"),), (1.0, float("inf")), (2.0**21,)])
def test_linear_model_validation(bad):
    with pytest.raises(ValueError):
        LinearModel(bad, 0.0)


# ---------------------------------------------------------------- refusals


def test_wrong_row_length(he, bank, row_public):
    info = he.refused("CIPHERTEXT_INVALID", score_rows, row_public, [client.encrypt_row(bank, np.ones(D + 1))], MODEL)
    assert "features" in info.message


def test_wrong_column_count_and_batch(he, bank, col_public):
    x = GEN.normal(size=(5, D))
    cols = client.encrypt_columns(bank, x)
    he.refused("INVALID_REQUEST", score_columns, col_public, cols[:-1], MODEL)
    mixed = [*cols[:-1], client.encrypt_columns(bank, x[:3])[-1]]
    he.refused("CIPHERTEXT_INVALID", score_columns, col_public, mixed, MODEL)


def test_ciphertext_from_another_parameter_set(he, bank, col_public, row_public):
    other = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    other.global_scale = 2**40
    foreign = client.encrypt_row(other, np.ones(D))
    he.refused("CIPHERTEXT_INVALID", score_rows, row_public, [foreign], MODEL)
    bigger = ts.context(ts.SCHEME_TYPE.CKKS, 16384, coeff_mod_bit_sizes=[60, 40, 40, 60])
    bigger.global_scale = 2**40
    he.refused("CIPHERTEXT_INVALID", score_columns, col_public, client.encrypt_columns(bigger, np.ones((3, D))),
               MODEL)


def test_bfv_ciphertext_and_bfv_context_are_refused(he, bank, col_public):
    bfv_ct = client.encrypt_thresholds(he.bfv_bank(), np.arange(D))
    he.refused("CIPHERTEXT_INVALID", score_columns, col_public, [bfv_ct] * D, MODEL)
    he.refused("CIPHERTEXT_INVALID", score_encrypted, he.bfv_public(), [client.encrypt_row(bank, np.ones(D))],
               "row", MODEL)


def test_lower_level_or_other_scale_is_refused(he, bank, col_public):
    lower = base64.b64encode((ts.ckks_vector(bank, [1.0] * 5) * 1.0).serialize()).decode()
    info = he.refused("CIPHERTEXT_INVALID", score_columns, col_public, [lower] * D, MODEL)
    assert "first level" in info.message or "fresh" in info.message
    scaled = base64.b64encode(ts.ckks_vector(bank, [1.0] * 5, scale=2.0**30).serialize()).decode()
    he.refused("CIPHERTEXT_INVALID", score_columns, col_public, [scaled] * D, MODEL)


def test_chunked_vector_is_refused(he, bank, col_public):
    too_long = base64.b64encode(ts.ckks_vector(bank, [0.5] * 5000).serialize()).decode()  # two ciphertexts
    he.refused("CIPHERTEXT_INVALID", score_columns, col_public, [too_long] * D, MODEL)


def test_garbage_truncated_and_oversized_ciphertexts(he, bank, row_public):
    good = client.encrypt_row(bank, np.ones(D))
    raw = base64.b64decode(good)
    for bad in ("@@@", "", base64.b64encode(raw[: len(raw) // 2]).decode(), base64.b64encode(raw[:-9]).decode(),
                base64.b64encode(b"\x12\x05hello").decode()):
        he.refused("CIPHERTEXT_INVALID", score_rows, row_public, [bad], MODEL)
    from mpc.he.scoring import ScoringLimits

    info = he.refused("CIPHERTEXT_INVALID", score_rows, row_public, [good], MODEL,
                      limits=ScoringLimits(max_ciphertext_bytes=10_000))
    assert "limit" in info.message


def test_request_shape_refusals(he, bank):
    public = he.ckks_public()
    row = client.encrypt_row(bank, np.ones(D))
    he.refused("INVALID_REQUEST", score_encrypted, public, [row], "diagonal", MODEL)
    he.refused("INVALID_REQUEST", score_encrypted, public, [], "row", MODEL)
    he.refused("INVALID_REQUEST", score_encrypted, public, row, "row", MODEL)
    from mpc.he.scoring import ScoringLimits

    he.refused("INVALID_REQUEST", score_encrypted, public, [row] * 3, "row", MODEL,
               limits=ScoringLimits(max_row_ciphertexts=2))


def test_row_layout_without_galois_keys(he, bank, col_public):
    row = client.encrypt_row(bank, np.ones(D))
    info = he.refused("CIPHERTEXT_INVALID", score_encrypted, he.ckks_public(galois=False), [row], "row", MODEL)
    assert "Galois" in info.message
    he.refused("CIPHERTEXT_INVALID", score_rows, col_public, [row], MODEL)


def test_mutated_ciphertexts_never_crash(bank, col_public):
    from mpc.errors import MpcError

    raw = bytearray(base64.b64decode(client.encrypt_columns(bank, np.ones((4, 1)))[0]))
    model = LinearModel((1.0,), 0.0)
    for pos in np.linspace(0, len(raw) - 1, 25).astype(int):
        mutated = bytearray(raw)
        mutated[pos] ^= 0x5A
        try:
            score_columns(col_public, [base64.b64encode(bytes(mutated)).decode()], model)
        except MpcError as err:
            assert err.code in ("CIPHERTEXT_INVALID", "INVALID_REQUEST")


def test_context_loaded_generically_is_prepared_for_scoring(he, bank):
    """A context validated by `load_public_context` alone still scores without rescaling."""
    from mpc.he.context import load_public_context

    public = load_public_context(he.ckks_public(galois=False), scheme="ckks")
    assert public.tenseal.auto_rescale
    x = GEN.normal(size=(5, D))
    out = score_columns(public, client.encrypt_columns(bank, x), MODEL)
    assert not public.tenseal.auto_rescale
    assert np.allclose(client.decrypt_scores(bank, [out], "columns"), logits(x), atol=1e-2)
