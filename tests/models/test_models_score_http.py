"""Encrypted scoring over real HTTP: logits come back under the bank's key and match the plaintext model; the
weights never leave; the extraction quota of the card holds (also under concurrency); who may score is the
agreement's business; hostile contexts and ciphertexts are refused, audited, and leave the service up."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from catalog import models
from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import ApiError

FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


@pytest.fixture(scope="module")
def applicants(city_data) -> list[dict]:
    return pq.read_table(city_data.tax_income, columns=FEATURES).slice(0, 64).to_pylist()


def _entries(world, action: str) -> list[dict]:
    out = world.parties.regulator.audit(limit=1000, action=action)["entries"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def test_cards_state_the_scoring_terms_and_never_the_weights(sworld):
    items = sworld.bank.models()
    assert [m["id"] for m in items] == [sworld.model.id]
    card = sworld.bank.model(sworld.model.id)
    terms = card["scoring"]
    assert terms["encrypted"] is True and terms["max_scores_per_agreement"] == models.DEFAULT_SCORE_LIMIT
    assert terms["input_width"] == 20 and terms["extraction_query_bound"] == 21
    text = json.dumps(card)
    assert sworld.model.weights_path not in text and "linear.weight" not in text
    assert "weights_path" not in card


def test_column_and_row_scoring_match_the_plaintext_model(sworld, applicants, columns_keys, row_keys):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants)
    expected = sworld.logits(x)
    out = bank_sdk.score_applicants(sworld.bank, sworld.model.id, applicants, layout="columns",
                                    agreement_id=sworld.agreement["id"], keys=columns_keys)
    assert np.abs(out.logits - expected).max() < 1e-2
    assert out.scores_counted == 8192 and out.scores_used == 8192
    assert ((out.probabilities > 0) & (out.probabilities < 1)).all()
    row = bank_sdk.score_applicants(sworld.bank, sworld.model.id, applicants[:3], layout="row", keys=row_keys)
    assert np.abs(row.logits - expected[:3]).max() < 1e-3
    assert row.scores_counted == 6 and row.scores_used == 8192 + 6
    entries = [e for e in _entries(sworld, "model.score") if e["decision"] == "allow"]
    assert len(entries) == 2
    for e in entries:
        assert e["agreement_id"] == sworld.agreement["id"] and e["dataset"] == "tax_income"
        assert e["output_digest"].startswith("sha256:") and e["details"]["model_id"] == sworld.model.id
    assert [e["details"]["scores_exposed"] for e in entries] == [8192, 6]


def test_the_agreement_is_picked_or_must_be_named(sworld, applicants, columns_keys):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    bank_sdk.score_applicants(sworld.bank, sworld.model.id, x, keys=columns_keys)  # the only one: picked
    second = sworld.parties.agreement("icbc-wuxi")
    code, _, details = codes(bank_sdk.score_applicants, sworld.bank, sworld.model.id, x, keys=columns_keys)
    assert code == "INVALID_REQUEST" and set(details[0]["candidates"]) == {sworld.agreement["id"], second["id"]}
    bank_sdk.score_applicants(sworld.bank, sworld.model.id, x, keys=columns_keys, agreement_id=second["id"])


def test_who_may_score(sworld, applicants, columns_keys, make_model):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    cts = he.encrypt_columns(columns_keys.context, x)
    p = sworld.parties

    def score(client, agreement_id=None, model_id=None):
        return client.score(model_id or sworld.model.id, columns_keys.public, cts, "columns", agreement_id)

    op_ag = p.agreement("risk-lab")
    assert codes(score, p.operator, op_ag["id"])[:2] == ("POLICY_DENIED", 403)  # an operator is not a bank
    no_score = p.agreement("icbc-wuxi", job_kinds=["verify"])
    assert {d["reason"] for d in codes(score, p.bank, no_score["id"])[2]} == {"job_kind.not_allowed"}
    narrow = p.agreement("icbc-wuxi", columns={"tax_income": ["age", "district"]})
    reasons = {(d["reason"], d.get("column")) for d in codes(score, p.bank, narrow["id"])[2]}
    assert reasons == {("column.outside_agreement", c) for c in ("industry", "monthly_income",
                                                                 "social_insurance_months")}
    other_purpose = p.agreement("icbc-wuxi", purposes=["marketing"])
    assert codes(score, p.bank, other_purpose["id"])[2][0]["reason"] == "purpose.outside_agreement"
    other_bank = p.service.principal("another-bank", "bank")
    assert codes(score, other_bank, sworld.agreement["id"])[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert codes(score, p.bank, sworld.agreement["id"], "mdl_nope")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    expired = make_model("job_old", now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), valid_days=30)
    code, _, details = codes(score, p.bank, sworld.agreement["id"], expired.id)
    assert code == "POLICY_DENIED" and details[0]["reason"] == "model.certificate_invalid"
    mlp = make_model("job_mlp", algorithm="mlp")
    assert codes(score, p.bank, sworld.agreement["id"], mlp.id)[0] == "INVALID_REQUEST"
    p.owner.suspend_agreement(sworld.agreement["id"])
    assert codes(score, p.bank, sworld.agreement["id"])[:2] == ("AGREEMENT_INACTIVE", 403)
    assert models.score_usage(p.service.ctx.engine, sworld.agreement["id"], sworld.model.id) == 0


def test_extraction_needs_d_plus_1_logits_and_the_card_limit_stops_it(sworld, row_keys, make_model):
    """d + 1 chosen inputs (0 and the unit vectors) recover a linear model; the card's limit decides whether a
    bank gets them. With the limit just below 2(d + 1) scores the attack is refused before any answer."""
    p, ag = sworld.parties, sworld.agreement["id"]
    d = sworld.model.scoring_terms()["input_width"]
    probes = np.vstack([np.zeros(d), np.eye(d)])
    guarded = make_model("job_guarded", card_extra={"scoring": {"max_scores_per_agreement": 2 * d + 1}})
    code, _, details = codes(bank_sdk.score_applicants, p.bank, guarded.id, probes, layout="row", keys=row_keys,
                             agreement_id=ag)
    # the row context fills most of a request, so the probes go in several requests; the last one is refused
    assert code == "QUOTA_EXCEEDED" and details[0]["limit"] == 2 * d + 1
    assert models.score_usage(p.service.ctx.engine, ag, guarded.id) < 2 * (d + 1)
    assert p.bank.model(guarded.id)["scoring"]["max_scores_per_agreement"] == 2 * d + 1
    open_model = make_model("job_open", card_extra={"scoring": {"max_scores_per_agreement": 2 * (d + 1)}})
    out = bank_sdk.score_applicants(p.bank, open_model.id, probes, layout="row", keys=row_keys, agreement_id=ag)
    bias = out.logits[0]
    recovered = out.logits[1:] - bias
    true_w = np.linspace(-1.5, 1.5, d)
    assert abs(bias - (-1.25)) < 1e-3 and np.abs(recovered - true_w).max() < 1e-3  # the model is out
    assert codes(bank_sdk.score_applicants, p.bank, open_model.id, probes[:1], layout="row", keys=row_keys,
                 agreement_id=ag)[0] == "QUOTA_EXCEEDED"


def test_the_quota_holds_under_concurrent_requests(sworld, applicants, columns_keys, make_model):
    p, ag = sworld.parties, sworld.agreement["id"]
    m = make_model("job_conc", card_extra={"scoring": {"max_scores_per_agreement": 3 * 8192}})
    x = bank_sdk.encode_applicants(m.card, applicants[:4])
    cts = he.encrypt_columns(columns_keys.context, x)

    def one(_: int) -> int:
        try:
            p.bank.score(m.id, columns_keys.public, cts, "columns", ag)
            return 1
        except ApiError as e:
            assert e.code == "QUOTA_EXCEEDED"
            return 0

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(one, range(8))) == 3
    assert models.score_usage(p.service.ctx.engine, ag, m.id) == 3 * 8192


def _secret_context(ctx) -> str:
    return base64.b64encode(ctx.serialize(save_secret_key=True)).decode()


def test_hostile_inputs_are_refused_audited_and_cost_nothing(sworld, applicants, columns_keys, row_keys):
    p, ag, mid = sworld.parties, sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    good = he.encrypt_columns(columns_keys.context, x)
    small = he.make_ckks_context(poly_modulus_degree=4096, coeff_mod_bit_sizes=(40, 20, 40), scale_bits=20)
    bfv = he.make_bfv_context()
    cases = {
        "garbage base64 context": ("%%%", good, "columns"),
        "garbage context bytes": (base64.b64encode(b"\x00" * 5000).decode(), good, "columns"),
        "secret-key context": (_secret_context(columns_keys.context), good, "columns"),
        "N=4096 context": (he.public_context_b64(small, galois_keys=False), good, "columns"),
        "BFV context": (he.public_context_b64(bfv, galois_keys=False), good, "columns"),
        "row without rotation keys": (columns_keys.public, [he.encrypt_row(columns_keys.context, x[0])], "row"),
        "garbage ciphertext": (columns_keys.public, ["AAAA" * 10] * len(good), "columns"),
        "ciphertext of another key set": (columns_keys.public, he.encrypt_columns(small, x), "columns"),
        "too few columns": (columns_keys.public, good[:-1], "columns"),
        "row with d-1 values": (row_keys.public, [he.encrypt_row(row_keys.context, x[0][:-1])], "row"),
    }
    seen = set()
    for label, (context, cts, layout) in cases.items():
        code, status, _ = codes(p.bank.score, mid, context, cts, layout, ag)
        assert status == 422 and code in {"CIPHERTEXT_INVALID", "INVALID_REQUEST"}, label
        seen.add(code)
    assert seen == {"CIPHERTEXT_INVALID", "INVALID_REQUEST"}
    for body in ({"context": 5, "ciphertexts": good, "layout": "columns"},
                 {"context": columns_keys.public, "ciphertexts": "abc", "layout": "columns"},
                 {"context": columns_keys.public, "ciphertexts": good, "layout": "diagonal"},
                 {"context": columns_keys.public, "ciphertexts": good, "layout": "columns", "weights": True}):
        assert codes(p.bank._json, "POST", f"/v1/models/{mid}/score", json=body)[:2] == ("INVALID_REQUEST", 422)
    huge = "A" * (p.service.settings.max_body_bytes + 1)
    r = httpx.post(f"{p.service.url}/v1/models/{mid}/score", content=huge,
                   headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    entries = _entries(sworld, "model.score")
    assert len(entries) == len(cases) + 4 and all(e["decision"] == "deny" for e in entries)
    too_large = _entries(sworld, "request.too_large")
    assert len(too_large) == 1 and too_large[0]["details"]["path"] == f"/v1/models/{mid}/score"
    assert models.score_usage(p.service.ctx.engine, ag, mid) == 0  # refused or failed: nothing counted
    # and the service still scores correctly
    out = bank_sdk.score_applicants(p.bank, mid, x, keys=columns_keys, agreement_id=ag)
    assert np.abs(out.logits - sworld.logits(x)).max() < 1e-2


def test_validated_contexts_are_cached_per_bank_only(sworld, applicants, columns_keys):
    """A context validated for one bank is reused for that bank's next request, never for another bank; a
    context that fails validation is never cached."""
    from gateway.routes import models as routes

    p = sworld.parties
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    other_bank = p.service.principal("another-bank", "bank")
    proposed = p.agreement("another-bank", accept=False)
    other_ag = other_bank.accept_agreement(proposed["id"])["id"]
    for client, ag in ((p.bank, sworld.agreement["id"]), (p.bank, sworld.agreement["id"]), (other_bank, other_ag)):
        bank_sdk.score_applicants(client, sworld.model.id, x, keys=columns_keys, agreement_id=ag)
    digest = "sha256:" + hashlib.sha256(columns_keys.public.encode()).hexdigest()
    holders = sorted(k[0] for k in routes.SCORING_CONTEXTS._entries if k[3] == digest)
    assert holders == ["another-bank", "icbc-wuxi"]
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("invalid")

    cache = routes.ContextCache(size=2)
    for _ in range(2):
        with pytest.raises(ValueError):
            cache.get(("bank", "x"), bad)
    assert calls == [1, 1] and not cache._entries
