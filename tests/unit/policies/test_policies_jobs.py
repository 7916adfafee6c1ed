"""Jobs: submission, approval bound to spec hash and fingerprints, the state machine, the queue, results."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import update

import policies
from catalog import _tables as catalog_tables
from catalog.errors import (
    AGREEMENT_INACTIVE,
    APPROVAL_REQUIRED,
    BUDGET_EXHAUSTED,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    QUOTA_EXCEEDED,
    DomainError,
)
from policies import Budget, JobState, jobs, ledger

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district", "epsilon": "0.1"}
COST = Budget.parse("0.1", "1e-7")


def submit(world: World, ag_id: str, spec: dict[str, Any] | None = None, **kw: Any) -> policies.Job:
    args: dict[str, Any] = {"datasets": ["tax_income"], "columns": {"tax_income": ["district"]}, "cost": COST,
                            "now": world.now}
    args.update(kw)
    actor = args.pop("actor", world.bank)
    kind = args.pop("kind", "query")
    return policies.submit(world.engine, actor, ag_id, kind, spec or SPEC, **args)


def spent(world: World, ag_id: str) -> Budget:
    return ledger.status(world.engine, ag_id).spent


def change_fingerprint(world: World, dataset: str) -> None:
    with world.engine.begin() as conn:
        conn.execute(update(catalog_tables.datasets).where(catalog_tables.datasets.c.name == dataset)
                     .values(fingerprint="sha256:" + "f" * 64))


def test_spec_hash_is_canonical() -> None:
    a = policies.spec_hash({"b": 1, "a": [1, 2], "c": "é"})
    assert a == policies.spec_hash({"c": "é", "a": [1, 2], "b": 1})
    assert a.startswith("sha256:") and a != policies.spec_hash({"b": 2, "a": [1, 2], "c": "é"})


def test_submit_pending_then_approve_charges(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    assert job.state is JobState.PENDING_APPROVAL and job.spec == SPEC
    assert job.spec_hash == policies.spec_hash(SPEC)
    assert job.fingerprints == {"tax_income": policies.agreements.record.catalog_records(world.engine, ["tax_income"])[
        "tax_income"].fingerprint}  # type: ignore[union-attr]
    assert job.cost == COST and job.created_by == world.bank.name
    assert spent(world, ag.id).is_zero  # nothing charged before approval
    queue = policies.list_jobs(world.engine, owner=world.owner.name, state="pending_approval")
    assert [j.id for j in queue] == [job.id]
    view = queue[0].public()
    assert view["spec"] == SPEC and view["spec_hash"] == job.spec_hash and view["cost"] == COST.as_json()
    approved = policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    assert approved.state is JobState.APPROVED and approved.approved_by == world.owner.name
    assert policies.remaining(world.engine, ag.id)["tax_income"] == Budget.parse(1, "1e-6") - COST
    assert policies.remaining(world.engine, ag.id)["enterprise_registry"] == Budget.parse(1, "1e-6")
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    assert e.value.code == INVALID_REQUEST


def test_auto_within_budget_skips_the_owner(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id)
    assert job.state is JobState.APPROVED and job.approved_by == jobs.AUTO_APPROVER
    assert spent(world, ag.id) == COST


def test_auto_within_budget_exhausted_leaves_nothing(world: World) -> None:
    ag = world.active(approval="auto_within_budget", budget={"epsilon": "0.15", "delta": "1e-6"})
    submit(world, ag.id)
    with pytest.raises(DomainError) as e:
        submit(world, ag.id)
    assert e.value.code == BUDGET_EXHAUSTED
    assert len(policies.list_jobs(world.engine, agreement_id=ag.id)) == 1
    assert spent(world, ag.id) == COST
    usage = policies.usage(world.engine, ag.id, world.now.date(), world.now.date())
    assert usage.jobs == 1 and usage.calls == 1  # the refused submission did not count


def test_approval_bound_to_spec_hash(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, job.id, spec_hash=policies.spec_hash({"sql": "x"}),
                         now=world.now)
    assert e.value.code == INVALID_REQUEST and e.value.details[0]["reason"] == "job.spec_changed"
    assert policies.get_job(world.engine, world.owner, job.id, now=world.now).state is JobState.PENDING_APPROVAL
    assert spent(world, ag.id).is_zero


def test_changed_dataset_rejects_the_job(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    change_fingerprint(world, "tax_income")
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    assert e.value.code == POLICY_DENIED and e.value.details[0]["reason"] == "dataset.changed"
    out = policies.get_job(world.engine, world.bank, job.id, now=world.now)
    assert out.state is JobState.REJECTED and out.rejected_reason == "dataset.changed"
    assert spent(world, ag.id).is_zero


def test_changed_dataset_after_approval_fails_at_claim(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    change_fingerprint(world, "tax_income")
    assert policies.claim_next(world.engine, "w1", now=world.now) is None
    out = jobs.load_job(world.engine, job.id)
    assert out is not None and out.state is JobState.FAILED and out.failure_reason == "dataset.changed"
    assert spent(world, ag.id).is_zero


def test_approval_refused_when_budget_gone(world: World) -> None:
    ag = world.active(budget={"epsilon": "0.15", "delta": "1e-6"})
    a, b = submit(world, ag.id), submit(world, ag.id)
    policies.approve(world.engine, world.owner, a.id, spec_hash=a.spec_hash, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, b.id, spec_hash=b.spec_hash, now=world.now)
    assert e.value.code == BUDGET_EXHAUSTED
    assert jobs.load_job(world.engine, b.id).state is JobState.PENDING_APPROVAL  # type: ignore[union-attr]
    assert spent(world, ag.id) == COST


def test_submit_refused_before_anything_is_stored(world: World) -> None:
    ag = world.active()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"actor": world.stranger}, NOT_FOUND_OR_FORBIDDEN),
        ({"actor": world.owner}, POLICY_DENIED),
        ({"columns": {"tax_income": ["id_number"]}}, POLICY_DENIED),
        ({"datasets": ["social_insurance"], "columns": {}}, POLICY_DENIED),
        ({"purpose": "marketing"}, POLICY_DENIED),
        ({"cost": Budget.parse(2)}, BUDGET_EXHAUSTED),
        ({"kind": "mine"}, INVALID_REQUEST),
        ({"datasets": []}, INVALID_REQUEST),
    ]
    for kw, code in cases:
        with pytest.raises(DomainError) as e:
            submit(world, ag.id, **kw)
        assert e.value.code == code, kw
    with pytest.raises(DomainError) as e:
        submit(world, ag.id, {"x": float("nan")})
    assert e.value.code == INVALID_REQUEST
    assert policies.list_jobs(world.engine, agreement_id=ag.id) == []
    assert spent(world, ag.id).is_zero
    assert policies.usage(world.engine, ag.id, world.now.date(), world.now.date()).calls == 0


def test_job_kind_outside_agreement(world: World) -> None:
    ag = world.active(job_kinds=["query"])
    with pytest.raises(DomainError) as e:
        submit(world, ag.id, kind="code")
    assert e.value.code == POLICY_DENIED and e.value.details[0]["reason"] == "job_kind.not_allowed"


@pytest.mark.parametrize("state", ["proposed", "suspended", "revoked", "expired"])
def test_submit_on_inactive_agreement(world: World, state: str) -> None:
    ag = world.create() if state == "proposed" else world.active()
    now = world.now
    if state == "suspended":
        policies.suspend(world.engine, world.owner, ag.id, now=now)
    elif state == "revoked":
        policies.revoke(world.engine, world.owner, ag.id, now=now)
    elif state == "expired":
        now = world.valid_until
    with pytest.raises(DomainError) as e:
        submit(world, ag.id, now=now)
    assert e.value.code == AGREEMENT_INACTIVE


def test_jobs_per_day_quota(world: World) -> None:
    ag = world.active(quotas={"jobs_per_day": 2})
    submit(world, ag.id)
    submit(world, ag.id)
    with pytest.raises(DomainError) as e:
        submit(world, ag.id)
    assert e.value.code == QUOTA_EXCEEDED and e.value.details[0]["reason"] == "quota.jobs_per_day"
    from datetime import timedelta
    submit(world, ag.id, now=world.now + timedelta(days=1))


def test_reject_and_cancel(world: World) -> None:
    ag = world.active()
    a, b, c = submit(world, ag.id), submit(world, ag.id), submit(world, ag.id)
    with pytest.raises(DomainError) as e:
        policies.reject(world.engine, world.bank, a.id, "no", now=world.now)
    assert e.value.code == POLICY_DENIED
    with pytest.raises(DomainError) as e:
        policies.reject(world.engine, world.other_owner, a.id, "no", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    r = policies.reject(world.engine, world.owner, a.id, "too fine-grained", now=world.now)
    assert r.state is JobState.REJECTED and r.rejected_reason == "too fine-grained"
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, a.id, spec_hash=a.spec_hash, now=world.now)
    assert e.value.code == INVALID_REQUEST
    policies.approve(world.engine, world.owner, b.id, spec_hash=b.spec_hash, now=world.now)
    assert spent(world, ag.id) == COST
    assert policies.cancel(world.engine, world.bank, b.id, now=world.now).state is JobState.CANCELLED
    assert spent(world, ag.id).is_zero  # refunded
    assert policies.cancel(world.engine, world.owner, c.id, now=world.now).state is JobState.CANCELLED
    with pytest.raises(DomainError) as e:
        policies.cancel(world.engine, world.bank, c.id, now=world.now)
    assert e.value.code == INVALID_REQUEST


def test_owner_can_still_reject_on_suspended_agreement(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE
    assert policies.reject(world.engine, world.owner, job.id, "paused", now=world.now).state is JobState.REJECTED


def test_full_run_and_result(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.get_result(world.engine, world.bank, job.id, now=world.now)
    assert e.value.code == INVALID_REQUEST
    claimed = policies.claim_next(world.engine, "w1", now=world.now)
    assert claimed is not None and claimed.id == job.id and claimed.state is JobState.RUNNING
    assert claimed.worker_id == "w1"
    assert policies.claim_next(world.engine, "w2", now=world.now) is None
    policies.succeed(world.engine, job.id, now=world.now)
    result = {"columns": ["district", "count"], "rows": [["Binhu", 12]]}
    released = policies.release(world.engine, job.id, result=result, now=world.now)
    assert released.state is JobState.RELEASED and released.output_digest.startswith("sha256:")  # type: ignore[union-attr]
    got = policies.get_result(world.engine, world.bank, job.id, now=world.now)
    assert got.result == result and got.output_digest == released.output_digest
    with pytest.raises(DomainError) as e:
        policies.refund(world.engine, job.id, now=world.now)  # released: never refunded
    assert e.value.code == INVALID_REQUEST
    with pytest.raises(DomainError) as e:
        policies.fail(world.engine, job.id, "worker.error", now=world.now)
    assert e.value.code == INVALID_REQUEST
    assert spent(world, ag.id) == COST
    for actor in (world.owner, world.regulator):
        with pytest.raises(DomainError) as e:
            policies.get_result(world.engine, actor, job.id, now=world.now)
        assert e.value.code == POLICY_DENIED
    with pytest.raises(DomainError) as e:
        policies.get_result(world.engine, world.stranger, job.id, now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


def test_result_of_pending_job_needs_approval(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    with pytest.raises(DomainError) as e:
        policies.get_result(world.engine, world.bank, job.id, now=world.now)
    assert e.value.code == APPROVAL_REQUIRED


@pytest.mark.parametrize(("on_expiry", "code"), [("seal_outputs", AGREEMENT_INACTIVE), ("keep_outputs", None)])
@pytest.mark.parametrize("ending", ["revoked", "expired"])
def test_exit_clause_on_results(world: World, on_expiry: str, code: str | None, ending: str) -> None:
    ag = world.active(exit={"on_expiry": on_expiry}, approval="auto_within_budget")
    job = submit(world, ag.id)
    policies.claim_next(world.engine, "w", now=world.now)
    policies.succeed(world.engine, job.id, now=world.now)
    policies.release(world.engine, job.id, result_ref="blob://r1", output_digest="sha256:" + "a" * 64,
                     now=world.now)
    now = world.now
    if ending == "revoked":
        policies.revoke(world.engine, world.owner, ag.id, now=now)
    else:
        now = world.valid_until
    if code is None:
        assert policies.get_result(world.engine, world.bank, job.id, now=now).result_ref == "blob://r1"
    else:
        with pytest.raises(DomainError) as e:
            policies.get_result(world.engine, world.bank, job.id, now=now)
        assert e.value.code == code
        assert e.value.details[-1]["reason"] == "agreement.outputs_sealed"


def test_failed_run_is_refunded_and_refunded_job_never_released(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id)
    policies.claim_next(world.engine, "w", now=world.now)
    policies.succeed(world.engine, job.id, now=world.now)
    failed = policies.fail(world.engine, job.id, "release.refused", now=world.now)
    assert failed.state is JobState.FAILED and failed.failure_reason == "release.refused"
    assert spent(world, ag.id).is_zero
    with pytest.raises(DomainError) as e:
        policies.release(world.engine, job.id, result={"x": 1}, now=world.now)
    assert e.value.code == INVALID_REQUEST


def test_illegal_transitions_raise(world: World) -> None:
    ag = world.active()
    job = submit(world, ag.id)
    for fn in (lambda: policies.succeed(world.engine, job.id, now=world.now),
               lambda: policies.release(world.engine, job.id, result={"x": 1}, now=world.now),
               lambda: policies.start(world.engine, job.id, "w", now=world.now),
               lambda: policies.fail(world.engine, job.id, "x", now=world.now)):
        with pytest.raises(DomainError) as e:
            fn()
        assert e.value.code == INVALID_REQUEST
        assert e.value.details[0] == {**e.value.details[0], "reason": "job.wrong_state", "state": "pending_approval"}
    with pytest.raises(DomainError) as e:
        policies.succeed(world.engine, "job_missing", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    for state, targets in jobs.TRANSITIONS.items():
        assert all(isinstance(s, JobState) for s in targets)
        assert (not targets) == (state in jobs.TERMINAL)


def test_inline_query_is_not_queued(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id, inline=True)
    assert job.inline and job.state is JobState.APPROVED
    assert policies.claim_next(world.engine, "w", now=world.now) is None
    running = policies.start(world.engine, job.id, "gateway", now=world.now)
    assert running.state is JobState.RUNNING
    # with owner approval an "inline" request is queued for a worker after approval
    ag2 = world.active()
    job2 = submit(world, ag2.id, inline=True)
    assert not job2.inline and job2.state is JobState.PENDING_APPROVAL


def test_start_refuses_after_suspension(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id, inline=True)
    policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.start(world.engine, job.id, "gateway", now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE
    assert jobs.load_job(world.engine, job.id).state is JobState.FAILED  # type: ignore[union-attr]
    assert spent(world, ag.id).is_zero


def test_visibility(world: World) -> None:
    ag = world.active()
    other = world.active(grantee=world.operator.name)
    mine = submit(world, ag.id)
    theirs = submit(world, other.id, actor=world.operator)
    assert policies.get_job(world.engine, world.regulator, mine.id, now=world.now).id == mine.id
    with pytest.raises(DomainError) as e:
        policies.get_job(world.engine, world.operator, mine.id, now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    ids = lambda actor, **kw: {j.id for j in policies.jobs_visible_to(world.engine, actor, **kw)}  # noqa: E731
    assert ids(world.bank) == {mine.id}
    assert ids(world.operator) == {theirs.id}
    assert ids(world.owner) == ids(world.regulator) == {mine.id, theirs.id}
    assert ids(world.other_owner) == set()
    assert ids(world.owner, state="approved") == set()


def test_concurrent_claimers_never_share_a_job(world: World) -> None:
    ag = world.active(approval="auto_within_budget", budget={"epsilon": 10, "delta": "1e-5"})
    submitted = {submit(world, ag.id).id for _ in range(24)}
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        while (job := policies.claim_next(world.engine, f"w{n}", now=world.now)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(claimed) == len(set(claimed)) == 24
    assert set(claimed) == submitted


def test_outputs_awaiting_release_and_owner_detail_are_stored_with_the_state_change(world: World) -> None:
    """``job_outputs``: `succeed` stores the pending output and owner detail in its transaction, `release` drops
    the pending output as the result is stored, `fail` drops it and stores the owner-only cause; a state change
    that does not happen stores nothing."""
    ag = world.active(approval="auto_within_budget")
    pending = {"kind": "json", "result": {"n": 3}, "output_digest": "sha256:" + "b" * 64, "artifact": None,
               "model": None}
    released_job = submit(world, ag.id)
    policies.claim_next(world.engine, "w", now=world.now)
    assert policies.job_output(world.engine, released_job.id) is None
    policies.succeed(world.engine, released_job.id, now=world.now, pending=pending, owner_detail={"stdout": "hi"})
    out = policies.job_output(world.engine, released_job.id)
    assert out is not None and out.pending == pending and out.owner_detail == {"stdout": "hi"}
    policies.release(world.engine, released_job.id, result={"n": 3}, now=world.now)
    out = policies.job_output(world.engine, released_job.id)
    assert out is not None and out.pending is None and out.owner_detail == {"stdout": "hi"}

    refused = submit(world, ag.id)
    policies.claim_next(world.engine, "w", now=world.now)
    policies.succeed(world.engine, refused.id, now=world.now, pending=pending)
    policies.fail(world.engine, refused.id, "release.refused_by_owner", refund=False, now=world.now)
    out = policies.job_output(world.engine, refused.id)
    assert out is not None and out.pending is None and out.owner_detail is None

    failed = submit(world, ag.id)
    policies.claim_next(world.engine, "w", now=world.now)
    policies.fail(world.engine, failed.id, "code.failed", refund=False, now=world.now,
                  owner_detail={"failure": "code.exited"})
    out = policies.job_output(world.engine, failed.id)
    assert out is not None and out.pending is None and out.owner_detail == {"failure": "code.exited"}
    with pytest.raises(DomainError):  # already failed: the detail of a move that did not happen is not stored
        policies.fail(world.engine, failed.id, "code.failed", now=world.now, owner_detail={"failure": "other"})
    assert policies.job_output(world.engine, failed.id).owner_detail == {"failure": "code.exited"}  # type: ignore[union-attr]
