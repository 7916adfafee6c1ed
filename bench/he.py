"""Homomorphic-encryption benchmark: encrypted scoring and masked-sign checks vs plaintext NumPy.

Measured at N = 8192 (CKKS 60/40/40/60, scale 2^40; BFV with a 45-bit plain modulus), d = 16 features:

- row layout, one applicant: server time (validated context cached, base64 in → flooded base64 out), the
  context validation itself (35 MB of Galois keys), and end to end without HTTP (bank encrypts, server
  scores, bank decrypts and averages the slots);
- column layout, 4096 applicants per batch: server applicants/s (goal ≥ 100 000/s) and the ratio to one
  row ciphertext per applicant;
- BFV masked sign, 8192 subjects per ciphertext: server checks/s;
- plaintext NumPy (``X @ w + b``, ``x >= t``) as the floor; plus the observed errors;
- through the gateway (real HTTP on loopback, a fresh home, latency buckets off): one applicant scored end to
  end (bank encrypts → ``POST /v1/models/{id}/score`` → bank decrypts) in the row layout (the SDK's 60/40/60
  context, ~12 MB with rotation keys, sent with every request) and in the column layout, a 4096-applicant
  column batch, a plain ``/check`` and a 1024-subject ``/check-encrypted``; for the column batch and the
  encrypted check also the JSON (base64) form against the SDK's default binary frame
  (docs/api.md, "Binary bodies for ciphertexts"), the request alone (ciphertexts made beforehand) and its HE
  evaluation measured in-process, so the service time beyond the HE evaluation is their difference (the check
  evaluates twice: dry, then real).

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
    decide_columns,
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


def _register_bench_model(ctx: Any, d_features: list[str]) -> str:
    """A logistic-regression model in the training format, registered as a released job would."""
    import hashlib

    from catalog import models, registry
    from sandbox.train import encoding_for, parse_spec
    from sandbox.train.weights import save_weights

    ds = registry.get(ctx.engine, "tax_income")
    spec = parse_spec({"dataset": "tax_income", "features": d_features, "label": "has_default",
                       "model": "logistic_regression", "epochs": 1, "batch_size": 64, "epsilon": 1.0,
                       "delta": 1e-6, "max_grad_norm": 1.0})
    enc = encoding_for(spec, ds)
    w = 4 * uniform(enc.width) - 2
    out = ctx.settings.models_dir / "bench" / "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights({"linear.weight": w.reshape(1, -1), "linear.bias": np.array([0.1])}, out, "logistic_regression",
                 enc.feature_names)
    card = {"model": "logistic_regression", "input_width": enc.width, "encoding": enc.model_dump(mode="json"),
            "weights": {"sha256": "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()},
            "scoring": {"max_scores_per_agreement": 10**12, "max_decisions_per_agreement": 10**12}}
    rec = models.register_model(ctx.engine, job_id="job_bench", agreement_id="agr_bench", owner="bench",
                                algorithm="logistic_regression", purpose="credit_risk", features=d_features,
                                card=card, weights_path="bench/model.safetensors", output_digest="sha256:" + "0" * 64,
                                source_datasets={"tax_income": ds.fingerprint})
    return rec.id


def _bench_linear(ctx: Any, model_id: str) -> LinearModel:
    from catalog import models
    from gateway.services.scoring import linear_model

    m = models.get_model(ctx.engine, model_id)
    assert m is not None
    return linear_model(ctx, m)


def _product_bounds(ctx: Any, name: str) -> SignBounds:
    """The sign box the service evaluates the product's encrypted checks with."""
    from catalog import products, registry
    from sandbox.verify import sign_box, vet_predicate

    product = products.get_product(ctx.engine, name)
    assert product is not None
    ds = registry.get(ctx.engine, product.dataset)
    assert ds is not None
    vetted = vet_predicate(product.predicate, product.params, ds, product.subject_column)
    assert vetted.threshold is not None
    return SignBounds(*sign_box(vetted.threshold))


def _json_client() -> type:
    from veilbox.client import Client

    class JsonClient(Client):
        """The SDK with the JSON (base64) form of the encrypted calls, for comparison."""

        def score(self, *a: Any, **kw: Any) -> dict[str, Any]:
            return super().score(*a, **kw, binary=False)

    return JsonClient


def bench_gateway(repeats: int) -> dict[str, Any]:
    """End-to-end figures through a real gateway on loopback (HTTP, JSON, audit, metering included)."""
    import tempfile

    from catalog.datagen import generate
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox import bank as bank_sdk
    from veilbox.client import Client

    _JsonClient = _json_client()
    he_client = client
    log("gateway: a fresh home, data, agreement, model …")
    root = Path(tempfile.mkdtemp(prefix="veilbox-bench-he-"))
    data = generate(root / "incoming" / "tax", rows=5000, seed=11)
    settings = Settings(home=root / "home", import_roots=[root / "incoming"], latency_bucket_ms=0, env="test")
    token = init_home(settings)
    ctx = open_context(settings)
    features = ["age", "industry", "district", "monthly_income", "social_insurance_months"]
    with BackgroundServer(ctx) as srv:
        admin = Client(srv.url, token, timeout=600)
        owner = admin.with_token(admin.create_principal("tax", "owner")["token"])
        bank_token = admin.create_principal("bank", "bank")["token"]
        bank = admin.with_token(bank_token)
        bank_json = _JsonClient(srv.url, bank_token, timeout=600)
        owner.register_dataset(json.loads(data.tax_income_spec.read_text()))
        ag = owner.propose_agreement({
            "title": "bench", "grantee": "bank", "datasets": ["tax_income"], "columns": {"tax_income": features},
            "purposes": ["credit_risk"], "job_kinds": ["verify", "score"], "score_logits": True,
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2036-01-01T00:00:00Z", "budget": {"epsilon": 1}, "approval": "owner_each_job",
            "quotas": {"calls_per_day": 10**8, "scores_per_day": 10**8, "verify_per_subject_per_day": 10**5,
                       "distinct_params_per_subject": 10**4}})
        agreement = bank.accept_agreement(ag["id"])["id"]
        model_id = _register_bench_model(ctx, features)
        card = bank.model(model_id)["card"]
        owner.define_verification({"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}})
        applicant = [{"age": 40, "industry": "it", "district": "Binhu", "monthly_income": 9000,
                      "social_insurance_months": 100}]
        row_keys, col_keys = bank_sdk.scoring_keys("row"), bank_sdk.scoring_keys("columns")
        x = bank_sdk.encode_applicants(card, applicant)
        batch = np.tile(x, (BATCH, 1))

        def score(keys: Any, rows: np.ndarray) -> Any:
            return bank_sdk.score_applicants(bank, model_id, rows, layout=keys.layout, keys=keys,
                                             agreement_id=agreement)

        log("gateway: scoring …")
        row_s, row_out = timed(lambda: score(row_keys, x), repeats)
        col_s, _ = timed(lambda: score(col_keys, x), repeats)
        batch_s, batch_out = timed(lambda: score(col_keys, batch), max(1, repeats // 3))
        batch_json_s, _ = timed(lambda: bank_sdk.score_applicants(bank_json, model_id, batch, keys=col_keys,
                                                                  agreement_id=agreement), max(1, repeats // 3))
        cts = he_client.encrypt_columns(col_keys.context, batch)
        cut = he_client.encrypt_cutoffs(col_keys.context, np.zeros(BATCH))
        http_bin_s, _ = timed(lambda: bank.score(model_id, col_keys.public, cts, "columns", agreement,
                                                 cutoff=cut), repeats)
        http_json_s, _ = timed(lambda: bank.score(model_id, col_keys.public, cts, "columns", agreement,
                                                  cutoff=cut, binary=False), repeats)
        public = load_scoring_context(col_keys.public, "columns")
        lin = _bench_linear(ctx, model_id)
        eval_col_s, _ = timed(lambda: decide_columns(public, cts, cut, lin), repeats)
        log("gateway: verification …")
        check_s, _ = timed(lambda: bank.check("income_at_least", agreement, "P0000001", {"threshold": 8000},
                                              consent_ref="bench"), repeats)
        bfv = bank_sdk.verification_keys()
        subjects = [f"P{i:07d}" for i in range(1, 1025)]
        thresholds = [8000] * len(subjects)
        info = bank.verification("income_at_least")
        enc_s, _ = timed(lambda: bank_sdk.check_thresholds(bank, "income_at_least", agreement, subjects, thresholds,
                                                          consent_ref="bench", keys=bfv, info=info),
                         max(1, repeats // 3))
        named: list[str | int] = list(subjects)
        t_ct = he_client.encrypt_thresholds(bfv.context, np.asarray(thresholds, dtype=np.int64))
        chk_bin_s, _ = timed(lambda: bank.check_encrypted("income_at_least", agreement, named, bfv.public, t_ct,
                                                          consent_ref="bench"), repeats)
        chk_json_s, _ = timed(lambda: bank.check_encrypted("income_at_least", agreement, named, bfv.public, t_ct,
                                                           consent_ref="bench", binary=False), repeats)
        bounds = _product_bounds(ctx, "income_at_least")
        sign_public, plan = load_sign_context(bfv.public, bounds)
        values = [bounds.value_min] * len(subjects)
        sign_eval_s, _ = timed(lambda: evaluate_masked_sign_with(sign_public, plan, t_ct, values, bounds), repeats)
        bank_json.close()
        admin.close()
    ctx.close()
    log(f"gateway: row single applicant {row_s * 1e3:.0f} ms, columns single {col_s * 1e3:.0f} ms, "
        f"columns 4096 {batch_s * 1e3:.0f} ms, check {check_s * 1e3:.1f} ms, encrypted 1024 {enc_s * 1e3:.0f} ms")
    return {
        "row_single_applicant_ms": round(row_s * 1e3, 1),
        "row_request_mb": round(len(row_keys.public) / 2**20, 1),
        "columns_single_applicant_ms": round(col_s * 1e3, 1),
        "columns_batch_ms": round(batch_s * 1e3, 1),
        "columns_batch_applicants_per_s": round(BATCH / batch_s),
        "scores_counted": {"row_single": int(row_out.scores_counted), "columns_batch": int(batch_out.scores_counted)},
        "check_ms": round(check_s * 1e3, 2),
        "check_encrypted_1024_ms": round(enc_s * 1e3, 1),
        # the SDK's default (binary frames) vs the JSON form, a 4096-applicant column batch
        "columns_batch_json_ms": round(batch_json_s * 1e3, 1),
        "columns_batch_json_applicants_per_s": round(BATCH / batch_json_s),
        # the request alone (ciphertexts made beforehand, answer not decrypted): decisions, 4096 applicants
        "columns_request_binary_ms": round(http_bin_s * 1e3, 1),
        "columns_request_json_ms": round(http_json_s * 1e3, 1),
        "columns_request_binary_applicants_per_s": round(BATCH / http_bin_s),
        "columns_request_json_applicants_per_s": round(BATCH / http_json_s),
        "columns_decide_evaluation_ms": round(eval_col_s * 1e3, 1),
        # the 1024-subject check request alone, and its time beyond the HE work (a dry and a real evaluation)
        "check_encrypted_1024_request_binary_ms": round(chk_bin_s * 1e3, 1),
        "check_encrypted_1024_request_json_ms": round(chk_json_s * 1e3, 1),
        "check_encrypted_1024_evaluation_ms": round(sign_eval_s * 1e3, 1),
        "check_encrypted_1024_beyond_he_binary_ms": round((chk_bin_s - 2 * sign_eval_s) * 1e3, 1),
        "check_encrypted_1024_beyond_he_json_ms": round((chk_json_s - 2 * sign_eval_s) * 1e3, 1),
        "check_encrypted_subjects_per_s": round(len(subjects) / enc_s),
        "latency_bucket_ms": 0,
    }


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
    gateway = bench_gateway(repeats)
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
        "gateway": gateway,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
