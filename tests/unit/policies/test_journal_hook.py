"""The ``journal`` hook (`policies.journal`): called in the transaction of the change, as its last write, with the
change visible; a journal that raises rolls the change back whole. On SQLite and PostgreSQL."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from sqlalchemy import Connection, select

import policies
from policies import Actor, Budget, ledger
from policies import _tables as t

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
BOTH = ["tax_income", "enterprise_registry"]
COST = Budget.parse("0.1", "0")


class Full(OSError):
    def __init__(self) -> None:
        super().__init__(errno.ENOSPC, "No space left on device")


def failing(seen: list[Any], read: Any = None) -> Any:
    """A journal that records what its transaction sees, then fails like a full disk."""

    def journal(conn: Connection, *rest: Any) -> None:
        seen.append(read(conn) if read else rest)
        raise Full

    return journal


def _spent(world: World, agreement_id: str) -> dict[str, Budget]:
    return {a.dataset: a.spent for a in ledger.accounts(world.engine, agreement_id)}


def _state(world: World, job_id: str) -> str:
    with world.engine.connect() as conn:
        return str(conn.execute(select(t.jobs.c.state).where(t.jobs.c.id == job_id)).scalar_one())


def _grantee(ag: policies.Agreement) -> Actor:
    return Actor(ag.grantee, "operator" if ag.grantee == "city-ops" else "bank")


def test_a_failing_journal_rolls_back_a_debit_and_a_refund(world: World) -> None:
    ag = world.active()
    seen: list[Any] = []
    with pytest.raises(Full):
        policies.charge(world.engine, ag.id, BOTH, COST, "job-1", now=world.now, journal=failing(
            seen, lambda c: len(c.execute(select(t.budget_entries)).all())))
    assert seen == [2] and all(s.is_zero for s in _spent(world, ag.id).values())  # saw its debits; none kept
    assert ledger.entries(world.engine, job_id="job-1") == []
    policies.charge(world.engine, ag.id, BOTH, COST, "job-1", now=world.now)
    with pytest.raises(Full):
        policies.refund(world.engine, "job-1", now=world.now, journal=failing(seen))
    assert all(s == COST for s in _spent(world, ag.id).values())  # still charged
    calls: list[Connection] = []
    assert policies.refund(world.engine, "job-1", now=world.now, journal=calls.append) == COST
    assert len(calls) == 1 and all(s.is_zero for s in _spent(world, ag.id).values())
    assert policies.refund(world.engine, "job-1", now=world.now, journal=calls.append) is None
    assert len(calls) == 1  # nothing refunded: nothing to record


def test_a_failing_journal_rolls_back_a_submission_its_meters_and_its_charge(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    grantee = _grantee(ag)
    job_id = policies.new_job_id()
    seen: list[Any] = []
    with pytest.raises(Full):
        policies.submit(world.engine, grantee, ag.id, "query", {"sql": "x"}, datasets=["tax_income"], cost=COST,
                        now=world.now, job_id=job_id,
                        journal=failing(seen, lambda c: policies.job_in(c, job_id).state.value))
    assert seen == ["approved"]
    assert policies.list_jobs(world.engine) == [] and all(s.is_zero for s in _spent(world, ag.id).values())
    with world.engine.connect() as conn:
        assert conn.execute(select(t.metering)).all() == []
    job = policies.submit(world.engine, grantee, ag.id, "query", {"sql": "x"}, datasets=["tax_income"], cost=COST,
                          now=world.now, job_id=job_id)
    assert job.id == job_id and job.state is policies.JobState.APPROVED


def test_a_failing_journal_leaves_a_job_where_it_was(world: World) -> None:
    ag = world.active()
    grantee = _grantee(ag)
    job = policies.submit(world.engine, grantee, ag.id, "query", {"sql": "x"}, datasets=["tax_income"], cost=COST,
                          now=world.now)
    with pytest.raises(Full):
        policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now,
                         journal=failing([]))
    assert _state(world, job.id) == "pending_approval" and all(s.is_zero for s in _spent(world, ag.id).values())
    policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    seen: list[Any] = []
    with pytest.raises(Full):
        policies.claim_next(world.engine, "w1", now=world.now, journal=failing(seen))
    assert [s[0].state for s in seen] == [policies.JobState.RUNNING] and _state(world, job.id) == "approved"
    claimed = policies.claim_next(world.engine, "w1", now=world.now)
    assert claimed is not None and claimed.id == job.id
    for move in (lambda j: policies.fail(world.engine, job.id, "x.failed", now=world.now, journal=j),
                 lambda j: policies.succeed(world.engine, job.id, now=world.now, journal=j)):
        with pytest.raises(Full):
            move(failing([]))
        assert _state(world, job.id) == "running"
    assert _spent(world, ag.id)["tax_income"] == COST  # the job reads tax_income: charged there, still


def test_a_failing_journal_rolls_back_agreement_changes(world: World) -> None:
    with pytest.raises(Full):
        policies.create_agreement(world.engine, world.owner, world.document(), now=world.now, journal=failing([]))
    assert policies.list_agreements(world.engine, world.regulator, now=world.now) == []
    ag_id = policies.new_agreement_id()
    seen: list[Any] = []
    ag = policies.create_agreement(world.engine, world.owner, world.document(), now=world.now, agreement_id=ag_id,
                                   journal=lambda c: seen.append(policies.agreement_in(c, ag_id).state.value))
    assert ag.id == ag_id and seen == ["proposed"]
    with pytest.raises(Full):
        policies.accept(world.engine, _grantee(ag), ag.id, now=world.now, journal=failing([]))
    assert policies.load_agreement(world.engine, ag.id).state.value == "proposed"  # type: ignore[union-attr]
    policies.accept(world.engine, _grantee(ag), ag.id, now=world.now)
    with pytest.raises(Full):
        policies.revoke(world.engine, world.owner, ag.id, now=world.now, journal=failing([]))
    assert policies.load_agreement(world.engine, ag.id).state.value == "active"  # type: ignore[union-attr]
