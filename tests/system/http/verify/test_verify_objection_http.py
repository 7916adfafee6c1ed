"""Complaints and objections over real HTTP: the lifecycle, who reads and moves a complaint, and a person's
objection (filed by the owner on the person's behalf) suspending their checks until it is decided."""

from __future__ import annotations

import json

import pytest

from veilbox.client import ApiError


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


def test_objection_suspends_a_subjects_checks_until_decided(world):
    bank, owner, regulator = world.bank, world.owner, world.parties.regulator
    authority = world.parties.service.principal("data-authority", "authority")
    ag = world.agreement["id"]
    person, other = list(world.rows)[:2]

    def check(subject: str) -> dict:
        return bank.check("income_at_least", ag, subject, {"threshold": 1000}, consent_ref="consent-1")

    receipt_hash = check(person)["receipt"]  # checkable before the objection
    assert receipt_hash
    # the owner files the person's objection by the raw id: hashed with the product's key, never stored raw
    c = owner.file_complaint("subject", "the person objects to credit checks", kind="objection", subject=person)
    assert c["state"] == "open" and c["on_behalf"] and c["suspends_subject"] and c["owner"] == owner.me()["name"]
    assert c["subject_hash"].startswith("hs:") and person not in json.dumps(c)
    # the bank's check of that person is refused like any policy refusal: nothing names the objection
    code, status, details = codes(check, person)
    assert (code, status, details) == ("POLICY_DENIED", 403, [{"reason": "subject.unavailable"}])
    assert check(other)["result"] in (True, False)  # other people are unaffected
    # the refused check was audited under the same keyed hash as the objection, and nothing was metered for it
    entries = regulator.audit(limit=1000, action="verify.check")["entries"]
    assert [e["code"] for e in entries if e["subject_hash"] == c["subject_hash"]] == [None, "POLICY_DENIED"]
    # who reads it: the filer-owner, the authority and the regulator; the bank is told it does not exist
    assert codes(bank.complaint, c["id"])[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert bank.complaints() == []
    assert [x["id"] for x in regulator.complaints()] == [x["id"] for x in authority.complaints()] == [c["id"]]
    assert codes(regulator.move_complaint, c["id"], "investigate")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert owner.move_complaint(c["id"], "investigate")["state"] == "investigating"
    assert codes(check, person)[0] == "POLICY_DENIED"
    assert codes(authority.move_complaint, c["id"], "resolve")[:2] == ("INVALID_REQUEST", 422)  # reasons required
    done = authority.move_complaint(c["id"], "resolve", ["the credit checks stopped for this person"])
    assert done["state"] == "resolved" and not done["suspends_subject"]
    assert [h["state"] for h in done["history"]] == ["open", "investigating", "resolved"]
    assert check(person)["receipt"]  # resolution restores the checks
    # every change was audited with the hash only
    filed = regulator.audit(limit=1000, action="complaint.file")["entries"]
    assert len(filed) == 1 and filed[0]["subject_hash"] == c["subject_hash"] and person not in json.dumps(filed)
    resolves = regulator.audit(limit=1000, action="complaint.resolve")["entries"]
    assert [e["code"] for e in resolves] == ["INVALID_REQUEST", None]  # the refused attempt is audited too


def test_bank_complaint_on_an_agreement_routes_to_its_owner(world):
    bank, owner, regulator = world.bank, world.owner, world.parties.regulator
    ag = world.agreement["id"]
    c = bank.file_complaint("agreement", "answers were slow", target=ag)
    assert (c["kind"], c["owner"], c["filer"], c["state"]) == ("complaint", owner.me()["name"], "icbc-wuxi", "open")
    assert [x["id"] for x in owner.complaints(state="open")] == [c["id"]]
    # a bank names a subject only by its hash; regulators file nothing; strangers see nothing
    assert codes(bank.file_complaint, "subject", "x", kind="objection", subject="P0001", agreement_id=ag)[:2] == (
        "INVALID_REQUEST", 422)
    assert codes(regulator.file_complaint, "agreement", "x", target=ag)[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    stranger = world.parties.service.principal("other-bank", "bank")
    assert codes(stranger.file_complaint, "agreement", "x", target=ag)[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert codes(bank.move_complaint, c["id"], "reject", ["no"])[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    out = owner.move_complaint(c["id"], "reject", ["the service level was met"])
    assert out["state"] == "rejected" and out["history"][-1]["reasons"] == ["the service level was met"]
    assert codes(owner.move_complaint, c["id"], "investigate")[:2] == ("INVALID_REQUEST", 422)
