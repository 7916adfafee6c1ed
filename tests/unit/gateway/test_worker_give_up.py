"""A stopping job worker gives up the job it still runs (`gateway.worker.JobWorker.give_up`): it ends its own
lease and sweeps, so the job is failed and refunded at once (``job.recover``) instead of when the lease would have
expired; a job that is no longer its own, or another process's, is never touched."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from gateway.context import init_home, open_context
from gateway.worker import JobWorker
from policies import _tables as pt
from tests.unit.gateway.test_job_leases import _running_job


def _job(engine, job_id: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        r = conn.execute(select(pt.jobs.c.state, pt.jobs.c.failure_reason).where(pt.jobs.c.id == job_id)).one()
    return r.state, r.failure_reason


def _recovered(ctx) -> list[str]:
    rows, _ = ctx.audit.entries(limit=1000)
    return [(e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]))["job_id"]
            for e in rows if e["action"] == "job.recover"]


def test_a_stopping_worker_gives_up_its_own_job_at_once(settings):
    init_home(settings)
    ctx = open_context(settings)
    try:
        worker = JobWorker(ctx)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        _running_job(ctx.engine, "job_mine", worker.id, later)
        _running_job(ctx.engine, "job_other", "another-process", later)
        assert worker.give_up() is False  # nothing current: nothing to give up
        worker._current = "job_mine"  # what run_once records while the job runs
        assert worker.give_up() is True
        assert _job(ctx.engine, "job_mine") == ("failed", "worker.interrupted")
        assert _job(ctx.engine, "job_other") == ("running", None)  # another live process's lease: untouched
        assert _recovered(ctx) == ["job_mine"]
        assert worker.give_up() is False  # already taken over: no second takeover, no second entry
        assert _recovered(ctx) == ["job_mine"]
    finally:
        ctx.close()


def test_a_worker_never_gives_up_a_job_leased_to_another(settings):
    init_home(settings)
    ctx = open_context(settings)
    try:
        worker = JobWorker(ctx)
        _running_job(ctx.engine, "job_theirs", "another-process", dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
        worker._current = "job_theirs"
        assert worker.give_up() is False
        assert _job(ctx.engine, "job_theirs") == ("running", None) and _recovered(ctx) == []
    finally:
        ctx.close()
