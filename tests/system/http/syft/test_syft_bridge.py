"""The PySyft v2 bridge end to end: a data scientist's own syft-rds client, over the Veilbox spool, sees the mock,
submits a job that becomes a Veilbox ``code`` job under their agreement, the owner approves and releases it in
Veilbox, and the result comes back through syft; unmapped identities, jobs outside the agreement and jobs that name
``never_output`` columns are refused with Veilbox error codes. Skipped only where the ``syft`` extra is absent
(``make test`` installs it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("syft_rds")

from tests.conftest import DATA_OWNER
from veilbox.client import Client
from veilbox.syft_bridge.audit import email_hash, gateway_audit
from veilbox.syft_bridge.datasite import (
    Identity,
    IdentityTable,
    VeilboxDatasite,
    syft_status,
    veilbox_states,
)
from veilbox.syft_bridge.login import login_ds

DATASITE = "datasite@city-tax-bureau.example"
ANA = "ana@risk-lab.example"

JOB = """
import pyarrow.compute as pc

DATASET = "tax_income"

def main(inputs):
    t = inputs["tax_income"]
    return {"rows_seen": t.num_rows > 0, "mean_income": round(pc.mean(t["monthly_income"]).as_py(), -3)}
"""


@pytest.fixture
def world(service, tax_spec, tmp_path):
    owner_token = service.admin.create_principal(DATA_OWNER, "owner")["token"]
    lab_token = service.admin.create_principal("risk-lab", "operator")["token"]
    owner, lab = Client(service.url, owner_token), Client(service.url, lab_token)
    owner.register_dataset(tax_spec)
    doc = {
        "title": "SME credit model",
        "grantee": "risk-lab",
        "datasets": ["tax_income"],
        "columns": {"tax_income": ["district", "age", "industry", "monthly_income", "has_default"]},
        "purposes": ["credit_risk"],
        "job_kinds": ["query", "code"],
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2030-01-01T00:00:00Z",
        "budget": {"epsilon": 5, "delta": "1e-6"},
        "min_group_units": 5,
        "quotas": {"calls_per_day": 10000},
        "approval": "owner_each_job",
    }
    ag = lab.accept_agreement(owner.propose_agreement(doc)["id"])
    spool = tmp_path / "spool"
    site = VeilboxDatasite(
        url=service.url,
        owner_token=owner_token,
        email=DATASITE,
        spool=spool,
        identities=IdentityTable([Identity(ANA, "risk-lab", lab_token)]),
        state_dir=tmp_path / "bridge",
        mock_rows=50,
        audit=gateway_audit(service.ctx, DATA_OWNER),
    )
    world = {
        "service": service,
        "owner": owner,
        "lab": lab,
        "agreement": ag,
        "spool": spool,
        "site": site,
        "tmp": tmp_path,
    }
    yield world
    owner.close()
    lab.close()
    site.close()
    if world["site"] is not site:  # a test swapped in its own datasite
        world["site"].close()


def _connect(world, email: str):
    ds = login_ds(email, world["spool"], world["tmp"] / f"ds-{email}")
    ds.add_peer(DATASITE)
    world["site"].pump()
    ds.load_peers()
    return ds


def _submit(world, ds, source: str, name: str) -> None:
    path = Path(world["tmp"]) / f"{name}.py"
    path.write_text(source)
    ds.submit_python_job(DATASITE, str(path), job_name=name, force_submission=True)
    world["site"].pump()


def _job(ds, name: str):
    return next(j for j in ds.jobs if j.name == name)


def test_mock_submit_owner_approves_in_veilbox_and_the_result_returns_through_syft(world):
    ds = _connect(world, ANA)
    world["site"].pump()  # publishes the agreement's datasets to Ana

    datasets = ds.datasets.get_all()
    assert [d.name for d in datasets] == ["tax_income"]
    mock_csv = next(f for f in datasets[0].mock_files if f.suffix == ".csv")
    with mock_csv.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["district", "age", "industry", "monthly_income", "has_default"]  # granted, readable
    assert len(rows) == 51
    owner_mock = world["owner"].mock("tax_income", rows=50)
    col = owner_mock["columns"].index("monthly_income")
    assert [r[3] for r in rows[1:]] == [str(r[col]) for r in owner_mock["rows"]]  # Veilbox's declared mock

    _submit(world, ds, JOB, "mean-income")
    assert _job(ds, "mean-income").status == "pending"
    [vj] = world["lab"].jobs()
    assert vj["kind"] == "code" and vj["state"] == "pending_approval"
    assert vj["agreement_id"] == world["agreement"]["id"]
    review = world["owner"].job_review(vj["id"])
    assert review["mock"]["source"] == JOB  # the owner reviews exactly what was submitted through syft

    world["owner"].approve_job(vj["id"], vj["spec_hash"])
    assert world["lab"].wait_job(vj["id"], timeout=120)["state"] == "succeeded"
    world["site"].pump()
    assert _job(ds, "mean-income").status == "pending"  # nothing leaves before the owner's release

    world["owner"].release_job(vj["id"])
    world["site"].pump()
    job = _job(ds, "mean-income")
    assert job.status == "done"
    [out] = [p for p in job.output_paths if p.name == "result.json"]
    result = json.loads(out.read_text())
    assert result["result"] == world["lab"].job_result(vj["id"])["result"]
    assert result["result"]["rows_seen"] is True


def test_an_unmapped_identity_is_refused_and_recorded(world):
    ds = _connect(world, "mallory@elsewhere.example")
    world["site"].pump()
    assert ds.datasets.get_all() == []
    assert DATASITE not in [p.email for p in ds.peer_manager.approved_peers]
    [refusal] = world["site"].refusals()
    assert refusal["kind"] == "peer.unmapped" and refusal["email"] == "mallory@elsewhere.example"
    assert refusal["code"] == "NOT_FOUND_OR_FORBIDDEN"
    entries, _ = world["service"].ctx.audit.entries(limit=10_000)
    [audited] = [e for e in entries if e["action"] == "syft.refuse"]  # in the gateway's hash chain
    assert audited["decision"] == "deny" and audited["code"] == "NOT_FOUND_OR_FORBIDDEN"
    assert audited["subject_hash"] == email_hash("mallory@elsewhere.example")
    assert "mallory" not in json.dumps(audited, default=str)
    regulator = world["service"].principal("city-data-regulator", "regulator")
    assert regulator.audit_verify()["ok"] is True
    regulator.close()
    assert world["lab"].jobs() == []


def test_a_job_outside_the_agreement_is_refused_with_a_veilbox_code(world):
    ds = _connect(world, ANA)
    world["site"].pump()
    _submit(world, ds, JOB.replace('DATASET = "tax_income"', 'DATASET = "enterprise_registry"'), "elsewhere")
    job = _job(ds, "elsewhere")
    assert job.status == "rejected"
    assert job.review_reason.startswith("POLICY_DENIED:")
    assert world["lab"].jobs() == []


def test_a_job_the_gateway_refuses_carries_the_gateways_code(world):
    ds = _connect(world, ANA)
    world["site"].pump()
    _submit(world, ds, "DATASET = 'tax_income'\n\ndef run(inputs):\n    return 1\n", "no-main")  # no main()
    job = _job(ds, "no-main")
    assert job.status == "rejected"
    code = job.review_reason.split(":", 1)[0]
    assert code in {"INVALID_REQUEST", "POLICY_DENIED"}


def test_a_job_naming_never_output_columns_is_refused(world):
    ds = _connect(world, ANA)
    world["site"].pump()
    source = JOB.replace('t["monthly_income"]', 't["id_number"]')
    _submit(world, ds, source, "ids")
    job = _job(ds, "ids")
    assert job.status == "rejected" and job.review_reason.startswith("POLICY_DENIED:")
    assert "id_number" in job.review_reason
    assert world["site"].refusals()[-1]["reason"] == "column.never_output"
    assert world["lab"].jobs() == []


def test_job_states_map_both_ways():
    assert syft_status("pending_approval") == "pending" and syft_status("released") == "done"
    for state in ("rejected", "failed", "cancelled"):
        assert syft_status(state) == "rejected"
    for status in ("pending", "done", "rejected"):
        assert all(syft_status(s) == status for s in veilbox_states(status))


def test_a_mapped_identity_sees_only_what_its_own_agreements_cover(service, world, tmp_path):
    bank_token = service.admin.create_principal("icbc-wuxi", "bank")["token"]
    table = IdentityTable(
        [
            Identity(ANA, "risk-lab", world["lab"]._http.headers["Authorization"].split()[1]),
            Identity("bo@icbc.example", "icbc-wuxi", bank_token),
        ]
    )
    site = VeilboxDatasite(
        url=service.url,
        owner_token=world["owner"]._http.headers["Authorization"].split()[1],
        email=DATASITE,
        spool=world["spool"],
        identities=table,
        state_dir=tmp_path / "bridge2",
        mock_rows=20,
    )
    world["site"] = site
    ana = _connect(world, ANA)
    bo = _connect(world, "bo@icbc.example")
    site.pump()
    assert [d.name for d in ana.datasets.get_all()] == ["tax_income"]
    assert bo.datasets.get_all() == []  # approved as a peer, but no agreement of the bank covers code on it
    synced = [p.read_bytes() for p in (world["tmp"] / f"ds-{ANA}").rglob("*") if p.is_file()]
    assert synced and not any(b"id_number" in b for b in synced)  # the never_output column never reaches Ana


def test_the_bridge_runs_from_the_admins_table_and_refuses_a_token_of_another_principal(service, world, tmp_path):
    from veilbox.syft_bridge.__main__ import main

    lab_token = world["lab"]._http.headers["Authorization"].split()[1]
    owner_token = world["owner"]._http.headers["Authorization"].split()[1]
    (tmp_path / "lab.token").write_text(lab_token + "\n")
    (tmp_path / "owner.token").write_text(owner_token)
    table = tmp_path / "identities.json"
    args = [
        "--url",
        service.url,
        "--owner-token-file",
        str(tmp_path / "owner.token"),
        "--email",
        DATASITE,
        "--spool",
        str(world["spool"]),
        "--identities",
        str(table),
        "--state-dir",
        str(tmp_path / "cli"),
    ]

    table.write_text(
        json.dumps(
            {"identities": [{"email": ANA, "principal": "icbc-wuxi", "token_file": str(tmp_path / "lab.token")}]}
        )
    )
    with pytest.raises(ValueError, match="belongs to risk-lab"):  # the token must be the mapped principal's
        main([*args, "--once"])

    table.write_text(
        json.dumps({"identities": [{"email": ANA, "principal": "risk-lab", "token_file": str(tmp_path / "lab.token")}]})
    )
    ds = login_ds(ANA, world["spool"], tmp_path / "ana")
    ds.add_peer(DATASITE)
    main([*args, "--once"])
    main([*args, "--once"])
    ds.load_peers()
    assert DATASITE in [p.email for p in ds.peer_manager.approved_peers]
    assert [d.name for d in ds.datasets.get_all()] == ["tax_income"]
