"""PSI over real HTTP: psi_size (noisy, charged), psi_members (granted, consented), hostile messages refused with
stable codes before anything is metered or charged, and no bank id ever leaves the bank in clear."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from mpc.psi import group
from tests.system.http.psi.conftest import Recording
from veilbox import bank as bank_sdk
from veilbox.client import ApiError, Client


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


def _ids(world, present: int, absent: int) -> tuple[list[str], list[str]]:
    known = sorted(world.rows)[:present]
    unknown = [f"X{i:07d}" for i in range(absent)]
    return known, unknown


def _entries(world, action: str) -> list[dict]:
    out = world.parties.regulator.audit(limit=1000, action=action)["entries"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def _spent(world, ag: str) -> float:
    return float(world.bank.budget(ag)["epsilon_spent"])


def test_psi_size_releases_a_noisy_count_charges_epsilon_and_names_no_id(psi_world):
    """Claims: the service never receives a bank id in clear; the size is released with discrete Laplace noise
    calibrated to ε and charged on the ledger; the receipt and the audit entry name no id."""
    w = psi_world
    ag = w.agreement["id"]
    known, unknown = _ids(w, 40, 25)
    token = w.bank._http.headers["Authorization"].split()[1]
    rec = Recording()
    bank = Client(w.bank.url, token, transport=rec)
    w.parties.service.clients.append(bank)  # closed with the service
    before = _spent(w, ag)
    out = bank_sdk.psi_size(bank, ag, "tax_income", known + unknown, epsilon=2)
    assert abs(out.size - 40) <= 3 * out.accuracy_95 + 1
    assert out.epsilon == "2"
    assert _spent(w, ag) == pytest.approx(before + 2)
    claims = bank_sdk.verify_receipt(out.receipt, w.bank.audit_public_key()["pem"])
    assert claims["kind"] == "psi.size" and claims["size"] == out.size and claims["bank_ids"] == 65
    assert [(s["dataset"], s["owner"]) for s in out.source] == [("tax_income", "city-tax-bureau")]  # attribution
    # a second list reuses the setup
    again = bank_sdk.psi_size(bank, ag, "tax_income", unknown, epsilon=1, session=out.session)
    assert abs(again.size) <= 3 * again.accuracy_95 + 1
    sent = b"".join(rec.bodies)
    for i in known + unknown:
        assert i.encode() not in sent
        assert base64.b64encode(group.hash_to_curve(i.encode(), b"size")) not in sent
    entries = [e for e in _entries(w, "psi.size") if e["decision"] == "allow"]
    assert len(entries) == 2 and entries[0]["epsilon"] == "2" and entries[0]["details"]["bank_ids"] == 65
    dump = json.dumps(w.parties.regulator.audit(limit=1000))
    for i in known:
        assert i not in dump
    bank.close()


def test_psi_size_is_never_the_exact_count_every_time(psi_world):
    """Noise is drawn per release: repeated releases of the same list are not all equal to the exact size."""
    w = psi_world
    ag = w.agreement["id"]
    known, _ = _ids(w, 10, 0)
    session = None
    sizes = []
    for _ in range(6):
        out = bank_sdk.psi_size(w.bank, ag, "tax_income", known, epsilon=0.2, session=session)
        session = out.session
        sizes.append(out.size)
    assert len(set(sizes)) > 1


def test_psi_members_finds_the_present_ids_under_the_grant(psi_world):
    w = psi_world
    ag = w.agreement["id"]
    known, unknown = _ids(w, 15, 15)
    token = w.bank._http.headers["Authorization"].split()[1]
    rec = Recording()
    bank = Client(w.bank.url, token, transport=rec)
    w.parties.service.clients.append(bank)  # closed with the service
    got = bank_sdk.psi_members(bank, ag, "tax_income", unknown + known, consent_refs="consent-2026-psi")
    assert sorted(got) == sorted(known)
    sent = b"".join(rec.bodies)
    assert not any(i.encode() in sent for i in known + unknown)
    bank.close()
    entries = [e for e in _entries(w, "psi.members") if e["decision"] == "allow"]
    assert entries and entries[-1]["details"]["bank_ids"] == 30 and entries[-1]["subject_hash"] is None


def test_psi_members_needs_the_grant_and_consent(psi_world):
    w = psi_world
    only_size = w.agreement_with(["psi_size"])["id"]
    known, _ = _ids(w, 3, 0)
    code, status, details = codes(bank_sdk.psi_members, w.bank, only_size, "tax_income", known, consent_refs="c")
    assert (code, status) == ("POLICY_DENIED", 403)
    assert any(d.get("reason") == "job_kind.not_allowed" or "job_kind" in json.dumps(d) for d in details)
    # personal dataset: one consent reference per id
    code, _, _ = codes(bank_sdk.psi_members, w.bank, w.agreement["id"], "tax_income", known)
    assert code == "INVALID_REQUEST"
    code, _, _ = codes(bank_sdk.psi_members, w.bank, w.agreement["id"], "tax_income", known,
                       consent_refs=["c1", "c2"])
    assert code == "INVALID_REQUEST"
    only_members = w.agreement_with(["psi_members"])["id"]
    code, _, _ = codes(bank_sdk.psi_size, w.bank, only_members, "tax_income", known, epsilon=1)
    assert code == "POLICY_DENIED"


def test_hostile_messages_are_refused_with_stable_codes_and_cost_nothing(psi_world):
    w = psi_world
    ag = w.agreement["id"]
    known, _ = _ids(w, 5, 0)
    session = bank_sdk.psi_size_session(w.bank, ag, "tax_income")
    before = _spent(w, ag)
    usage_before = w.bank.usage(ag)
    good = base64.b64encode(group.join(session.client.blind(known))).decode()
    off_curve = next(hashlib.sha256(bytes([i])).digest() for i in range(256)
                     if not _valid(hashlib.sha256(bytes([i])).digest()))
    base = {"agreement_id": ag, "dataset": "tax_income", "dataset_fingerprint": session.dataset_fingerprint,
            "setup_id": session.setup_id, "epsilon": 1}
    cases = [
        ({**base, "elements": "not base64!"}, "CIPHERTEXT_INVALID"),
        ({**base, "elements": base64.b64encode(b"\x01" * 33).decode()}, "CIPHERTEXT_INVALID"),
        ({**base, "elements": base64.b64encode(off_curve).decode()}, "CIPHERTEXT_INVALID"),
        ({**base, "elements": base64.b64encode(b"\xff" * 32).decode()}, "CIPHERTEXT_INVALID"),
        ({**base, "elements": base64.b64encode(base64.b64decode(good)[:32] * 2).decode()}, "INVALID_REQUEST"),
        ({**base, "elements": good, "setup_id": "0" * 32}, "INVALID_REQUEST"),
        ({**base, "elements": good, "setup_id": "../../etc"}, "INVALID_REQUEST"),
        ({**base, "elements": good, "dataset_fingerprint": "sha256:old"}, "INVALID_REQUEST"),
        ({**base, "elements": good, "epsilon": "NaN"}, "INVALID_REQUEST"),
        ({**base, "elements": good, "epsilon": True}, "INVALID_REQUEST"),
        ({**base, "elements": good, "extra": 1}, "INVALID_REQUEST"),
    ]
    for body, want in cases:
        r = w.bank._http.post("/v1/psi/size", json=body)
        assert 400 <= r.status_code < 500, body
        assert r.json()["error"]["code"] == want, (body, r.json())
    # a double-blinded set of the wrong size or with repeats
    server = session.set_size
    for blob in (group.join([off_curve]), base64.b64decode(good)[:32] * server):
        r = w.bank._http.post("/v1/psi/size/setup", json={
            "agreement_id": ag, "dataset": "tax_income", "dataset_fingerprint": session.dataset_fingerprint,
            "elements": base64.b64encode(blob).decode()})
        assert r.status_code < 500 and r.json()["error"]["code"] == "CIPHERTEXT_INVALID"
    r = w.bank._http.post("/v1/psi/members", json={"agreement_id": ag, "dataset": "tax_income",
                                                    "dataset_fingerprint": session.dataset_fingerprint,
                                                    "elements": base64.b64encode(off_curve).decode(),
                                                    "consent_refs": ["c"]})
    assert r.status_code < 500 and r.json()["error"]["code"] == "CIPHERTEXT_INVALID"
    assert _spent(w, ag) == before
    if usage_before is not None:
        assert w.bank.usage(ag) == usage_before


def _valid(x: bytes) -> bool:
    try:
        group.validate(x)
        return True
    except group.InvalidElement:
        return False


def test_psi_size_budget_is_enforced(psi_world):
    w = psi_world
    ag = w.agreement_with(["psi_size"], budget={"epsilon": 1, "delta": "1e-6"})["id"]
    known, _ = _ids(w, 5, 0)
    out = bank_sdk.psi_size(w.bank, ag, "tax_income", known, epsilon=1)
    code, _, _ = codes(bank_sdk.psi_size, w.bank, ag, "tax_income", known, epsilon=0.5, session=out.session)
    assert code == "BUDGET_EXHAUSTED"


def test_psi_openapi_has_typed_models(psi_world):
    spec = psi_world.bank._http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("SizeBody", "SizeOut", "MembersBody", "MembersOut", "PsiSetupBody", "PsiSetupOut",
                 "AnonCheckBody", "AnonCheckOut", "AnonInfo"):
        assert name in schemas
    assert "/v1/psi/size" in spec["paths"] and "/v1/verifications/{name}/check-anonymous" in spec["paths"]
