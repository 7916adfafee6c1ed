"""Homomorphic-encryption benchmark: encrypted scoring and masked-sign checks vs plaintext NumPy.

Measured at N = 8192 (CKKS 60/40/40/60, scale 2^40; BFV with a 45-bit plain modulus), d = 16 features:

- row layout, one applicant: server time (validated context cached, base64 in → flooded base64 out), the
  context validation itself (35 MB of Galois keys), and end to end without HTTP (bank encrypts, server
  scores, bank decrypts and averages the slots);
- column layout, 4096 applicants per batch: server applicants/s (goal ≥ 100 000/s) and the ratio to one
  row ciphertext per applicant;
- BFV masked sign, 8192 subjects per ciphertext: server checks/s;
- plaintext NumPy (``X @ w + b``, ``x >= t``) as the floor; plus the observed errors.

Prints exactly one JSON line on stdout; progress goes to stderr. ``--quick``: fewer repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpc.he import (  # noqa: E402
    LinearModel,
    SignBounds,
    client,
    evaluate_masked_sign_with,
    load_scoring_context,
    load_sign_context,
    score_columns,
    score_precision,
    score_rows,
)

FEATURES = 16
BATCH = 4096
SUBJECTS = 8192
GOAL_COLUMN_APPLICANTS_PER_S = 100_000


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def timed(call: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time (s) over ``repeats`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def uniform(count: int) -> np.ndarray:
    """``count`` floats in [0, 1) from os.urandom (never a seeded NumPy generator)."""
    return (np.frombuffer(os.urandom(8 * count), dtype="<u8") >> np.uint64(11)) * 2.0**-53


def inputs() -> tuple[LinearModel, np.ndarray, np.ndarray, np.ndarray]:
    """Benchmark data: weights and features in [-2, 2), integer values and thresholds in [0, 200 000]."""
    model = LinearModel(tuple((4 * uniform(FEATURES) - 2).tolist()), 0.1)
    x = (4 * uniform(BATCH * FEATURES) - 2).reshape(BATCH, FEATURES)
    values = np.floor(uniform(SUBJECTS) * 200_001).astype(np.int64)
    thresholds = np.floor(uniform(SUBJECTS) * 200_001).astype(np.int64)
    return model, x, values, thresholds


def bench_row(model: LinearModel, x: np.ndarray, repeats: int) -> dict[str, Any]:
    log("row layout: keys …")
    bank = client.make_ckks_context()
    public_b64 = client.public_context_b64(bank)
    load_s, public = timed(lambda: load_scoring_context(public_b64, "row"), max(1, repeats // 3))
    row = client.encrypt_row(bank, x[0])
    server_s, out = timed(lambda: score_rows(public, [row], model), repeats)

    def end_to_end() -> float:
        encrypted = client.encrypt_row(bank, x[1])
        return float(client.decrypt_scores(bank, score_rows(public, [encrypted], model), "row")[0])

    e2e_s, _ = timed(end_to_end, repeats)
    got = client.decrypt_scores(bank, out, "row")[0]
    expected = float(x[0] @ np.asarray(model.weights) + model.bias)
    log(f"row: server {server_s * 1e3:.1f} ms, end to end {e2e_s * 1e3:.1f} ms, context load {load_s * 1e3:.0f} ms")
    return {
        "server_ms": round(server_s * 1e3, 2),
        "end_to_end_ms": round(e2e_s * 1e3, 2),
        "context_validation_ms": round(load_s * 1e3, 1),
        "context_mb": round(len(public_b64) * 3 / 4 / 2**20, 1),
        "applicants_per_s": round(1 / server_s, 1),
        "abs_error": float(abs(got - expected)),
        "stated_logit_std": score_precision("row", model, public).logit_std,
    }


def bench_columns(model: LinearModel, x: np.ndarray, repeats: int) -> dict[str, Any]:
    log("column layout: keys …")
    bank = client.make_ckks_context()
    public_b64 = client.public_context_b64(bank, galois_keys=False)
    load_s, public = timed(lambda: load_scoring_context(public_b64, "columns"), max(1, repeats // 3))
    enc_s, columns = timed(lambda: client.encrypt_columns(bank, x), 1)
    server_s, out = timed(lambda: score_columns(public, columns, model), repeats)
    got = client.decrypt_scores(bank, [out], "columns")
    error = np.abs(got - (x @ np.asarray(model.weights) + model.bias))
    rate = BATCH / server_s
    log(f"columns: {server_s * 1e3:.1f} ms per {BATCH} applicants = {rate:,.0f}/s")
    return {
        "batch": BATCH,
        "server_ms_per_batch": round(server_s * 1e3, 2),
        "applicants_per_s": round(rate),
        "client_encrypt_ms": round(enc_s * 1e3, 1),
        "context_validation_ms": round(load_s * 1e3, 1),
        "max_abs_error": float(error.max()),
        "stated_slot_std": score_precision("columns", model, public).slot_std,
        "goal_applicants_per_s": GOAL_COLUMN_APPLICANTS_PER_S,
        "meets_goal": rate >= GOAL_COLUMN_APPLICANTS_PER_S,
    }


def bench_sign(values: np.ndarray, thresholds: np.ndarray, repeats: int) -> dict[str, Any]:
    log("masked sign: keys …")
    bank = client.make_bfv_context()
    bounds = SignBounds(0, 200_000, 0, 200_000)
    public_b64 = client.public_context_b64(bank, galois_keys=False)
    load_s, (public, plan) = timed(lambda: load_sign_context(public_b64, bounds), max(1, repeats // 3))
    encrypted = client.encrypt_thresholds(bank, thresholds)
    xs = values.tolist()
    server_s, out = timed(lambda: evaluate_masked_sign_with(public, plan, encrypted, xs, bounds), repeats)
    correct = bool(np.array_equal(client.read_signs(bank, out), values >= thresholds))
    rate = SUBJECTS / server_s
    log(f"masked sign: {server_s * 1e3:.1f} ms per {SUBJECTS} subjects = {rate:,.0f}/s")
    return {
        "subjects_per_ciphertext": SUBJECTS,
        "server_ms_per_ciphertext": round(server_s * 1e3, 2),
        "checks_per_s": round(rate),
        "context_validation_ms": round(load_s * 1e3, 1),
        "mask_bits": round(plan.mask_bits, 1),
        "all_signs_correct": correct,
    }


def bench_plain(model: LinearModel, x: np.ndarray, values: np.ndarray, thresholds: np.ndarray,
                repeats: int) -> dict[str, Any]:
    w = np.asarray(model.weights)
    score_s, _ = timed(lambda: x @ w + model.bias, repeats * 20)
    sign_s, _ = timed(lambda: values >= thresholds, repeats * 20)
    return {"applicants_per_s": round(BATCH / score_s), "checks_per_s": round(SUBJECTS / sign_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else 9
    model, x, values, thresholds = inputs()
    row = bench_row(model, x, repeats)
    columns = bench_columns(model, x, repeats)
    sign = bench_sign(values, thresholds, repeats)
    plain = bench_plain(model, x, values, thresholds, repeats)
    columns["vs_one_ciphertext_per_applicant"] = round(columns["applicants_per_s"] / row["applicants_per_s"], 1)
    columns["vs_plaintext"] = round(plain["applicants_per_s"] / columns["applicants_per_s"], 1)
    sign["vs_plaintext"] = round(plain["checks_per_s"] / sign["checks_per_s"], 1)
    print(json.dumps({
        "bench": "he",
        "quick": args.quick,
        "params": {"poly_modulus_degree": 8192, "ckks_coeff_bits": [60, 40, 40, 60], "scale_bits": 40,
                   "bfv_plain_bits": 45, "features": FEATURES, "repeats": repeats},
        "row": row,
        "columns": columns,
        "masked_sign": sign,
        "plaintext": plain,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
