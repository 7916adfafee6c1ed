"""Agreements over real HTTP: lifecycle, scope, bad inputs (specific codes, an audit entry, nothing spent)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from policies import _clock
from tests.conftest import ON_SQLITE
from veilbox.client import ApiError

COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _code(fn, *a, **kw) -> str:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value.code


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_lifecycle_propose_accept_suspend_resume_revoke(parties):
    ag = parties.agreement(accept=False)
    assert ag["state"] == "proposed" and ag["owner"] == "city-tax-bureau"
    assert _code(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, 0.1) == "AGREEMENT_INACTIVE"
    ag = parties.operator.accept_agreement(ag["id"], document_hash=ag["document_hash"])
    assert ag["state"] == "active"
    done = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.1)
    assert done["state"] == "released"
    assert parties.owner.suspend_agreement(ag["id"])["state"] == "suspended"
    assert _code(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, 0.1) == "AGREEMENT_INACTIVE"
    assert parties.owner.resume_agreement(ag["id"])["state"] == "active"
    assert parties.operator.job_result(done["job_id"])["output_digest"] == done["output_digest"]
    revoked = parties.owner.revoke_agreement(ag["id"])
    assert revoked["state"] == "revoked" and revoked["outputs_sealed"] is True
    assert _code(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, 0.1) == "AGREEMENT_INACTIVE"
    assert _code(parties.operator.job_result, done["job_id"]) == "AGREEMENT_INACTIVE"  # exit clause: sealed
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0.1"


def test_only_the_parties_and_regulators_see_an_agreement(parties):
    ag = parties.agreement()
    assert _code(parties.bank.agreement, ag["id"]) == "NOT_FOUND_OR_FORBIDDEN"
    assert _code(parties.bank.accept_agreement, ag["id"]) == "NOT_FOUND_OR_FORBIDDEN"
    assert _code(parties.bank.budget, ag["id"]) == "NOT_FOUND_OR_FORBIDDEN"
    assert _code(parties.bank.usage, ag["id"]) == "NOT_FOUND_OR_FORBIDDEN"
    assert _code(parties.bank.query, ag["id"], COUNT_BY_DISTRICT, 0.1) == "NOT_FOUND_OR_FORBIDDEN"
    assert parties.bank.agreements() == []
    assert [a["id"] for a in parties.regulator.agreements()] == [ag["id"]]
    assert parties.regulator.usage(ag["id"])["agreement_id"] == ag["id"]
    assert _code(parties.operator.suspend_agreement, ag["id"]) == "POLICY_DENIED"  # grantees cannot suspend
    assert _code(parties.operator.accept_agreement, "agr_doesnotexist") == "NOT_FOUND_OR_FORBIDDEN"


@pytest.mark.parametrize(("overrides", "code"), [
    ({"grantee": "city-data-regulator"}, "INVALID_REQUEST"),  # grantees are operators or banks
    ({"grantee": "nobody"}, "INVALID_REQUEST"),
    ({"surprise": 1}, "INVALID_REQUEST"),  # unknown fields are refused
    ({"budget": {"epsilon": -1}}, "INVALID_REQUEST"),
    ({"valid_until": "2020-01-01T00:00:00Z", "valid_from": "2019-01-01T00:00:00Z"}, "INVALID_REQUEST"),
    ({"columns": {"tax_income": ["id_number"]}}, "INVALID_REQUEST"),  # never_output columns cannot be shared
    ({"datasets": ["enterprise_registry"], "columns": {"enterprise_registry": ["district"]}},
     "NOT_FOUND_OR_FORBIDDEN"),  # not registered / not this owner's
    ({"purposes": []}, "POLICY_DENIED"),  # personal data requires a purpose
])
@ON_SQLITE
def test_bad_documents_are_refused_with_their_code_and_audited(parties, overrides, code):
    assert _code(parties.agreement, **overrides) == code
    assert parties.owner.agreements() == []
    entries = parties.regulator.audit(action="agreement.create")["entries"]
    assert entries and entries[-1]["decision"] == "deny" and entries[-1]["code"] == code


def test_another_owners_dataset_cannot_be_granted(parties, city_data):
    import json
    import shutil

    other = parties.service.principal("utility-board", "owner")
    spec = json.loads(city_data.enterprise_registry_spec.read_text())
    mine = parties.service.settings.owner_import_dirs("utility-board")[1]  # owners register from their own dir
    mine.mkdir(parents=True)
    spec["source"] = str(shutil.copy(city_data.enterprise_registry, mine / "enterprise_registry.parquet"))
    other.register_dataset(spec)
    doc_cols = {"enterprise_registry": [c for c, d in spec["columns"].items() if d["role"] == "dimension"][:1]}
    assert _code(parties.agreement, datasets=["enterprise_registry"], columns=doc_cols) == "NOT_FOUND_OR_FORBIDDEN"


def test_core_grade_and_the_negative_list_cannot_be_overridden(parties, city_data, tmp_path):
    import shutil

    src = parties.service.settings.owner_import_dirs("city-tax-bureau")[0] / "core_copy.parquet"
    shutil.copy(city_data.tax_income, src)
    spec = {**parties.tax_spec, "name": "tax_core", "source": str(src), "grade": "core"}
    parties.owner.register_dataset(spec)
    assert _code(parties.agreement, datasets=["tax_core"], columns={"tax_core": ["district"]}) == "POLICY_DENIED"
    entry = parties.service.admin.add_negative("purpose", "marketing", "no marketing on tax data")
    assert _code(parties.agreement, purposes=["marketing"]) == "POLICY_DENIED"
    assert _code(parties.owner.add_negative, "purpose", "x") == "POLICY_DENIED"  # admin only
    assert any(e["id"] == entry["id"] for e in parties.operator.negative_list())
    parties.service.admin.remove_negative(entry["id"])
    assert parties.agreement(purposes=["marketing"])["state"] == "active"


def test_expiry_is_enforced_on_every_call_and_recorded_once(parties, monkeypatch):
    # A fake clock, not a race with a short validity window: the agreement is valid for an hour, the service's
    # clock (policies._clock, which every state check reads) is then moved two hours on.
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(hours=1)
    ag = parties.agreement(valid_until=_iso(until))
    done = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.1)
    monkeypatch.setattr(_clock, "utcnow", lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    for _ in range(3):
        assert _code(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, 0.1) == "AGREEMENT_INACTIVE"
    assert parties.operator.agreement(ag["id"])["state"] == "expired"
    assert _code(parties.operator.job_result, done["job_id"]) == "AGREEMENT_INACTIVE"
    expiries = parties.regulator.audit(action="agreement.expire", agreement_id=ag["id"])["entries"]
    assert len(expiries) == 1
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "0.1"  # nothing spent after expiry


def test_64_concurrent_debits_through_http_never_overspend(parties):
    ag = parties.agreement()  # ε = 5; 64 × 0.1 = 6.4 asked
    parties.service.ctx.caches.inflight.limit = 64  # all 64 in flight at once (the per-principal cap is tested apart)
    clients = [parties.operator.with_token(parties.operator._http.headers["Authorization"].split()[1])
               for _ in range(8)]
    parties.service.clients.extend(clients)  # closed with the service

    def one(i: int) -> str:
        try:
            r = clients[i % 8].query(ag["id"], "SELECT COUNT(*) AS n FROM tax_income", "0.1")
            return r["state"]
        except ApiError as e:
            return e.code

    with ThreadPoolExecutor(64) as pool:
        outcomes = list(pool.map(one, range(64)))
    assert outcomes.count("released") == 50
    assert outcomes.count("BUDGET_EXHAUSTED") == 14
    b = parties.operator.budget(ag["id"])
    assert Fraction(b["exact"]["epsilon_spent"]) == 5
    released = [e for e in parties.regulator.audit(agreement_id=ag["id"], action="query.run", limit=1000)["entries"]
                if e["decision"] == "allow"]
    assert len(released) == 50 and all(e["output_digest"] for e in released)


def test_usage_counts_calls_jobs_and_epsilon(parties):
    ag = parties.agreement()
    for _ in range(3):
        parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.25")
    u = parties.owner.usage(ag["id"])
    assert u["totals"]["jobs"] == 3 and Fraction(u["totals"]["epsilon"]) == Fraction(3, 4)
    assert _code(parties.owner.usage, ag["id"], since="yesterday") == "INVALID_REQUEST"


def test_audit_scopes_follow_the_agreement(parties):
    ag = parties.agreement()
    parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.1)
    owner_view = parties.owner.audit(agreement_id=ag["id"], limit=1000)["entries"]
    assert {"query.run", "agreement.accept"} <= {e["action"] for e in owner_view}
    assert all(e["actor"] == "risk-lab" for e in owner_view if e["action"] == "query.run")
    assert parties.bank.audit(agreement_id=ag["id"])["entries"] == []
    mine = parties.operator.audit(limit=1000)["entries"]
    assert mine and all(e["actor"] == "risk-lab" for e in mine)
