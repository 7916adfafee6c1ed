"""Anonymous verification (匿踪查询) over real HTTP: the bank learns its subject's verdict, the service a bucket of
at least k subjects; quotas per bucket; the audit entry and the receipt name no subject; hostile messages refused."""

from __future__ import annotations

import base64
import json

import pytest

from mpc import psi
from mpc.psi import group
from tests.system.http.psi.conftest import K, Recording
from veilbox import bank as bank_sdk
from veilbox.client import ApiError, Client


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


def _subjects_in_distinct_buckets(world, n: int) -> list[str]:
    info = world.bank._http.get("/v1/verifications/income_at_least/anonymous").json()
    seen, out = set(), []
    for pid in sorted(world.rows):
        b = psi.bucket_of(pid, info["bucket_bits"])
        if b not in seen:
            seen.add(b)
            out.append(pid)
        if len(out) == n:
            break
    return out


def test_the_bank_learns_its_subject_verdict_and_the_service_a_bucket(psi_world):
    """Claims: the verdict equals the plain check's; the request carries no subject (nor its hash); the bucket
    holds at least k subjects; the audit entry records product, bucket size and parameters' digest, never a
    subject; the receipt carries no subject and no result."""
    w = psi_world
    ag = w.agreement["id"]
    token = w.bank._http.headers["Authorization"].split()[1]
    rec = Recording()
    bank = Client(w.bank.url, token, transport=rec)
    w.parties.service.clients.append(bank)  # closed with the service
    subjects = _subjects_in_distinct_buckets(w, 4)
    for pid in subjects:
        threshold = w.rows[pid]["monthly_income"] - 1 if pid == subjects[0] else 8000
        ans = bank_sdk.check_anonymous(bank, "income_at_least", ag, pid, {"threshold": threshold},
                                       consent_ref="consent-anon-1")
        plain = w.bank.check("income_at_least", ag, pid, {"threshold": threshold}, consent_ref="consent-anon-1")
        assert ans.present and ans.result is plain["result"]
        assert ans.bucket_size >= K
        claims = bank_sdk.verify_receipt(ans.receipt, w.bank.audit_public_key()["pem"])
        assert claims["kind"] == "verification.anonymous" and "result" not in claims
        assert "subject_hash" not in claims and claims["bucket_size"] == ans.bucket_size
    sent = b"".join(rec.bodies)
    for pid in subjects:
        assert pid.encode() not in sent
    entries = [e for e in w.parties.regulator.audit(limit=1000, action="verify.check_anonymous")["entries"]]
    assert len(entries) == 4
    for e in entries:
        d = e["details"] if isinstance(e["details"], dict) else json.loads(e["details"])
        assert e["subject_hash"] is None and d["bucket_size"] >= K and d["params_digest"].startswith("sha256:")
        assert d["product"] == "income_at_least"
    dump = json.dumps(entries)
    plain_hashes = {e["subject_hash"] for e in w.parties.regulator.audit(limit=1000, action="verify.check")["entries"]}
    for pid in subjects:
        assert pid not in dump
    assert not any(h and h in dump for h in plain_hashes)
    bank.close()


def test_an_unknown_subject_opens_no_label(psi_world):
    ans = bank_sdk.check_anonymous(psi_world.bank, "income_at_least", psi_world.agreement["id"], "NOBODY-1",
                                   {"threshold": 1}, consent_ref="c")
    assert ans.present is False and ans.result is False and ans.bucket_size >= K


def test_quotas_count_per_bucket(psi_world):
    """verify_per_subject_per_day = 3 and distinct_params_per_subject = 2 apply to the bucket: two subjects of one
    bucket share them."""
    w = psi_world
    ag = w.agreement["id"]
    info = w.bank._http.get("/v1/verifications/income_at_least/anonymous").json()
    first = sorted(w.rows)[0]
    bucket = psi.bucket_of(first, info["bucket_bits"])
    same = [p for p in sorted(w.rows) if psi.bucket_of(p, info["bucket_bits"]) == bucket][:4]
    bank_sdk.check_anonymous(w.bank, "income_at_least", ag, same[0], {"threshold": 1000}, consent_ref="c")
    bank_sdk.check_anonymous(w.bank, "income_at_least", ag, same[1], {"threshold": 2000}, consent_ref="c")
    code, _, _ = codes(bank_sdk.check_anonymous, w.bank, "income_at_least", ag, same[2],
                             {"threshold": 3000}, consent_ref="c")
    assert code == "QUOTA_EXCEEDED"
    bank_sdk.check_anonymous(w.bank, "income_at_least", ag, same[2], {"threshold": 2000}, consent_ref="c")
    code, _, _ = codes(bank_sdk.check_anonymous, w.bank, "income_at_least", ag, same[3], {"threshold": 1000},
                       consent_ref="c")
    assert code == "QUOTA_EXCEEDED"
    other = next(p for p in sorted(w.rows) if psi.bucket_of(p, info["bucket_bits"]) != bucket)
    assert bank_sdk.check_anonymous(w.bank, "income_at_least", ag, other, {"threshold": 1000},
                                    consent_ref="c").present


def test_anonymous_checks_need_the_grant(psi_world):
    w = psi_world
    plain_only = w.agreement_with(["verify"])["id"]
    code, _, _ = codes(bank_sdk.check_anonymous, w.bank, "income_at_least", plain_only, sorted(w.rows)[0],
                       {"threshold": 1}, consent_ref="c")
    assert code == "POLICY_DENIED"


def test_hostile_anonymous_messages(psi_world):
    w = psi_world
    ag = w.agreement["id"]
    info = w.bank._http.get("/v1/verifications/income_at_least/anonymous").json()
    good = base64.b64encode(psi.AnonClient().request("P1")).decode()
    base = {"agreement_id": ag, "bucket_bits": info["bucket_bits"], "bucket": 0, "element": good,
            "params": {"threshold": 1}, "consent_ref": "c"}
    usage = w.bank.usage(ag)
    cases = [
        ({**base, "element": base64.b64encode(b"\xff" * 32).decode()}, "CIPHERTEXT_INVALID"),
        ({**base, "element": base64.b64encode(b"\x01" * 31).decode()}, "CIPHERTEXT_INVALID"),
        ({**base, "element": base64.b64encode(group.join([b"\x02" * 32] * 2)).decode()}, "INVALID_REQUEST"),
        ({**base, "element": "%%%"}, "CIPHERTEXT_INVALID"),
        ({**base, "bucket_bits": info["bucket_bits"] + 1}, "INVALID_REQUEST"),
        ({**base, "bucket": info["buckets"]}, "INVALID_REQUEST"),
        ({**base, "bucket": -1}, "INVALID_REQUEST"),
        ({**base, "params": {"threshold": "NaN"}}, "INVALID_REQUEST"),
        ({**base, "consent_ref": ""}, "INVALID_REQUEST"),
        ({**base, "bucket": "0"}, "INVALID_REQUEST"),
    ]
    for body, want in cases:
        r = w.bank._http.post("/v1/verifications/income_at_least/check-anonymous", json=body)
        assert 400 <= r.status_code < 500, body
        assert r.json()["error"]["code"] == want, (body, r.json())
    assert w.bank.usage(ag) == usage


def test_too_few_subjects_have_no_anonymous_form(psi_world, tmp_path):
    """A dataset with fewer than k subjects is refused (POLICY_DENIED), never answered from a small bucket."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    w = psi_world
    directory = w.parties.service.settings.import_roots[-1] / "city-tax-bureau"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "few.parquet"
    pq.write_table(pa.table({"pid": pa.array(list(range(1, 21)), pa.int64()),
                             "income": [1000.0 * i for i in range(1, 21)]}), path)
    w.parties.owner.register_dataset({"name": "few", "source": str(path), "grade": "general", "personal": True,
                                      "columns": {"pid": {"role": "id"},
                                                  "income": {"role": "measure", "bounds": [0, 100000]}}})
    w.parties.owner.define_verification({"name": "few_income", "dataset": "few", "subject_column": "pid",
                                         "predicate": "income >= :t", "params": {"t": "number"}})
    r = w.bank._http.get("/v1/verifications/few_income/anonymous")
    assert r.status_code == 403 and r.json()["error"]["code"] == "POLICY_DENIED"


def test_an_agreement_may_ask_for_larger_buckets(psi_world):
    """k is the service's setting or the agreement's anon_min_bucket when larger; the term is left out of the
    canonical document when unset (older documents keep their hash)."""
    w = psi_world
    ag = w.agreement_with(["verify_anonymous"], anon_min_bucket=4 * K)
    plain = w.bank._http.get("/v1/verifications/income_at_least/anonymous").json()
    larger = w.bank._http.get("/v1/verifications/income_at_least/anonymous",
                              params={"agreement_id": ag["id"]}).json()
    assert plain["min_bucket"] == K and larger["min_bucket"] == 4 * K
    assert larger["bucket_bits"] < plain["bucket_bits"]
    ans = bank_sdk.check_anonymous(w.bank, "income_at_least", ag["id"], sorted(w.rows)[5], {"threshold": 1},
                                   consent_ref="c")
    assert ans.present and ans.bucket_size >= 4 * K
    from policies.agreements.document import AgreementDocument

    doc = AgreementDocument.model_validate({
        "title": "t", "grantee": "icbc-wuxi", "datasets": ["tax_income"], "columns": {"tax_income": ["age"]},
        "job_kinds": ["verify"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
        "budget": {"epsilon": 1}})
    assert "anon_min_bucket" not in doc.as_json()
    assert doc.model_copy(update={"anon_min_bucket": 2048}).as_json()["anon_min_bucket"] == 2048
