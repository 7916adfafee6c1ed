"""An inline query's store path: the decision read once before the plan (`policies.submission_context`), the job
stored ``running`` with its debit in one write transaction (`policies.submit` with ``start``), released with its
result in one more (`policies.finish`). The guarantees are those of the longer path: nothing over-debited, a
refunded or swept job never released, a stranded one swept. Time is the world's fake clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

import policies
from catalog.errors import AGREEMENT_INACTIVE, INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, DomainError
from policies import Action, Budget, JobState, jobs, ledger

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district", "epsilon": "0.1"}
COST = Budget.parse("0.1", "0")
LEASE = 30.0
SQLITE = pytest.mark.parametrize("store", ["sqlite"])  # the new SQL runs on both stores in the finish test only


@contextmanager
def transactions(engine: Any) -> Iterator[list[str]]:
    """The transactions begun (and how each ended) while the block runs."""
    seen: list[str] = []

    def begin(_conn: Any) -> None:
        seen.append("begin")

    def commit(_conn: Any) -> None:
        seen.append("commit")

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(engine, "begin", begin)
        event.remove(engine, "commit", commit)


def start(world: World, ag_id: str, **kw: Any) -> policies.Job:
    loaded = policies.submission_context(world.engine, world.bank, Action.QUERY_RUN, ag_id, world.now)
    return policies.submit(world.engine, world.bank, ag_id, "query", SPEC, datasets=["tax_income"],
                           columns={"tax_income": ["district"]}, cost=COST, now=world.now, inline=True,
                           lease_owner="p1", lease_s=LEASE, context=loaded, start=True, **kw)


@SQLITE
def test_one_read_then_one_write_stores_the_job_running_leased_and_charged(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    with transactions(world.engine) as seen:
        job = start(world, ag.id)
    assert seen == ["begin", "begin", "commit"]  # the decision's read, the submission's write
    assert job.state is JobState.RUNNING and job.inline and job.worker_id == "p1" and job.started_at is not None
    assert job.approved_by == "auto_within_budget"
    assert ledger.status(world.engine, ag.id).spent == COST
    assert policies.sweep_expired(world.engine, now=world.now + dt.timedelta(seconds=1)) == []  # leased


def test_finish_releases_in_one_transaction_and_only_once(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = start(world, ag.id)
    with transactions(world.engine) as seen:
        done, stored = policies.finish(world.engine, job.id, result={"rows": [[1, 2.5]], "columns": ["a", "b"]},
                                       output_digest="sha256:" + "0" * 64, now=world.now)
    assert seen == ["begin", "commit"]
    assert done.state is JobState.RELEASED and done.finished_at == done.released_at and done.has_result
    assert stored == {"columns": ["a", "b"], "rows": [[1, 2.5]]}
    assert policies.get_result(world.engine, world.bank, job.id, now=world.now).result == stored
    with pytest.raises(DomainError) as e:  # released: never again
        policies.finish(world.engine, job.id, result={}, output_digest="sha256:" + "0" * 64, now=world.now)
    assert e.value.code == INVALID_REQUEST and e.value.details[0]["state"] == "released"


@SQLITE
def test_a_swept_job_is_never_released_and_its_refund_stands(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    job = start(world, ag.id)
    (swept,) = policies.sweep_expired(world.engine, now=world.now + dt.timedelta(seconds=LEASE + 1))
    assert swept.refunded
    with pytest.raises(DomainError) as e:
        policies.finish(world.engine, job.id, result={"n": 1}, output_digest="sha256:" + "0" * 64, now=world.now)
    assert e.value.code == INVALID_REQUEST
    assert jobs.load_job(world.engine, job.id).state is JobState.FAILED  # type: ignore[union-attr]
    assert ledger.status(world.engine, ag.id).spent.is_zero


@SQLITE
def test_the_debit_rechecks_the_agreement_decided_on_a_moment_before(world: World) -> None:
    """The context was read while the agreement was active; it was suspended before the write: nothing is stored,
    nothing spent."""
    ag = world.active(approval="auto_within_budget")
    loaded = policies.submission_context(world.engine, world.bank, Action.QUERY_RUN, ag.id, world.now)
    policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.submit(world.engine, world.bank, ag.id, "query", SPEC, datasets=["tax_income"],
                        columns={"tax_income": ["district"]}, cost=COST, now=world.now, inline=True,
                        lease_owner="p1", context=loaded, start=True)
    assert e.value.code == AGREEMENT_INACTIVE
    assert policies.list_jobs(world.engine, agreement_id=ag.id) == []
    assert ledger.status(world.engine, ag.id).spent.is_zero


@SQLITE
def test_the_budget_is_never_over_debited_through_the_short_path(world: World) -> None:
    ag = world.active(approval="auto_within_budget", budget={"epsilon": 0.25, "delta": 0})
    start(world, ag.id)
    start(world, ag.id)
    with pytest.raises(DomainError):
        start(world, ag.id)  # 0.3 > 0.25: refused, nothing stored
    assert ledger.status(world.engine, ag.id).spent == COST.times(2)
    assert len(policies.list_jobs(world.engine, agreement_id=ag.id)) == 2


@SQLITE
def test_only_a_party_gets_a_submission_context(world: World) -> None:
    ag = world.active(approval="auto_within_budget")
    with pytest.raises(DomainError) as e:
        policies.submission_context(world.engine, world.stranger, Action.QUERY_RUN,
                                    ag.id, world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
