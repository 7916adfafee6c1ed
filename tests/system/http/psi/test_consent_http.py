"""The consent registry (同意登记) over real HTTP, in a home that enforces it: the owner records consents (one by
one, and in bulk through ``veilbox consent import``), every personal-data check path — plain, encrypted,
anonymous, psi_members — refuses a use no registered consent covers before any data is read, a revocation takes
effect on the next call, a consent for a subject absent from the dataset behaves exactly like one for a present
subject, and the owner's subject-access report lists the person's consents and every use, by hash only."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from catalog import registry
from gateway.services.consent import set_enforced
from mpc import psi
from veilbox.cli import app
from veilbox.cli_consent import when
from veilbox.client import ApiError

UNTIL = when("+365")
ABSENT = "P9999999"  # in no dataset


def refusal(call, *a, **kw) -> tuple[str, int, str, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.message, e.value.details


def test_consents_are_recorded_enforced_revoked_and_reported(psi_world, tmp_path):
    service, owner, bank = psi_world.parties.service, psi_world.parties.owner, psi_world.bank
    set_enforced(service.ctx.engine, True)
    ag = psi_world.agreement["id"]
    present = sorted(psi_world.rows)[0]
    fingerprint = registry.get(service.ctx.engine, "tax_income").fingerprint
    assert ABSENT not in psi_world.rows
    products = ["income_at_least", "psi_members:tax_income"]
    c_present, c_absent = owner.record_consents("icbc-wuxi", "consumer loan application", products, UNTIL,
                                                subjects=[present, ABSENT])
    (c_psi_only,) = owner.record_consents("icbc-wuxi", "membership only", ["psi_members:tax_income"], UNTIL,
                                          subjects=[present])
    assert c_present["subject_hash"].startswith("hs:") and present not in json.dumps(c_present)
    assert [c["id"] for c in bank.consents()] == [c["id"] for c in owner.consents()]  # the grantee reads its own

    def check(subject: str, consent: str) -> dict:
        return bank.check("income_at_least", ag, subject, {"threshold": 1000}, consent_ref=consent)

    # plain checks: a covering consent answers (present or absent subject alike); anything else is refused
    assert check(present, c_present["id"])["receipt"]
    assert check(ABSENT, c_absent["id"])["receipt"]
    unknown = ("CONSENT_INVALID", 403)
    assert refusal(check, present, "consent/free-text")[:2] == unknown
    assert refusal(check, present, c_psi_only["id"])[3] == [{"index": 0, "reason": "consent.product"}]
    # the other person's consent: the same refusal whether the subject named is in the dataset or not
    assert refusal(check, present, c_absent["id"]) == refusal(check, ABSENT, c_present["id"])
    assert refusal(check, ABSENT, c_present["id"])[3] == [{"index": 0, "reason": "consent.subject"}]
    # encrypted checks: one registered consent per subject, checked before the context is even read
    enc = {"agreement_id": ag, "subjects": [present, ABSENT], "context": "AA==", "ciphertext": "AA==",
           "consent_ref": "batch-1"}
    r = bank._http.post("/v1/verifications/income_at_least/check-encrypted", json=enc)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "CONSENT_REQUIRED")
    r = bank._http.post("/v1/verifications/income_at_least/check-encrypted",
                        json={**enc, "consent_ids": [c_absent["id"], c_present["id"]]})  # swapped slots
    assert r.json()["error"]["details"] == [{"index": 0, "reason": "consent.subject"},
                                            {"index": 1, "reason": "consent.subject"}]
    r = bank._http.post("/v1/verifications/income_at_least/check-encrypted",
                        json={**enc, "consent_ids": [c_present["id"], c_absent["id"]]})
    assert r.json()["error"]["code"] == "CIPHERTEXT_INVALID"  # consents pass; the bogus ciphertext is next
    # psi_members: one distinct registered consent per blinded id (the ids are checked; the subjects are not seen),
    # refused before the dataset's PSI set is built
    members = {"agreement_id": ag, "dataset": "tax_income", "dataset_fingerprint": fingerprint,
               "elements": base64.b64encode(b"".join(psi.MembersClient().blind([present, ABSENT]))).decode()}
    for refs, reason in ((["free-text", "x"], "consent.unknown"), ([c_psi_only["id"]] * 2, "consent.repeated")):
        r = bank._http.post("/v1/psi/members", json={**members, "consent_refs": refs})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "CONSENT_INVALID")
        assert r.json()["error"]["details"][-1] == {"index": 1, "reason": reason}
    # anonymous checks: the consent's grantee, product and time, before the bucket layout is built
    anon = {"agreement_id": ag, "bucket_bits": 0, "bucket": 0, "element": base64.b64encode(bytes(32)).decode(),
            "params": {"threshold": 1000}}
    for ref, reason in (("free-text", "consent.unknown"), (c_psi_only["id"], "consent.product")):
        r = bank._http.post("/v1/verifications/income_at_least/check-anonymous", json={**anon, "consent_ref": ref})
        assert (r.status_code, r.json()["error"]["details"]) == (403, [{"index": 0, "reason": reason}])
    # revocation takes effect on the next call, for a present and an absent subject alike
    assert refusal(bank.revoke_consent, c_present["id"], "no")[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    revoked = owner.revoke_consent(c_present["id"], "the person withdrew consent at the branch")
    owner.revoke_consent(c_absent["id"], "the person withdrew consent at the branch")
    assert revoked["state"] == "revoked"
    assert refusal(check, present, c_present["id"])[1:] == refusal(check, ABSENT, c_absent["id"])[1:]
    assert refusal(check, present, c_present["id"])[3] == [{"index": 0, "reason": "consent.revoked"}]
    # bulk import through the CLI: raw ids in a CSV, batches to the gateway, nothing raw stored or audited
    people = sorted(psi_world.rows)[1:1002]
    (tmp_path / "ids.csv").write_text("person_id\n" + "\n".join(people) + "\n")
    env = {"VEILBOX_URL": service.url, "VEILBOX_TOKEN": owner._http.headers["Authorization"].split()[1]}
    run = CliRunner().invoke(app, ["consent", "import", str(tmp_path / "ids.csv"), "--grantee", "icbc-wuxi",
                                   "--scenario", "bulk loan campaign", "--product", "income_at_least",
                                   "--until", "+30", "--json"], env=env)
    assert run.exit_code == 0, run.output
    imported = json.loads(run.stdout)
    assert imported["recorded"] == 1001 and len(set(imported["ids"])) == 1001  # two batches
    assert check(people[-1], imported["ids"][-1])["receipt"]
    records = psi_world.parties.regulator.audit(limit=1000, action="consent.record")["entries"]
    assert len(records) == 4 and not any(p in json.dumps(records) for p in (present, ABSENT, people[0]))
    # the owner's subject-access report: consents and every use, by hash, outcomes without values
    report = owner.subject_access(present)
    assert owner._http.get("/v1/consents/subject-access", params={"subject": present}).json() == report  # GET too
    assert report["subject_hash"] == c_present["subject_hash"] and present not in json.dumps(report)
    assert {c["id"] for c in report["consents"]} == {c_present["id"], c_psi_only["id"]}
    uses = [(u["action"], u["code"]) for u in report["uses"]]
    assert ("verify.check", None) in uses and ("verify.check", "CONSENT_INVALID") in uses
    assert ("verify.check_encrypted", "CONSENT_INVALID") in uses  # found among the encrypted check's subjects
    # anonymous checks and psi_members never see the subject: they are found by the consent ids they named
    assert {("verify.check_anonymous", "CONSENT_INVALID"), ("psi.members", "CONSENT_INVALID")} <= set(uses)
    assert all(set(u) >= {"ts", "actor", "decision"} and "result" not in u for u in report["uses"])
    assert refusal(bank.subject_access, present)[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    with pytest.raises(ApiError) as naive:  # a time without its zone is an invalid request, never a 500
        owner.record_consents("icbc-wuxi", "x", products, "2027-03-03", subjects=[present])
    assert naive.value.status == 422 and naive.value.code == "INVALID_REQUEST"
