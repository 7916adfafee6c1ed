"""Job leases: taken with the claim (or with an inline query's submission), renewed by the holder, cleared with the
outcome; `sweep_expired` takes over only jobs whose lease expired. Time is the world's fake clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

import policies
from policies import Budget, JobState, jobs, ledger
from policies import _tables as pt

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district", "epsilon": "0.1"}
COST = Budget.parse("0.1", "1e-7")
LEASE = 30.0


def submit(world: World, ag_id: str, **kw: Any) -> policies.Job:
    return policies.submit(world.engine, world.bank, ag_id, "query", SPEC, datasets=["tax_income"],
                           columns={"tax_income": ["district"]}, cost=COST, now=world.now, **kw)


def lease(world: World, job_id: str) -> tuple[str | None, dt.datetime | None]:
    with world.engine.connect() as conn:
        row = conn.execute(select(pt.jobs.c.lease_owner, pt.jobs.c.lease_expires_at)
                           .where(pt.jobs.c.id == job_id)).one()
    exp = row.lease_expires_at
    return row.lease_owner, None if exp is None else exp.replace(tzinfo=dt.UTC) if exp.tzinfo is None else exp


def spent(world: World, ag_id: str) -> Budget:
    return ledger.status(world.engine, ag_id).spent


def later(world: World, seconds: float) -> dt.datetime:
    return world.now + dt.timedelta(seconds=seconds)


def test_claim_takes_a_lease_renewal_extends_it_and_the_outcome_clears_it(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id)
    assert lease(world, job.id) == (None, None)  # queued: nobody holds it
    claimed = policies.claim_next(world.engine, "w1", now=world.now, lease_s=LEASE)
    assert claimed is not None and lease(world, job.id) == ("w1", later(world, LEASE))
    assert policies.renew_lease(world.engine, job.id, "w1", lease_s=LEASE, now=later(world, 20))
    assert lease(world, job.id) == ("w1", later(world, 50))
    assert not policies.renew_lease(world.engine, job.id, "w2", lease_s=LEASE, now=later(world, 20))  # not its own
    policies.succeed(world.engine, job.id, now=later(world, 21), keep_lease=True)  # the release follows at once
    assert lease(world, job.id)[0] == "w1"
    policies.release(world.engine, job.id, result={"n": 1}, now=later(world, 22))
    assert lease(world, job.id) == (None, None)
    assert not policies.renew_lease(world.engine, job.id, "w1", lease_s=LEASE, now=later(world, 23))


def test_an_output_left_for_the_owner_and_a_failure_clear_the_lease(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    a, b = submit(world, ag.id), submit(world, ag.id)
    for _ in range(2):
        policies.claim_next(world.engine, "w1", now=world.now, lease_s=LEASE)
    policies.succeed(world.engine, a.id, now=world.now, pending={"kind": "json", "result": {}})
    policies.fail(world.engine, b.id, "code.failed", refund=False, now=world.now)
    assert lease(world, a.id) == lease(world, b.id) == (None, None)
    assert policies.sweep_expired(world.engine, now=later(world, 10 * LEASE)) == []  # awaiting the owner: kept
    assert jobs.load_job(world.engine, a.id).state is JobState.SUCCEEDED  # type: ignore[union-attr]


def test_a_fresh_lease_is_never_swept_an_expired_one_is_failed_and_refunded(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    for _ in range(3):
        submit(world, ag.id)
    fresh = policies.claim_next(world.engine, "alive", now=world.now, lease_s=LEASE)
    dead = policies.claim_next(world.engine, "dead", now=world.now - dt.timedelta(seconds=LEASE + 1), lease_s=LEASE)
    assert fresh is not None and dead is not None
    assert spent(world, ag.id) == COST.times(3)
    swept = policies.sweep_expired(world.engine, now=world.now)
    assert [s.before.id for s in swept] == [dead.id] and swept[0].refunded
    assert swept[0].before.state is JobState.RUNNING and swept[0].after.failure_reason == "worker.interrupted"
    assert jobs.load_job(world.engine, fresh.id).state is JobState.RUNNING  # type: ignore[union-attr]
    queued = policies.list_jobs(world.engine, owner=world.owner.name, state="approved")
    assert len(queued) == 1  # a queued job (no lease, not inline) waits for a worker: never swept
    assert spent(world, ag.id) == COST.times(2)  # refunded exactly once
    assert policies.sweep_expired(world.engine, now=world.now) == []
    # the holder of the fresh lease stops renewing: once it expired, the next sweep takes it over
    assert policies.sweep_expired(world.engine, now=later(world, LEASE - 1)) == []
    assert [s.before.id for s in policies.sweep_expired(world.engine, now=later(world, LEASE + 1))] == [fresh.id]
    assert not policies.renew_lease(world.engine, fresh.id, "alive", lease_s=LEASE, now=later(world, LEASE + 2))
    assert spent(world, ag.id) == COST


def test_a_renewed_lease_survives_a_sweep_that_would_have_taken_it(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    submit(world, ag.id)
    job = policies.claim_next(world.engine, "w1", now=world.now, lease_s=LEASE)
    assert job is not None
    for t in range(10, 200, 10):  # the heartbeat keeps it: no sweep at any moment takes it
        assert policies.renew_lease(world.engine, job.id, "w1", lease_s=LEASE, now=later(world, t))
        assert policies.sweep_expired(world.engine, now=later(world, t + 5)) == []


def test_an_inline_query_is_leased_from_submission_and_swept_when_stranded_in_approved(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id, inline=True, lease_owner="p1", lease_s=LEASE)
    assert job.state is JobState.APPROVED and lease(world, job.id) == ("p1", later(world, LEASE))
    assert policies.sweep_expired(world.engine, now=later(world, 1)) == []
    (s,) = policies.sweep_expired(world.engine, now=later(world, LEASE + 1))  # its request died before running it
    assert s.before.state is JobState.APPROVED and s.after.state is JobState.FAILED and s.refunded
    assert spent(world, ag.id).is_zero


def test_an_inline_query_started_is_leased_to_its_runner(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = submit(world, ag.id, inline=True, lease_owner="p1", lease_s=LEASE)
    policies.start(world.engine, job.id, "p1", now=later(world, 1), lease_s=LEASE)
    assert lease(world, job.id) == ("p1", later(world, 1 + LEASE))


def test_a_job_stuck_in_succeeded_is_failed_charged_when_its_lease_expires(world: World) -> None:
    """The output was to be released at once and died with its process: data was read, so the charge stays and
    the public reason is the kind's uniform one; the cause is the owner's."""
    ag = world.active(approval="auto_within_budget")
    submit(world, ag.id)
    job = policies.claim_next(world.engine, "w1", now=world.now, lease_s=LEASE)
    assert job is not None
    policies.succeed(world.engine, job.id, now=world.now, keep_lease=True)
    assert policies.sweep_expired(world.engine, now=later(world, 1)) == []
    (s,) = policies.sweep_expired(world.engine, now=later(world, LEASE + 1))
    assert s.before.state is JobState.SUCCEEDED and not s.refunded
    assert s.after.state is JobState.FAILED and s.after.failure_reason == "query.failed"
    assert spent(world, ag.id) == COST
    out = policies.job_output(world.engine, job.id)
    assert out is not None and out.owner_detail == {"failure": "worker.interrupted"} and out.pending is None


def test_rows_from_before_leases_count_as_expired(world: World) -> None:
    """A ``running`` row without a lease (left by a process from before leases) is taken over at once."""
    ag = world.active(approval="auto_within_budget")
    submit(world, ag.id)
    job = policies.claim_next(world.engine, "old", now=world.now, lease_s=LEASE)
    assert job is not None
    with world.engine.begin() as conn:
        conn.execute(update(pt.jobs).where(pt.jobs.c.id == job.id).values(lease_owner=None, lease_expires_at=None))
    assert [s.before.id for s in policies.sweep_expired(world.engine, now=world.now)] == [job.id]
