"""The disposal of an ended agreement (`policies.disposal`): pending jobs cancelled and refunded exactly, released
outputs sealed or deleted per the exit clause, model certificates revoked, each step once (idempotent), and the
signed record. The exit clause's new keys leave older documents' canonical JSON and hash unchanged."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from sqlalchemy import select

import policies
from catalog import models as model_registry
from catalog.errors import DomainError
from policies import _tables as t
from policies import disposal, ledger
from policies.agreements.document import parse_document
from policies.jobs import load_job
from tests.unit.policies.conftest import World, document

SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district"}
COST = policies.Budget(Fraction(1, 10), Fraction(0))


def _submit(world: World, ag_id: str) -> policies.Job:
    return policies.submit(world.engine, world.bank, ag_id, "query", SPEC, datasets=["tax_income"],
                           columns={"tax_income": ["district"]}, cost=COST, now=world.now)


def _run(world: World, ag_id: str, now: dt.datetime) -> disposal.Disposal | None:
    """What the gateway's `dispose` does, with a stand-in signer."""
    d = disposal.start(world.engine, ag_id, now=now)
    if d is None:
        return None
    for name, step in disposal.STEPS:
        disposal.run_step(world.engine, ag_id, name, step, hash_alg="sha256", now=now)
    return disposal.finish(world.engine, ag_id, sign=lambda m: "sig:" + str(len(m)), key_id="k1",
                           hash_alg="sha256", now=now)


def _released(world: World, ag_id: str) -> str:
    job = _submit(world, ag_id)
    policies.claim_next(world.engine, "w", now=world.now)
    policies.succeed(world.engine, job.id, now=world.now)
    policies.release(world.engine, job.id, result={"rows": [[1, 2]]}, output_digest="sha256:" + "a" * 64,
                     now=world.now)
    return job.id


def _model(world: World, ag_id: str) -> model_registry.ModelRecord:
    return model_registry.register_model(
        world.engine, job_id="job_m_" + ag_id[-6:], agreement_id=ag_id, owner=world.bank.name,
        algorithm="logistic_regression", purpose="credit_risk", features=["age"], card={}, weights_path="m/w.json",
        output_digest="sha256:" + "b" * 64, source_datasets={"tax_income": "sha256:f"}, now=world.now)


@pytest.mark.parametrize("store", ["sqlite"])
def test_old_documents_keep_their_hash_and_new_keys_appear_only_when_set(world: World) -> None:
    old = parse_document(document())
    assert old.as_json()["exit"] == {"on_expiry": "seal_outputs"}
    assert old.exit.output_disposal == "seal" and old.exit.models == "revoke"
    assert parse_document(document(exit={"on_expiry": "keep_outputs"})).exit.output_disposal == "keep"
    new = parse_document(document(exit={"on_expiry": "seal_outputs", "outputs": "delete", "models": "retain",
                                        "cases": ["expired"]}))
    assert new.as_json()["exit"] == {"on_expiry": "seal_outputs", "outputs": "delete", "models": "retain",
                                     "cases": ["expired"]}
    assert new.digest() != old.digest()
    for bad in ({"outputs": "anonymise"}, {"models": "burn"}, {"cases": ["suspended"]},
                {"cases": ["expired", "expired"]}):
        with pytest.raises(DomainError):
            parse_document(document(exit=bad))


def test_revocation_disposes_once_jobs_refunded_outputs_deleted_models_revoked(world: World) -> None:
    ag = world.active(approval="auto_within_budget", exit={"outputs": "delete"})
    released = _released(world, ag.id)
    before = ledger.remaining(world.engine, ag.id)
    approved = _submit(world, ag.id)  # charged at submission (auto_within_budget), not yet run
    assert ledger.remaining(world.engine, ag.id) != before
    model = _model(world, ag.id)
    policies.revoke(world.engine, world.owner, ag.id, now=world.now)

    d = _run(world, ag.id, world.now)
    assert d is not None and d.completed_at is not None and d.case == "revoked"
    assert ledger.remaining(world.engine, ag.id) == before  # refunded exactly
    job = load_job(world.engine, approved.id)
    assert job is not None and job.state.value == "cancelled" and job.failure_reason == "agreement.revoked"
    with world.engine.connect() as conn:
        assert conn.execute(select(t.jobs.c.result_json).where(t.jobs.c.id == released)).scalar() is None
    revoked = model_registry.get_model(world.engine, model.id)
    assert revoked is not None and revoked.revoked_reason == "agreement.revoked" and not revoked.valid_at(world.now)

    record = d.record
    assert record is not None and d.signature == "sig:" + str(len(disposal.record_message(record)))
    assert [s["step"] for s in record["steps"]] == ["jobs", "outputs", "models"]
    steps = {s["step"]: s for s in record["steps"]}
    assert steps["jobs"]["cancelled"] == [{"job_id": approved.id, "spec_hash": approved.spec_hash,
                                           "was": "approved", "refunded": True}]
    assert steps["outputs"]["method"] == "delete"
    assert steps["outputs"]["released"] == [{"job_id": released, "output_digest": "sha256:" + "a" * 64,
                                             "stored": True}]
    assert steps["models"]["revoked"][0]["certificate_id"] == model.certificate_id

    again = _run(world, ag.id, world.now + dt.timedelta(hours=1))  # idempotent: nothing runs twice
    assert again is not None and again.record == record and again.signature == d.signature
    assert ledger.remaining(world.engine, ag.id) == before
    assert disposal.due(world.engine, now=world.now) == []


@pytest.mark.parametrize("store", ["sqlite"])  # the SQL runs on both stores in the revocation test
def test_expiry_seals_keeps_models_when_retained_and_skips_unlisted_cases(world: World) -> None:
    sealed = world.active(exit={"on_expiry": "seal_outputs", "models": "retain"})
    kept = world.active(exit={"outputs": "delete", "cases": ["revoked"]})  # expiry is not a listed case
    pending = _submit(world, kept.id)  # awaits the owner: cancelled, nothing to refund
    m1, m2 = _model(world, sealed.id), _model(world, kept.id)
    assert disposal.start(world.engine, sealed.id, now=world.now) is None  # in force: nothing begins
    after = world.valid_until + dt.timedelta(seconds=1)  # the fake clock past the validity window
    assert sorted(disposal.due(world.engine, now=after)) == sorted([sealed.id, kept.id])
    for ag in (sealed, kept):
        d = _run(world, ag.id, after)
        assert d is not None and d.case == "expired" and d.record is not None
    rec_sealed = disposal.load(world.engine, sealed.id)
    rec_kept = disposal.load(world.engine, kept.id)
    assert rec_sealed is not None and rec_sealed.record is not None
    sealed_steps = {s["step"]: s for s in rec_sealed.record["steps"]}
    assert sealed_steps["outputs"]["method"] == "seal"
    assert sealed_steps["models"] == {"step": "models", "at": after.isoformat(), "method": "retain", "revoked": []}
    assert rec_kept is not None and rec_kept.record is not None
    kept_steps = {s["step"]: s for s in rec_kept.record["steps"]}
    assert kept_steps["outputs"]["method"] == "keep"
    assert kept_steps["jobs"]["cancelled"][0]["refunded"] is False
    job = load_job(world.engine, pending.id)
    assert job is not None and job.failure_reason == "agreement.expired"
    for m in (m1, m2):
        got = model_registry.get_model(world.engine, m.id)
        assert got is not None and got.revoked_at is None
    assert disposal.due(world.engine, now=after) == []


@pytest.mark.parametrize("store", ["sqlite"])
def test_a_disposal_cut_short_is_finished_without_redoing_a_step(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    before = ledger.remaining(world.engine, ag.id)
    job = _submit(world, ag.id)
    policies.revoke(world.engine, world.owner, ag.id, now=world.now)
    disposal.start(world.engine, ag.id, now=world.now)
    name, step = disposal.STEPS[0]
    assert disposal.run_step(world.engine, ag.id, name, step, hash_alg="sha256", now=world.now)
    # the process dies here; the next run (the worker's sweep) finishes the rest and never redoes the first step
    assert disposal.due(world.engine, now=world.now) == [ag.id]
    later = world.now + dt.timedelta(minutes=5)
    d = _run(world, ag.id, later)
    assert d is not None and d.record is not None
    assert [(s["step"], s["at"]) for s in d.record["steps"]] == [
        ("jobs", world.now.isoformat()), ("outputs", later.isoformat()), ("models", later.isoformat())]
    assert d.record["steps"][0]["cancelled"][0]["job_id"] == job.id
    assert ledger.remaining(world.engine, ag.id) == before
    assert not disposal.run_step(world.engine, ag.id, name, step, hash_alg="sha256", now=later)
