"""Encrypted scoring over real HTTP. By default a bank gets decisions — the sign of score − its encrypted cut-off —
that equal the plaintext model's; logits only under an agreement that grants them, within a card quota that stays
below the d + 1 logits that determine the model; an agreement can restrict the layout; the weights never leave;
the quotas hold (also under concurrency); hostile contexts, ciphertexts and cut-offs are refused, audited, cost
nothing, and leave the service up."""

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


def _usage(world, agreement_id: str, model_id: str) -> tuple[int, int]:
    engine = world.parties.service.ctx.engine
    return (models.score_usage(engine, agreement_id, model_id, "decision"),
            models.score_usage(engine, agreement_id, model_id, "logit"))


def _cutoffs(rng: np.random.Generator, s: np.ndarray, nearest: float) -> np.ndarray:
    """A cut-off on either side of each score, log-uniformly from ``nearest`` to 20 away."""
    return s + rng.choice([-1.0, 1.0], size=s.shape) * np.exp(rng.uniform(np.log(nearest), np.log(20.0), s.shape))


def test_cards_state_the_scoring_terms_and_never_the_weights(sworld):
    items = sworld.bank.models()
    assert [m["id"] for m in items] == [sworld.model.id]
    card = sworld.bank.model(sworld.model.id)
    terms = card["scoring"]
    assert terms["encrypted"] is True and terms["default_output"] == "decision"
    assert terms["max_decisions_per_agreement"] == models.DEFAULT_DECISION_LIMIT
    assert terms["input_width"] == 20 and terms["extraction_query_bound"] == 21
    assert terms["max_logits_per_agreement"] == 20  # d: fewer logits than determine the model
    logits, decisions = terms["extraction"]["logits"], terms["extraction"]["decisions"]
    assert logits["queries"] == 21 and logits["recoverable_within_limit"] is False
    assert decisions["queries"] == {"0.1": 21 * 9, "0.001": 21 * 15}
    assert decisions["recoverable_within_limit"] is True  # stated honestly: decisions are only metered
    text = json.dumps(card)
    assert sworld.model.weights_path not in text and "linear.weight" not in text
    assert "weights_path" not in card


@pytest.mark.parametrize("layout", ["columns", "row"])
def test_decisions_equal_the_plaintext_sign(sworld, applicants, columns_keys, row_keys, layout):
    """Random applicants against cut-offs on both sides, down to 7 documented standard deviations away: every
    decision equals sign(plaintext score − cut-off); the meter counts two per applicant."""
    keys = columns_keys if layout == "columns" else row_keys
    rng = np.random.default_rng(7)  # synthetic cut-offs, not noise
    count = 64 if layout == "columns" else 6
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:count])
    s = sworld.logits(x)
    t = _cutoffs(rng, s, 7 * sworld.precision(keys) + 1e-6)
    t[:2] = s[:2] + np.array([1, -1]) * (7 * sworld.precision(keys) + 1e-6)  # right at the documented precision
    out = bank_sdk.decide_applicants(sworld.bank, sworld.model.id, x, t, layout=layout, keys=keys,
                                     agreement_id=sworld.agreement["id"])
    assert np.array_equal(out.decisions, s >= t)
    assert out.decisions_counted == 2 * count and out.decisions_used == 2 * count
    assert out.decisions_limit == models.DEFAULT_DECISION_LIMIT
    assert _usage(sworld, sworld.agreement["id"], sworld.model.id) == (2 * count, 0)
    (entry,) = [e for e in _entries(sworld, "model.score") if e["decision"] == "allow"]
    assert entry["details"]["output"] == "decision" and entry["details"]["scores_exposed"] == 2 * count
    assert entry["output_digest"].startswith("sha256:") and entry["dataset"] == "tax_income"


def test_logits_need_the_grant_and_a_refusal_meters_nothing(sworld, applicants, columns_keys):
    """Without score_logits a logit request is POLICY_DENIED before anything is metered: with one call a day left,
    two refused logit requests still leave that call to a decision."""
    p = sworld.parties
    ag = p.agreement("icbc-wuxi", quotas={"calls_per_day": 1, "scores_per_day": 1})["id"]
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:4])
    cts = he.encrypt_columns(columns_keys.context, x)
    for _ in range(2):
        code, status, details = codes(p.bank.score, sworld.model.id, columns_keys.public, cts, "columns", ag,
                                      output="logit")
        assert (code, status) == ("POLICY_DENIED", 403) and details[0]["reason"] == "score.logits_not_granted"
    assert _usage(sworld, ag, sworld.model.id) == (0, 0)
    denied = [e for e in _entries(sworld, "model.score") if e["decision"] == "deny"]
    assert len(denied) == 2 and all(e["details"]["output"] == "logit" and e["agreement_id"] == ag for e in denied)
    out = bank_sdk.decide_applicants(p.bank, sworld.model.id, x, 0.0, keys=columns_keys, agreement_id=ag)
    assert np.array_equal(out.decisions, sworld.logits(x) >= 0.0)
    assert codes(bank_sdk.decide_applicants, p.bank, sworld.model.id, x, 0.0, keys=columns_keys,
                 agreement_id=ag)[0] == "QUOTA_EXCEEDED"  # the one call was the decision's


def test_granted_logits_match_the_plaintext_model(sworld, applicants, columns_keys, row_keys, make_model):
    p = sworld.parties
    ag = p.agreement("icbc-wuxi", score_logits=True)["id"]
    m = make_model("job_open_logits", card_extra={"scoring": {"max_logits_per_agreement": 8192 + 6}})
    x = bank_sdk.encode_applicants(m.card, applicants)
    expected = sworld.logits(x, m)
    out = bank_sdk.score_applicants(p.bank, m.id, applicants, layout="columns", agreement_id=ag, keys=columns_keys)
    assert np.abs(out.logits - expected).max() < 1e-2
    assert out.scores_counted == 8192 and out.scores_used == 8192 and out.scores_limit == 8192 + 6
    assert ((out.probabilities > 0) & (out.probabilities < 1)).all()
    row = bank_sdk.score_applicants(p.bank, m.id, applicants[:3], layout="row", keys=row_keys, agreement_id=ag)
    assert np.abs(row.logits - expected[:3]).max() < 1e-3
    assert row.scores_counted == 6 and row.scores_used == 8192 + 6
    assert _usage(sworld, ag, m.id) == (0, 8192 + 6)
    entries = [e for e in _entries(sworld, "model.score") if e["decision"] == "allow"]
    assert [(e["details"]["output"], e["details"]["scores_exposed"]) for e in entries] == [("logit", 8192),
                                                                                          ("logit", 6)]


def test_the_default_logit_quota_stops_the_d_plus_1_extraction_attack(sworld, columns_keys, row_keys, make_model):
    """The measured attack — d + 1 chosen inputs (0 and the unit vectors) in one column request — and its row
    variant are refused before d + 1 logits leave, even under an agreement that grants logits: the card's default
    allows d. A card that raises the limit to 2(d + 1) shows what the default prevents: the model comes out."""
    p = sworld.parties
    ag = p.agreement("icbc-wuxi", score_logits=True)["id"]
    d = sworld.model.scoring_terms()["input_width"]
    probes = np.vstack([np.zeros(d), np.eye(d)])
    code, _, details = codes(bank_sdk.score_applicants, p.bank, sworld.model.id, probes, layout="columns",
                             keys=columns_keys, agreement_id=ag)
    assert code == "QUOTA_EXCEEDED" and details[0]["reason"] == "quota.model_logits" and details[0]["limit"] == d
    code, _, details = codes(bank_sdk.score_applicants, p.bank, sworld.model.id, probes, layout="row",
                             keys=row_keys, agreement_id=ag)
    assert code == "QUOTA_EXCEEDED" and details[0]["limit"] == d
    used = models.score_usage(p.service.ctx.engine, ag, sworld.model.id, "logit")
    assert used <= d < d + 1  # at most d real-valued logits (2 per row ciphertext) ever left
    open_model = make_model("job_open", card_extra={"scoring": {"max_logits_per_agreement": 2 * (d + 1)}})
    assert p.bank.model(open_model.id)["scoring"]["extraction"]["logits"]["recoverable_within_limit"] is True
    out = bank_sdk.score_applicants(p.bank, open_model.id, probes, layout="row", keys=row_keys, agreement_id=ag)
    bias, recovered = out.logits[0], out.logits[1:] - out.logits[0]
    assert abs(bias - (-1.25)) < 1e-3 and np.abs(recovered - np.linspace(-1.5, 1.5, d)).max() < 1e-3
    assert codes(bank_sdk.score_applicants, p.bank, open_model.id, probes[:1], layout="row", keys=row_keys,
                 agreement_id=ag)[0] == "QUOTA_EXCEEDED"


def test_row_only_agreements_refuse_the_column_layout(sworld, applicants, columns_keys, row_keys):
    p = sworld.parties
    ag = p.agreement("icbc-wuxi", score_layout="row", score_logits=True)["id"]
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:3])
    for call, kw in ((bank_sdk.decide_applicants, {"cutoffs": 0.0}), (bank_sdk.score_applicants, {})):
        code, status, details = codes(call, p.bank, sworld.model.id, x, layout="columns", keys=columns_keys,
                                      agreement_id=ag, **kw)
        assert (code, status) == ("POLICY_DENIED", 403)
        assert details[0] == {"reason": "score.layout_not_granted", "layout": "columns", "allowed": "row"}
    assert _usage(sworld, ag, sworld.model.id) == (0, 0)
    out = bank_sdk.decide_applicants(p.bank, sworld.model.id, x, 0.0, layout="row", keys=row_keys, agreement_id=ag)
    assert np.array_equal(out.decisions, sworld.logits(x) >= 0.0) and out.decisions_used == 6


def test_the_agreement_is_picked_or_must_be_named(sworld, applicants, columns_keys):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    bank_sdk.decide_applicants(sworld.bank, sworld.model.id, x, 0.0, keys=columns_keys)  # the only one: picked
    second = sworld.parties.agreement("icbc-wuxi")
    code, _, details = codes(bank_sdk.decide_applicants, sworld.bank, sworld.model.id, x, 0.0, keys=columns_keys)
    assert code == "INVALID_REQUEST" and set(details[0]["candidates"]) == {sworld.agreement["id"], second["id"]}
    bank_sdk.decide_applicants(sworld.bank, sworld.model.id, x, 0.0, keys=columns_keys, agreement_id=second["id"])


def test_who_may_score(sworld, applicants, columns_keys, make_model):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    cts = he.encrypt_columns(columns_keys.context, x)
    cutoff = he.encrypt_cutoffs(columns_keys.context, np.zeros(2))
    p = sworld.parties

    def score(client, agreement_id=None, model_id=None):
        return client.score(model_id or sworld.model.id, columns_keys.public, cts, "columns", agreement_id,
                            cutoff=cutoff)

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
    # a stranger asking for logits learns nothing of the agreement's grant either
    assert codes(other_bank.score, sworld.model.id, columns_keys.public, cts, "columns", sworld.agreement["id"],
                 output="logit")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert codes(score, p.bank, sworld.agreement["id"], "mdl_nope")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    expired = make_model("job_old", now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), valid_days=30)
    code, _, details = codes(score, p.bank, sworld.agreement["id"], expired.id)
    assert code == "POLICY_DENIED" and details[0]["reason"] == "model.certificate_invalid"
    mlp = make_model("job_mlp", algorithm="mlp")
    assert codes(score, p.bank, sworld.agreement["id"], mlp.id)[0] == "INVALID_REQUEST"
    p.owner.suspend_agreement(sworld.agreement["id"])
    assert codes(score, p.bank, sworld.agreement["id"])[:2] == ("AGREEMENT_INACTIVE", 403)
    assert _usage(sworld, sworld.agreement["id"], sworld.model.id) == (0, 0)


def test_the_quota_holds_under_concurrent_requests(sworld, applicants, columns_keys, make_model):
    p, ag = sworld.parties, sworld.agreement["id"]
    m = make_model("job_conc", card_extra={"scoring": {"max_decisions_per_agreement": 3 * 8}})
    x = bank_sdk.encode_applicants(m.card, applicants[:4])
    cts = he.encrypt_columns(columns_keys.context, x)
    cutoff = he.encrypt_cutoffs(columns_keys.context, np.zeros(4))

    def one(_: int) -> int:
        try:
            p.bank.score(m.id, columns_keys.public, cts, "columns", ag, cutoff=cutoff)
            return 1
        except ApiError as e:
            assert e.code == "QUOTA_EXCEEDED"
            return 0

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(one, range(8))) == 3
    assert _usage(sworld, ag, m.id) == (3 * 8, 0)


def _secret_context(ctx) -> str:
    return base64.b64encode(ctx.serialize(save_secret_key=True)).decode()


def test_hostile_inputs_are_refused_audited_and_cost_nothing(sworld, applicants, columns_keys, row_keys):
    p, ag, mid = sworld.parties, sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    good = he.encrypt_columns(columns_keys.context, x)
    cut = he.encrypt_cutoffs(columns_keys.context, np.zeros(2))
    row_cut = he.encrypt_cutoffs(row_keys.context, np.zeros(1))
    small = he.make_ckks_context(poly_modulus_degree=4096, coeff_mod_bit_sizes=(40, 20, 40), scale_bits=20)
    short = he.make_ckks_context(coeff_mod_bit_sizes=(60, 40, 60))  # scores logits, too short for the mask
    bfv = he.make_bfv_context()
    cases = {
        "garbage base64 context": ("%%%", good, "columns", cut),
        "garbage context bytes": (base64.b64encode(b"\x00" * 5000).decode(), good, "columns", cut),
        "secret-key context": (_secret_context(columns_keys.context), good, "columns", cut),
        "N=4096 context": (he.public_context_b64(small, galois_keys=False), good, "columns", cut),
        "BFV context": (he.public_context_b64(bfv, galois_keys=False), good, "columns", cut),
        "row without rotation keys": (columns_keys.public, [he.encrypt_row(columns_keys.context, x[0])], "row",
                                      he.encrypt_cutoffs(columns_keys.context, np.zeros(1))),
        "garbage ciphertext": (columns_keys.public, ["AAAA" * 10] * len(good), "columns", cut),
        "ciphertext of another key set": (columns_keys.public, he.encrypt_columns(small, x), "columns", cut),
        "too few columns": (columns_keys.public, good[:-1], "columns", cut),
        "row with d-1 values": (row_keys.public, [he.encrypt_row(row_keys.context, x[0][:-1])], "row", row_cut),
        "garbage cut-off": (columns_keys.public, good, "columns", "AAAA" * 10),
        "cut-off of another key set": (columns_keys.public, good, "columns", he.encrypt_cutoffs(small, np.zeros(2))),
        "cut-off for 3 applicants": (columns_keys.public, good, "columns",
                                     he.encrypt_cutoffs(columns_keys.context, np.zeros(3))),
        "BFV cut-off": (columns_keys.public, good, "columns", he.encrypt_thresholds(bfv, np.zeros(2, dtype=int))),
        "row cut-off for 2 rows": (row_keys.public, [he.encrypt_row(row_keys.context, x[0])], "row",
                                   he.encrypt_cutoffs(row_keys.context, np.zeros(2))),
        "modulus too short for the mask": (he.public_context_b64(short, galois_keys=False),
                                           he.encrypt_columns(short, x), "columns",
                                           he.encrypt_cutoffs(short, np.zeros(2))),
        "decision without a cut-off": (columns_keys.public, good, "columns", None),
    }
    seen = set()
    for label, (context, cts, layout, cutoff) in cases.items():
        code, status, _ = codes(p.bank.score, mid, context, cts, layout, ag, cutoff=cutoff)
        assert status == 422 and code in {"CIPHERTEXT_INVALID", "INVALID_REQUEST"}, label
        seen.add(code)
    assert seen == {"CIPHERTEXT_INVALID", "INVALID_REQUEST"}
    assert codes(p.bank.score, mid, columns_keys.public, good, "columns", ag, cutoff=cut,
                 output="logit")[:2] == ("INVALID_REQUEST", 422)  # a logit takes no cut-off
    for body in ({"context": 5, "ciphertexts": good, "layout": "columns", "cutoff": cut},
                 {"context": columns_keys.public, "ciphertexts": "abc", "layout": "columns", "cutoff": cut},
                 {"context": columns_keys.public, "ciphertexts": good, "layout": "diagonal", "cutoff": cut},
                 {"context": columns_keys.public, "ciphertexts": good, "layout": "columns", "cutoff": cut,
                  "output": "probability"},
                 {"context": columns_keys.public, "ciphertexts": good, "layout": "columns", "cutoff": cut,
                  "weights": True}):
        assert codes(p.bank._json, "POST", f"/v1/models/{mid}/score", json=body)[:2] == ("INVALID_REQUEST", 422)
    huge = "A" * (p.service.settings.max_body_bytes + 1)
    r = httpx.post(f"{p.service.url}/v1/models/{mid}/score", content=huge,
                   headers={"Content-Type": "application/json", "Authorization": "Bearer x"}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    entries = _entries(sworld, "model.score")
    assert len(entries) == len(cases) + 1 + 5 and all(e["decision"] == "deny" for e in entries)
    too_large = _entries(sworld, "request.too_large")
    assert len(too_large) == 1 and too_large[0]["details"]["path"] == f"/v1/models/{mid}/score"
    assert _usage(sworld, ag, mid) == (0, 0)  # refused or failed: nothing counted
    # and the service still decides correctly
    out = bank_sdk.decide_applicants(p.bank, mid, x, 0.0, keys=columns_keys, agreement_id=ag)
    assert np.array_equal(out.decisions, sworld.logits(x) >= 0.0)


def test_validated_contexts_are_cached_per_bank_only(sworld, applicants, columns_keys):
    """A context validated for one bank is reused for that bank's next request, never for another bank; a
    context that fails validation is never cached."""
    from gateway.caches import ContextCache

    p = sworld.parties
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    other_bank = p.service.principal("another-bank", "bank")
    proposed = p.agreement("another-bank", accept=False)
    other_ag = other_bank.accept_agreement(proposed["id"])["id"]
    for client, ag in ((p.bank, sworld.agreement["id"]), (p.bank, sworld.agreement["id"]), (other_bank, other_ag)):
        bank_sdk.decide_applicants(client, sworld.model.id, x, 0.0, keys=columns_keys, agreement_id=ag)
    digest = "sha256:" + hashlib.sha256(columns_keys.public.encode()).hexdigest()
    holders = sorted(k[0] for k in p.service.ctx.caches.scoring_contexts._entries if k[3] == digest)
    assert holders == ["another-bank", "icbc-wuxi"]
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("invalid")

    cache = ContextCache(size=2)
    for _ in range(2):
        with pytest.raises(ValueError):
            cache.get(("bank", "x"), bad)
    assert calls == [1, 1] and not cache._entries


def test_the_scoring_grant_is_in_the_document_only_when_it_grants_something(sworld):
    """Defaults (decisions only, any layout) stay out of the canonical JSON, so documents written before the
    grant existed keep their hash; a grant is part of what the bank accepts, and of the hash."""
    from policies.agreements.document import AgreementDocument

    plain = sworld.parties.agreement("icbc-wuxi")
    granted = sworld.parties.agreement("icbc-wuxi", score_logits=True, score_layout="row")
    assert "score_logits" not in plain and "score_layout" not in plain
    assert granted["score_logits"] is True and granted["score_layout"] == "row"
    doc = AgreementDocument.model_validate({k: v for k, v in granted.items() if k in AgreementDocument.model_fields})
    assert doc.score_logits and doc.digest() == granted["document_hash"]
    default = doc.model_copy(update={"score_logits": False, "score_layout": "any"})
    assert "score_" not in default.canonical_json()
