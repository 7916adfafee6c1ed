"""End to end through real HTTP (uvicorn on a loopback port): principals, catalog, audit scope."""

import json

import httpx
import pytest
from sqlalchemy import text

from gateway.audit import canonical
from tests.conftest import BOTH_SUITES
from veilbox.client import ApiError

OWNER = "city-tax-bureau"  # the synthetic city lies in <import root>/city-tax-bureau/ (tests/conftest.py)


def codes(fn):
    with pytest.raises(ApiError) as ei:
        fn()
    return ei.value.code, ei.value.status


def test_health_and_openapi(service):
    assert httpx.get(service.url + "/health", timeout=60).json() == {"status": "ok"}
    spec = httpx.get(service.url + "/openapi.json", timeout=60).json()
    for path in ("/v1/principals", "/v1/principals/me", "/v1/datasets", "/v1/datasets/{name}",
                 "/v1/datasets/{name}/mock", "/v1/audit", "/v1/audit/verify", "/v1/audit/export"):
        assert path in spec["paths"], path


def test_principals(service):
    me = service.admin.me()
    assert me["role"] == "admin"
    owner = service.principal("city-tax", "owner")
    assert owner.me()["name"] == "city-tax"
    assert codes(lambda: service.admin.create_principal("city-tax", "owner")) == ("ALREADY_EXISTS", 409)
    assert codes(lambda: service.admin.create_principal("x y", "owner")) == ("INVALID_REQUEST", 422)
    assert codes(lambda: service.admin.create_principal("ok-name", "wizard")) == ("INVALID_REQUEST", 422)
    assert codes(lambda: owner.create_principal("evil", "admin")) == ("POLICY_DENIED", 403)
    assert codes(lambda: service.client("vbx_not-a-token").me()) == ("UNAUTHENTICATED", 401)
    r = httpx.get(service.url + "/v1/principals/me", timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"


def test_register_and_read_datasets(service, tax_spec):
    owner = service.principal(OWNER, "owner")
    analyst = service.principal("risk-lab", "operator")
    ds = owner.register_dataset(tax_spec)
    assert ds["rows"] == 5000 and ds["fingerprint"].startswith("sha256:")
    seen = analyst.dataset("tax_income")
    assert seen["rows"] is None and "ingest" not in seen  # exact counts only for the owner
    assert seen["columns"]["district"]["domain"][0] == "Liangxi"
    assert [d["name"] for d in analyst.datasets()] == ["tax_income"]
    m = analyst.mock("tax_income", rows=5, seed=3)
    assert len(m["rows"]) == 5 and all(str(r[0]).startswith("MOCK-") for r in m["rows"])
    assert codes(lambda: analyst.register_dataset(tax_spec)) == ("POLICY_DENIED", 403)
    assert codes(lambda: owner.register_dataset(tax_spec)) == ("ALREADY_EXISTS", 409)
    assert codes(lambda: analyst.dataset("no_such")) == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert codes(lambda: analyst.mock("tax_income", rows=10**6)) == ("INVALID_REQUEST", 422)


@pytest.mark.parametrize("mutate, code", [
    (lambda s: {**s, "name": "t2", "source": "/etc/passwd"}, "NOT_FOUND_OR_FORBIDDEN"),
    (lambda s: {**s, "name": "t2", "source": s["source"] + "/../../../../etc/passwd"}, "NOT_FOUND_OR_FORBIDDEN"),
    (lambda s: {**s, "name": "t2", "source": "tax_income.parquet"}, "INVALID_REQUEST"),
    (lambda s: {**s, "name": "t2", "columns": {**s["columns"], "age": {"role": "dimension", "bounds": [100, 16]}}},
     "INVALID_REQUEST"),
    (lambda s: {**s, "name": "t2", "columns": {k: v for k, v in s["columns"].items() if k != "age"}},
     "INVALID_REQUEST"),
    (lambda s: {**s, "name": "t2", "columns": {**s["columns"], "monthly_income": {"role": "measure"}}},
     "INVALID_REQUEST"),
    (lambda s: {**s, "name": "t2", "grade": "top-secret"}, "INVALID_REQUEST"),
    (lambda s: {**s, "name": "t2", "max_rows_per_unit": "many"}, "INVALID_REQUEST"),
    (lambda s: {**s, "name": "T-2"}, "INVALID_REQUEST"),
    (lambda s: {k: v for k, v in s.items() if k != "columns"}, "INVALID_REQUEST"),
])
def test_bad_registrations_leave_nothing_and_are_audited(service, tax_spec, mutate, code):
    owner = service.principal(OWNER, "owner")
    assert codes(lambda: owner.register_dataset(mutate(tax_spec)))[0] == code
    last = service.ctx.audit.entries(0, 1000)[0][-1]
    assert (last["action"], last["decision"], last["code"], last["actor"]) == (
        "dataset.register", "deny", code, OWNER)
    assert owner.datasets() == []
    assert list((service.settings.data_dir).iterdir()) == []


def test_body_limit(service, tax_spec):
    owner = service.principal(OWNER, "owner")
    big = {**tax_spec, "description": "x" * (service.settings.max_body_bytes + 10)}
    assert codes(lambda: owner.register_dataset(big)) == ("INVALID_REQUEST", 422)
    r = httpx.post(service.url + "/v1/datasets", content=iter([b"{" + b" " * (service.settings.max_body_bytes + 5)]),
                   headers={"Authorization": "Bearer x", "Content-Type": "application/json"}, timeout=60)
    assert r.status_code in (401, 422)


def test_unknown_paths_and_methods(service):
    r = httpx.get(service.url + "/v1/does-not-exist", timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND_OR_FORBIDDEN"
    r = httpx.delete(service.url + "/v1/principals/me", timeout=60)
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_audit_scope_by_role(service, tax_spec):
    owner = service.principal(OWNER, "owner")
    other_owner = service.principal("water-co", "owner")
    analyst = service.principal("risk-lab", "operator")
    reg = service.principal("regulator", "regulator")
    owner.register_dataset(tax_spec)
    analyst.dataset("tax_income")
    analyst.mock("tax_income")
    codes(lambda: analyst.dataset("nope"))
    everything = reg.audit(limit=1000)["entries"]
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert {e["actor"] for e in analyst.audit(limit=1000)["entries"]} == {"risk-lab"}
    owner_view = owner.audit(limit=1000)["entries"]
    assert any(e["actor"] == "risk-lab" and e["dataset"] == "tax_income" for e in owner_view)
    assert not any(e["actor"] == "risk-lab" and e["dataset"] == "nope" for e in owner_view)
    assert all(e["actor"] == "water-co" for e in other_owner.audit(limit=1000)["entries"])
    denied = reg.audit(limit=1000, decision="deny")["entries"]
    assert denied and all(e["decision"] == "deny" for e in denied)
    page = reg.audit(since=2, limit=3)
    assert [e["seq"] for e in page["entries"]] == [3, 4, 5] and page["next"] == 5
    assert codes(lambda: analyst.audit_verify()) == ("POLICY_DENIED", 403)


@BOTH_SUITES
def test_verify_and_export_over_http(service, tax_spec, crypto_suite):
    import io

    import pyarrow.parquet as pq

    from cryptosuite import load_verify_key, suite_of

    suite = suite_of(crypto_suite)
    reg = service.principal("regulator", "regulator")
    service.principal(OWNER, "owner").register_dataset(tax_spec)
    v = reg.audit_verify()
    assert v["ok"] and v["first_bad_seq"] is None
    published = reg.audit_public_key()
    assert (published["algorithm"], published["hash_alg"]) == (suite.signature_name, suite.hash_name)
    key = load_verify_key(published["pem"])  # the algorithm is learnt from the published key alone
    assert key.algorithm == suite.signature_name and service.ctx.audit.verify(public_key=published["pem"]).ok
    assert len(v["head"]) == 64 and service.ctx.audit.entries(limit=1)[0][0]["hash"] == suite.hexdigest(
        b"0" * 64 + b"\n" + canonical(service.ctx.audit.entries(limit=1)[0][0]))
    other = suite_of("sm" if crypto_suite == "intl" else "intl").new_signing_key().public
    assert not service.ctx.audit.verify(public_key=other).ok  # a head signed by another key is refused
    with service.ctx.engine.begin() as c:  # a forged signed head: the chain is intact, the signature is not
        sig = c.execute(text("SELECT signature FROM audit_head WHERE id=1")).scalar_one()
        forged = sig[:-2] + ("00" if sig[-2:] != "00" else "01")
        c.execute(text("UPDATE audit_head SET signature=:s WHERE id=1"), {"s": forged})
    assert reg.audit_verify()["reason"] == "signed head is invalid"  # its own entry then re-signs the head
    table = pq.read_table(io.BytesIO(reg.audit_export()))
    assert table.num_rows >= v["entries"]
    with service.ctx.engine.begin() as c:
        c.exec_driver_sql("UPDATE audit_entries SET actor='mallory' WHERE seq=3")
    v = reg.audit_verify()
    assert not v["ok"] and v["first_bad_seq"] == 3



def test_entries_hold_no_raw_values(service, tax_spec, city_data):
    import pyarrow.parquet as pq

    owner = service.principal(OWNER, "owner")
    owner.register_dataset(tax_spec)
    service.principal("risk-lab", "operator").mock("tax_income", rows=50)
    raw = pq.read_table(city_data.tax_income)
    secrets_ = set(raw["person_id"].to_pylist()[:500]) | set(raw["id_number"].to_pylist()[:500])
    dump = str(service.ctx.audit.entries(0, 10_000)[0])
    assert not any(s in dump for s in secrets_)


def _refusal(fn):
    with pytest.raises(ApiError) as ei:
        fn()
    e = ei.value
    return e.status, e.code, e.message, e.details


def test_an_owner_registers_only_its_own_files_and_learns_nothing_of_anothers(service, tax_spec, city_data):
    """Owner B (water-co) tries owner A's (city-tax-bureau) file by path — before and after A registered it, through
    a symlink, via ``..`` — and paths that do not exist: one answer for all. A copy in B's own directory is
    refused by its fingerprint. Every refusal is audited; B's audit entries name nothing of A's."""
    import os
    import shutil

    owner_a = service.principal(OWNER, "owner")
    owner_b = service.principal("water-co", "owner")
    mine = service.settings.owner_import_dirs("water-co")[1]  # under this test's own import root
    mine.mkdir(parents=True)
    a_dir = city_data.tax_income.parent

    def as_b(source):
        return _refusal(lambda: owner_b.register_dataset({**tax_spec, "name": "water_use", "source": str(source)}))

    missing = as_b(mine / "nothing.parquet")
    assert missing == (404, "NOT_FOUND_OR_FORBIDDEN", "source file not found in your import directory",
                       [{"field": "source", "reason": "source.not_found"}])
    (mine / "link.parquet").symlink_to(city_data.tax_income)
    tries = [city_data.tax_income, a_dir / "nothing.parquet", mine / os.path.relpath(city_data.tax_income, mine),
             mine / "link.parquet", a_dir.parent / "nothing.parquet", mine]
    before = [as_b(p) for p in tries]
    owner_a.register_dataset(tax_spec)
    after = [as_b(p) for p in tries]
    assert before == after == [missing] * len(tries)

    shutil.copy(city_data.tax_income, mine / "copy.parquet")  # B got hold of A's bytes somehow
    taken = as_b(mine / "copy.parquet")
    assert taken == (403, "POLICY_DENIED", "this content is already registered by another owner",
                     [{"field": "source", "reason": "dataset.content_registered_by_another_owner"}])
    assert [d["owner"] for d in owner_b.datasets()] == [OWNER]
    assert sorted(p.name for p in service.settings.data_dir.iterdir()) == [
        d.path.name for d in __import__("catalog.registry", fromlist=["x"]).list_all(service.ctx.engine)]

    b_entries = [e for e in owner_b.audit(limit=1000)["entries"] if e["action"] == "dataset.register"]
    assert len(b_entries) == 2 * len(tries) + 2
    assert all(e["decision"] == "deny" and e["dataset"] == "water_use" for e in b_entries)
    reasons = [json.loads(e["details"]).get("reasons") for e in b_entries]
    assert reasons == [["source.not_found"]] * (2 * len(tries) + 1) + [["dataset.content_registered_by_another_owner"]]
    assert [e["code"] for e in b_entries] == ["NOT_FOUND_OR_FORBIDDEN"] * (2 * len(tries) + 1) + ["POLICY_DENIED"]
    assert OWNER not in str(b_entries) and "tax_income" not in str(b_entries)
    regulator = service.principal("regulator", "regulator")
    seen = [e for e in regulator.audit(limit=1000, action="dataset.register")["entries"] if e["actor"] == "water-co"]
    assert len(seen) == len(b_entries)


def test_a_shared_import_root_is_no_owners_directory(service, tax_spec, city_data):
    """A file placed in the import root itself (no owner's directory) cannot be registered by anyone."""
    import shutil

    owner = service.principal(OWNER, "owner")
    root = city_data.tax_income.parent.parent
    loose = root / "loose_for_test.parquet"
    shutil.copy(city_data.tax_income, loose)
    try:
        e = _refusal(lambda: owner.register_dataset({**tax_spec, "source": str(loose)}))
        assert e[1] == "NOT_FOUND_OR_FORBIDDEN"
    finally:
        loose.unlink()
