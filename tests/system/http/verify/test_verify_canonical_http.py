"""Verification keys are canonical, over real HTTP: quotas, the distinct-value cap, receipts and the audit hash
follow the subject and the values the check compares, never their spelling; every re-spelling is refused
(INVALID_REQUEST) for free, audited and padded; an encrypted batch names a subject once and every slot is a
new parameter value; a present and an absent subject differ in nothing but the verdict."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import ApiError

INT_RESPELLINGS = ["007", "7.0", "7e0", "+7", "0x7", " 7", "7 ", "7\n", "-0", "\uff17", "0007", "٧", 7.0, True,
                   "", 2**63, -(2**63) - 1, "9" * 20, [7], None]
STRING_RESPELLINGS = [" P0000001", "P0000001 ", "P0000001\n", "\uff30" + "0000001", "P0000001\u200b", 1, 1.0,
                      False, None]


def refused(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


def _entries(world, action: str = "verify.check") -> list[dict]:
    out = world.parties.regulator.audit(limit=1000, action=action)["entries"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def _head(world) -> int:
    entries = world.parties.regulator.audit(limit=1000)["entries"]
    return max((e["seq"] for e in entries), default=0)


def _since(world, seq: int) -> list[dict]:
    """The audit entries after ``seq`` (refusals before routing are audited under another action name)."""
    out = [e for e in world.parties.regulator.audit(since=seq, limit=1000)["entries"] if e["seq"] > seq]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def _usage(world, agreement_id: str) -> dict:
    return world.bank.usage(agreement_id)["totals"]


def _claims(world, receipt: str) -> dict:
    return bank_sdk.verify_receipt(receipt, world.bank.audit_public_key()["pem"])


def test_integer_subjects_have_one_spelling(people):
    """``7`` and ``"7"`` are one subject (one hash, one allowance); every other spelling is refused for free,
    audited, and leaves the counters as they were."""
    world, ag = people.world, people.agreements["people_with"]["id"]
    product = "people_with_income_at_least"
    before, seq = _usage(world, ag), _head(world)
    for spelling in INT_RESPELLINGS:
        code, status, details = refused(world.bank.check, product, ag, spelling, {"t": 1}, consent_ref="c")
        assert (code, status) == ("INVALID_REQUEST", 422), repr(spelling)
        if isinstance(spelling, str) and len(spelling.strip()) > 1:
            assert spelling not in json.dumps(details, ensure_ascii=False)  # never echoed
    denied = [e for e in _since(world, seq) if e["actor"] != "city-data-regulator"]
    assert _usage(world, ag) == before  # nothing metered
    assert len(denied) == len(INT_RESPELLINGS)  # each refusal audited
    assert all(e["decision"] == "deny" and e["code"] == "INVALID_REQUEST" and e["subject_hash"] is None
               for e in denied)
    # the canonical spellings: one subject, one allowance of 3 checks per day
    a = world.bank.check(product, ag, 7, {"t": 7000}, consent_ref="c")
    b = world.bank.check(product, ag, "7", {"t": 7000}, consent_ref="c")
    c = world.bank.check(product, ag, "7", {"t": 7000}, consent_ref="c")
    assert a["result"] is b["result"] is c["result"] is True
    hashes = {_claims(world, r["receipt"])["subject_hash"] for r in (a, b, c)}
    assert hashes == {world.parties.service.ctx.keys.subject_hash("7")}
    code, status, details = refused(world.bank.check, product, ag, 7, {"t": 7000}, consent_ref="c")
    assert (code, details[0]["reason"]) == ("QUOTA_EXCEEDED", "quota.verify_per_subject_per_day")
    allowed = [e for e in _entries(world) if e["decision"] == "allow"]
    assert {e["subject_hash"] for e in allowed} == hashes
    # negative and large canonical integers are subjects too (unknown here: "no")
    assert world.bank.check(product, ag, -5, {"t": 0}, consent_ref="c")["result"] is False
    assert world.bank.check(product, ag, str(2**63 - 1), {"t": 0}, consent_ref="c")["result"] is False


def test_string_subjects_are_matched_and_hashed_exactly(world):
    ag = world.agreement["id"]
    pid = next(iter(world.rows))
    before = _usage(world, ag)
    for spelling in STRING_RESPELLINGS:
        assert refused(world.bank.check, "income_at_least", ag, spelling, {"threshold": 1},
                       consent_ref="c")[:2] == ("INVALID_REQUEST", 422), repr(spelling)
    assert _usage(world, ag) == before
    # exact bytes: another case is another identifier, which no row holds ("no", metered on its own hash)
    lower = world.bank.check("income_at_least", ag, pid.lower(), {"threshold": 0}, consent_ref="c")
    exact = world.bank.check("income_at_least", ag, pid, {"threshold": 0}, consent_ref="c")
    assert lower["result"] is False and exact["result"] is True
    keys = world.parties.service.ctx.keys
    assert _claims(world, lower["receipt"])["subject_hash"] == keys.subject_hash(pid.lower())
    assert _claims(world, exact["receipt"])["subject_hash"] == keys.subject_hash(pid)


def test_parameter_spellings_are_one_value(world):
    """8000, 8000.0, "8000", "8e3" are one value for the distinct-value cap, the receipt and the audit entry;
    -0.0 is 0; NaN, infinities, bools, huge values and non-numeric text are refused for free."""
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 100,
                                                      "distinct_params_per_subject": 2})["id"]
    pid = next(iter(world.rows))
    before = _usage(world, ag)
    for bad in (True, 2**60, 1e300, "1e400", "8000 ", " 8000", "+8000", "0x1F40", "8_000", "８０００", "NaN",
                "Infinity", "", None, [8000], {"v": 8000}):
        assert refused(world.bank.check, "income_at_least", ag, pid, {"threshold": bad},
                       consent_ref="c")[:2] == ("INVALID_REQUEST", 422), repr(bad)
    for literal in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999"):  # JSON extensions Python accepts
        body = json.dumps({"agreement_id": ag, "subject": pid, "consent_ref": "c", "params": {"threshold": 0}})
        body = body.replace('"threshold": 0', f'"threshold": {literal}')
        r = world.bank._http.post("/v1/verifications/income_at_least/check", content=body,
                                  headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", literal
    assert _usage(world, ag) == before
    digests = set()
    for spelling in (8000, 8000.0, "8000", "8e3", "8000.000", "8.0E+3"):
        r = world.bank.check("income_at_least", ag, pid, {"threshold": spelling}, consent_ref="c")
        digests.add(_claims(world, r["receipt"])["params_digest"])
    assert len(digests) == 1
    zero = {_claims(world, world.bank.check("income_at_least", ag, pid, {"threshold": z},
                                            consent_ref="c")["receipt"])["params_digest"] for z in (0, -0.0, "-0")}
    assert len(zero) == 1  # the second distinct value: 0
    code, _, details = refused(world.bank.check, "income_at_least", ag, pid, {"threshold": 9000}, consent_ref="c")
    assert (code, details[0]["reason"]) == ("QUOTA_EXCEEDED", "quota.distinct_params_per_subject")
    # the audit entries carry the same digests (never the values)
    allowed = [e for e in _entries(world) if e["decision"] == "allow" and e["agreement_id"] == ag]
    assert {e["details"]["params_digest"] for e in allowed} == digests | zero
    # no entry carries the value in any spelling (digests are hex, so a token boundary never falls inside one)
    assert not re.search(r"(?<![0-9A-Za-z.+-])[+-]?8(?:000(?:\.0+)?|\.0*[eE]\+?3|[eE]\+?3)(?![0-9A-Za-z.])",
                         json.dumps(allowed))


def test_the_same_parameters_on_another_product_are_another_question(world):
    """The cap counts questions: one threshold asked of two products is two values (the digest names the
    product), and parameter-free products are not one shared value either."""
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 100,
                                                      "distinct_params_per_subject": 2})["id"]
    row = next(iter(world.rows.values()))
    world.owner.define_verification({"name": "tax_at_least", "dataset": "tax_income",
                                     "subject_column": "person_id", "predicate": "tax_paid >= :threshold",
                                     "params": {"threshold": "number"}})
    world.bank.check("income_at_least", ag, row["person_id"], {"threshold": 100}, consent_ref="c")
    world.bank.check("tax_at_least", ag, row["person_id"], {"threshold": 100}, consent_ref="c")
    assert refused(world.bank.check, "income_at_least", ag, row["person_id"], {"threshold": 5},
                   consent_ref="c")[0] == "QUOTA_EXCEEDED"


def test_encrypted_batches_name_each_subject_once(people):
    world, ag = people.world, people.agreements["people_with"]["id"]
    product = "people_with_income_at_least"
    keys = bank_sdk.verification_keys()
    before, seq = _usage(world, ag), _head(world)
    for subjects in ([7, "7"], [7, 8, 7], ["7", "007"], [7, 7.0], ["1", "2", "1"]):
        ct = he.encrypt_thresholds(keys.context, np.array([1] * len(subjects)))
        code, status, details = refused(world.bank.check_encrypted, product, ag, subjects, keys.public, ct,
                                        consent_ref="c")
        assert (code, status) == ("INVALID_REQUEST", 422) and details, subjects
    entries = [e for e in _since(world, seq) if e["actor"] != "city-data-regulator"]
    assert _usage(world, ag) == before
    assert len(entries) == 5 and all(e["decision"] == "deny" and e["code"] == "INVALID_REQUEST" for e in entries)
    # integer subjects in either canonical spelling, in one batch
    got, receipt = bank_sdk.check_thresholds(world.bank, product, ag, [7, "8", 99], [7000, 9000, 0],
                                             consent_ref="c", keys=keys)
    assert got == [True, False, False]
    assert _claims(world, receipt)["subjects"] == 3


def test_every_encrypted_slot_is_a_new_parameter_value(people):
    """One ciphertext sent again with the subjects in other slots asks each subject another threshold: every
    encrypted check uses one of each subject's distinct values, even for the same ciphertext."""
    world = people.world
    ag = world.parties.agreement("icbc-wuxi", datasets=["people_with"], columns={"people_with": ["income"]},
                                 quotas={"verify_per_subject_per_day": 100, "distinct_params_per_subject": 2})["id"]
    product = "people_with_income_at_least"
    keys = bank_sdk.verification_keys()
    ct = he.encrypt_thresholds(keys.context, np.array([3000, 12000]))
    first = world.bank.check_encrypted(product, ag, [5, 10], keys.public, ct, consent_ref="c")
    swapped = world.bank.check_encrypted(product, ag, [10, 5], keys.public, ct, consent_ref="c")
    # person 5 (income 5000) was asked "≥ 3000" and then "≥ 12000"; person 10 (10000) the other way round
    assert list(he.read_signs(keys.context, first["ciphertext"])[:2]) == [True, False]
    assert list(he.read_signs(keys.context, swapped["ciphertext"])[:2]) == [True, False]
    code, _, details = refused(world.bank.check_encrypted, product, ag, [5, 10], keys.public, ct, consent_ref="c")
    assert code == "QUOTA_EXCEEDED" and details[0]["reason"] == "quota.distinct_params_per_subject"


def test_a_present_and_an_absent_subject_differ_only_in_the_verdict(people):
    """Neighbouring registers (with and without person 7), the same question about person 7 under identical
    agreements: the same statuses, codes, receipt fields, quota counters and audit entries, but the verdict."""
    world = people.world
    keys = world.parties.service.ctx.keys

    def run(dataset: str) -> dict:
        ag = people.agreements[dataset]["id"]
        product = f"{dataset}_income_at_least"
        outcomes, receipts, seq = [], [], _head(world)
        for spelling, t in ((7, 5000), ("7", 5000), (7, 8000), (7, 9000)):
            try:
                r = world.bank.check(product, ag, spelling, {"t": t}, consent_ref="c")
                outcomes.append(("ok", sorted(r)))
                receipts.append(_claims(world, r["receipt"]))
            except ApiError as e:
                outcomes.append((e.code, e.status, e.details))
        for bad in ("007", 7.5):
            try:
                world.bank.check(product, ag, bad, {"t": 5000}, consent_ref="c")
            except ApiError as e:
                outcomes.append((e.code, e.status, e.details))
        audit = [e for e in _since(world, seq) if e["action"] == "verify.check"]
        return {"outcomes": outcomes, "receipts": receipts, "usage": _usage(world, ag), "audit": audit}

    present, absent = run("people_with"), run("people_without")
    assert present["outcomes"] == absent["outcomes"]
    assert present["outcomes"][3][:2] == ("QUOTA_EXCEEDED", 429)  # the 4th check, on both
    assert present["usage"] == absent["usage"]
    assert [r["result"] for r in present["receipts"]] == [True, True, False]
    assert [r["result"] for r in absent["receipts"]] == [False, False, False]
    for p, a in zip(present["receipts"], absent["receipts"], strict=True):
        assert set(p) == set(a)
        assert p["subject_hash"] == a["subject_hash"] == keys.subject_hash("7")
        differ = {k for k in p if p[k] != a[k]}
        assert differ <= {"result", "product", "agreement_id", "dataset_fingerprint", "params_digest", "nonce",
                          "issued_at", "certificate_id"}  # the product's certificate under its agreement
    assert len(present["audit"]) == len(absent["audit"]) == 6
    for p, a in zip(present["audit"], absent["audit"], strict=True):
        assert set(p) == set(a) and set(p["details"]) == set(a["details"])
        assert (p["decision"], p["code"], p["subject_hash"], p["action"]) == \
            (a["decision"], a["code"], a["subject_hash"], a["action"])
        assert p["details"]["status"] == a["details"]["status"]
        assert p["agreement_id"] == a["agreement_id"] is None or {p["agreement_id"], a["agreement_id"]} == \
            {people.agreements["people_with"]["id"], people.agreements["people_without"]["id"]}


def test_refusals_before_the_handler_are_padded_too(world, monkeypatch):
    """A body the schema refuses (a float subject, a missing field) is padded like an answer, as are canonical
    refusals and answers (`gateway.latency`; no timing asserted)."""
    from gateway import latency

    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)
    monkeypatch.setitem(world.parties.service.settings.__dict__, "latency_bucket_ms", 40)
    ag, seq = world.agreement["id"], _head(world)
    http = world.bank._http
    bodies = [{"agreement_id": ag, "subject": 7.0, "params": {"threshold": 1}, "consent_ref": "c"},
              {"agreement_id": ag, "subject": "P0000001", "params": {"threshold": 1}},
              {"agreement_id": ag, "subject": "P0000001 ", "params": {"threshold": 1}, "consent_ref": "c"},
              {"agreement_id": ag, "subject": "P0000001", "params": {"threshold": 1}, "consent_ref": "c"}]
    statuses = [http.post("/v1/verifications/income_at_least/check", json=b).status_code for b in bodies]
    enc = http.post("/v1/verifications/income_at_least/check-encrypted", json={"agreement_id": ag, "subjects": [1.5]})
    assert statuses == [422, 422, 422, 200] and enc.status_code == 422
    assert calls == [40] * 5
    denied = [e for e in _since(world, seq) if e["actor"] != "city-data-regulator" and e["decision"] == "deny"]
    assert len(denied) == 4
