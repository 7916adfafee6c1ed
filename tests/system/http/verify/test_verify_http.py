"""Verification products over real HTTP: define, list, check; only a bit and a receipt leave; unknown subjects
look like a "no"; quotas stop repetition and threshold search; every call is audited with the hashed subject."""

from __future__ import annotations

import base64
import json
import re

import pytest

from cryptosuite import suite_of
from tests.conftest import BOTH_SUITES, ON_SQLITE
from veilbox import bank as bank_sdk
from veilbox.client import ApiError


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


def _entries(world, action: str) -> list[dict]:
    out = world.parties.regulator.audit(limit=1000, action=action)["entries"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def _some(world, n: int = 3) -> list[dict]:
    return list(world.rows.values())[:n]


def test_owner_defines_products_everyone_reads_them(world, product_specs):
    INCOME_AT_LEAST = product_specs["income_at_least"]
    items = {p["name"]: p for p in world.bank.verifications()}
    assert set(items) >= {"income_at_least", "declared_income", "insured_months_at_most", "is_registered"}
    p = world.bank.verification("income_at_least")
    assert p["columns"] == ["monthly_income"] and p["params"] == {"threshold": "number"}
    assert p["encrypted_form"] == {"column": "monthly_income", "op": ">=", "param": "threshold",
                                   "threshold_bounds": [0, 200000], "bank_encrypts": "t"}
    assert world.bank.verification("insured_months_at_most")["encrypted_form"]["op"] == "<="
    assert world.bank.verification("declared_income")["encrypted_form"] is None
    # only owners define, only over their own data; names are unique
    assert codes(world.bank.define_verification, {**INCOME_AT_LEAST, "name": "x"})[:2] == ("POLICY_DENIED", 403)
    other = world.parties.service.principal("water-co", "owner")
    assert codes(other.define_verification, {**INCOME_AT_LEAST, "name": "x"})[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert codes(world.owner.define_verification, INCOME_AT_LEAST)[:2] == ("ALREADY_EXISTS", 409)
    assert codes(world.bank.verification, "nope")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)


@ON_SQLITE
def test_predicates_are_vetted_like_sql_with_every_violation_reported(world, product_specs):
    INCOME_AT_LEAST = product_specs["income_at_least"]
    bad = {**INCOME_AT_LEAST, "name": "sneaky", "params": {"threshold": "number", "unused": "string"},
           "predicate": "monthly_income >= :threshold AND id_number = '1' OR upper(district) = 'X' "
                        "OR monthly_income IN (SELECT 1) OR :other > 1 OR person_id = 'P1'"}
    code, status, details = codes(world.owner.define_verification, bad)
    assert (code, status) == ("QUERY_REJECTED", 422)
    rules = {d["rule"] for d in details}
    assert rules >= {"column.role", "function.not_allowed", "node.not_allowed", "param.undeclared", "param.unused",
                     "column.subject"}
    assert all(set(d) == {"rule", "at", "hint"} for d in details)
    for predicate in ("1; DROP TABLE tax_income", "SELECT monthly_income FROM tax_income", "monthly_income",
                      "read_csv('/etc/passwd') IS NOT NULL", "monthly_income >= (SELECT MAX(monthly_income) "
                                                                  "FROM tax_income)"):
        assert codes(world.owner.define_verification, {**bad, "predicate": predicate, "params": {}})[0] \
            == "QUERY_REJECTED"
    bad_subject = {**INCOME_AT_LEAST, "name": "by_district", "subject_column": "district"}
    assert codes(world.owner.define_verification, bad_subject)[0] == "INVALID_REQUEST"
    assert "sneaky" not in {p["name"] for p in world.bank.verifications()}
    refused = [e for e in _entries(world, "verify.define") if e["decision"] == "deny"]
    assert len(refused) >= 7


def test_check_answers_the_truth_and_nothing_else(world):
    ag = world.agreement["id"]
    for row in _some(world, 4):
        income = row["monthly_income"]
        for t in (income - 0.01, income, income + 0.01):
            r = world.bank.check("income_at_least", ag, row["person_id"], {"threshold": round(t, 2)},
                                 consent_ref="consent-001")
            assert set(r) == {"result", "receipt", "certificate_id"}  # the product's certificate under ag
            assert r["result"] is (income >= round(t, 2))
    row = _some(world, 5)[4]
    r = world.bank.check("declared_income", ag, row["person_id"],
                         {"declared": row["monthly_income"] * 1.05, "tolerance": 0.1}, consent_ref="c")
    assert r["result"] is True
    r = world.bank.check("is_registered", ag, row["id_number"], consent_ref="c")
    assert r["result"] is True


@ON_SQLITE
def test_unknown_subject_looks_like_a_no(world):
    """Same status, same keys, same receipt shape and length; the same metering."""
    ag = world.agreement["id"]
    poor = next(r for r in world.rows.values() if r["monthly_income"] < 100_000)
    known = world.bank.check("income_at_least", ag, poor["person_id"], {"threshold": 199_999},
                             consent_ref="consent-001")
    unknown = world.bank.check("income_at_least", ag, "P9999999", {"threshold": 199_999},
                               consent_ref="consent-001")
    assert known["result"] is False and unknown["result"] is False
    assert set(known) == set(unknown) and len(known["receipt"]) == len(unknown["receipt"])
    pem = world.bank.audit_public_key()["pem"]
    a, b = bank_sdk.verify_receipt(known["receipt"], pem), bank_sdk.verify_receipt(unknown["receipt"], pem)
    assert set(a) == set(b) and a["result"] is False and b["result"] is False
    assert {k for k in a if a[k] != b[k]} == {"subject_hash", "nonce", "issued_at"}
    # both are metered per subject: the unknown one runs out exactly like a known one
    for _ in range(2):
        world.bank.check("income_at_least", ag, "P9999999", {"threshold": 199_999}, consent_ref="consent-001")
    assert codes(world.bank.check, "income_at_least", ag, "P9999999", {"threshold": 199_999},
                 consent_ref="consent-001")[:2] == ("QUOTA_EXCEEDED", 429)


@BOTH_SUITES
def test_receipts_verify_and_tampering_is_detected(world, crypto_suite):
    suite = suite_of(crypto_suite)
    row = _some(world, 1)[0]
    r = world.bank.check("income_at_least", world.agreement["id"], row["person_id"], {"threshold": 1000},
                         consent_ref="consent-xyz")
    pem = world.bank.audit_public_key()["pem"]
    claims = bank_sdk.verify_receipt(r["receipt"], pem)  # the SDK learns Ed25519 or SM2 from the key
    assert claims["product"] == "income_at_least" and claims["agreement_id"] == world.agreement["id"]
    assert claims["result"] is True and claims["subject_hash"].startswith("hs:")
    assert claims["key_id"].startswith(suite.signature_name + ":")
    assert claims["consent_digest"] == suite.digest(b"consent-xyz")  # digests are the suite's hash
    other = suite_of("sm" if crypto_suite == "intl" else "intl").new_signing_key().public.pem
    with pytest.raises(ValueError):  # a key of the other suite never verifies it
        bank_sdk.verify_receipt(r["receipt"], other)
    assert row["person_id"] not in r["receipt"]
    tag, payload, sig = r["receipt"].split(".")
    forged = bank_sdk._unb64url(payload).replace(b'"result":true', b'"result":false')
    assert forged != bank_sdk._unb64url(payload)
    forged_b64 = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    with pytest.raises(ValueError):
        bank_sdk.verify_receipt(".".join([tag, forged_b64, sig]), pem)
    with pytest.raises(ValueError):
        bank_sdk.verify_receipt("garbage", pem)


def test_threshold_search_is_capped_by_distinct_parameter_values(world):
    """A bank binary-searching one person's income gets distinct_params_per_subject answers, then 429."""
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 100,
                                                      "distinct_params_per_subject": 3})
    target = _some(world, 1)[0]
    lo, hi, answers = 0, 200_000, 0
    with pytest.raises(ApiError) as e:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            yes = world.bank.check("income_at_least", ag["id"], target["person_id"], {"threshold": mid},
                                   consent_ref="c")["result"]
            lo, hi = (mid, hi) if yes else (lo, mid)
            answers += 1
    assert e.value.code == "QUOTA_EXCEEDED" and answers == 3
    assert e.value.details[0]["reason"] == "quota.distinct_params_per_subject"
    assert hi - lo > 20_000  # three bits of 200 000 learned, not the income
    # repeating an already-used value is not a new value (but counts as a check)
    world.bank.check("income_at_least", ag["id"], target["person_id"], {"threshold": 100_000}, consent_ref="c")
    # another subject has its own allowance
    other = _some(world, 2)[1]
    world.bank.check("income_at_least", ag["id"], other["person_id"], {"threshold": 1}, consent_ref="c")


@ON_SQLITE
def test_who_may_check(world):
    ag = world.agreement["id"]
    pid = _some(world, 1)[0]["person_id"]
    args = ("income_at_least", ag, pid, {"threshold": 1})
    # the operator's agreement (not a bank), an agreement without `verify`, a column outside the agreement
    op_ag = world.parties.agreement("risk-lab")
    assert codes(world.parties.operator.check, "income_at_least", op_ag["id"], pid, {"threshold": 1},
                 consent_ref="c")[:2] == ("POLICY_DENIED", 403)
    no_verify = world.parties.agreement("icbc-wuxi", job_kinds=["score"])
    code, _, details = codes(world.bank.check, "income_at_least", no_verify["id"], pid, {"threshold": 1},
                             consent_ref="c")
    assert code == "POLICY_DENIED" and {d["reason"] for d in details} == {"job_kind.not_allowed"}
    narrow = world.parties.agreement("icbc-wuxi", columns={"tax_income": ["district", "age"]})
    code, _, details = codes(world.bank.check, "income_at_least", narrow["id"], pid, {"threshold": 1},
                             consent_ref="c")
    assert code == "POLICY_DENIED" and details[0]["reason"] == "column.outside_agreement"
    # personal data needs a consent reference; another bank cannot use this agreement
    code, _, details = codes(world.bank.check, *args, consent_ref="   ")
    assert code == "POLICY_DENIED" and details[0]["reason"] == "consent.missing"
    other_bank = world.parties.service.principal("another-bank", "bank")
    assert codes(other_bank.check, *args, consent_ref="c")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    # suspended agreement
    world.owner.suspend_agreement(ag)
    assert codes(world.bank.check, *args, consent_ref="c")[:2] == ("AGREEMENT_INACTIVE", 403)


def test_bad_parameters_and_subjects_are_refused_without_cost(world):
    ag = world.agreement["id"]
    pid = _some(world, 1)[0]["person_id"]
    for params in ({}, {"threshold": "8000 "}, {"threshold": True}, {"threshold": 1, "x": 2},
                   {"threshold": 1e300}, {"threshold": "0x10"}, {"threshold": "NaN"}, {"threshold": None}):
        assert codes(world.bank.check, "income_at_least", ag, pid, params, consent_ref="c")[0] == "INVALID_REQUEST"
    assert codes(world.bank.check, "insured_months_at_most", ag, pid, {"n": 1.5}, consent_ref="c")[0] \
        == "INVALID_REQUEST"
    for subject in ("", "P1' OR '1'='1", "x" * 500, "a b"):
        assert codes(world.bank.check, "income_at_least", ag, subject, {"threshold": 1}, consent_ref="c")[0] \
            == "INVALID_REQUEST"
    # none of that used the subject's allowance
    for _ in range(3):
        world.bank.check("income_at_least", ag, pid, {"threshold": 1}, consent_ref="c")


def test_every_check_is_audited_with_the_hashed_subject_only(world):
    ag = world.agreement["id"]
    row = _some(world, 1)[0]
    world.bank.check("income_at_least", ag, row["person_id"], {"threshold": 8123}, consent_ref="consent-77")
    world.bank.check("is_registered", ag, row["id_number"], consent_ref="consent-77")
    codes(world.bank.check, "income_at_least", ag, row["person_id"], {"threshold": "x"}, consent_ref="c")
    entries = _entries(world, "verify.check")
    assert len(entries) == 3
    ok = [e for e in entries if e["decision"] == "allow"]
    assert len(ok) == 2 and all(e["subject_hash"].startswith("hs:") for e in entries)
    assert all(e["output_digest"].startswith("sha256:") and e["agreement_id"] == ag for e in ok)
    assert ok[0]["details"]["product"] == "income_at_least" and ok[0]["dataset"] == "tax_income"
    dump = json.dumps(world.parties.regulator.audit(limit=1000))
    for raw in (row["person_id"], row["id_number"], "consent-77", "8123"):
        # as a value of its own: a hex digest or a timestamp may contain the digits 8123 by chance
        assert not re.search(rf"(?<![0-9A-Za-z]){re.escape(raw)}(?![0-9A-Za-z])", dump), raw


@ON_SQLITE
def test_answers_and_refusals_are_padded_to_the_latency_bucket(world, monkeypatch):
    """Known, unknown and refused checks all pass through the padding (`gateway.latency`; no timing asserted)."""
    from gateway import latency

    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)
    monkeypatch.setitem(world.parties.service.settings.__dict__, "latency_bucket_ms", 50)
    ag = world.agreement["id"]
    world.bank.check("income_at_least", ag, _some(world, 1)[0]["person_id"], {"threshold": 1}, consent_ref="c")
    world.bank.check("income_at_least", ag, "P9999999", {"threshold": 1}, consent_ref="c")
    codes(world.parties.operator.check, "income_at_least", ag, "P9999999", {"threshold": 1}, consent_ref="c")
    assert calls == [50, 50, 50]
