"""A queued query job's timestamps over real HTTP (issue 12): ``finished_at`` (and ``released_at``, the same
instant) lies a whole, non-zero number of latency buckets after ``started_at`` — for an answer and for a residual
failure alike. The worker's wait is observed through `gateway.services.jobs._sleep` (not slept: no timing asserted)."""

from __future__ import annotations

import datetime as dt

from tests.system.http.jobs.test_jobs_query_http import COUNT_BY_DISTRICT, _fail_next_execute

BUCKET_MS = 10_000  # longer than any run here: every job ends exactly one bucket after it started


def _approved_run(parties, ag_id: str) -> dict:
    """Submit, approve and wait for the released job (``succeeded`` is passed on the way: not a final state here)."""
    job = parties.operator.submit_job(ag_id, "query", {"sql": COUNT_BY_DISTRICT, "epsilon": "0.5"})
    parties.owner.approve_job(job["id"], job["spec_hash"])
    return parties.operator.wait_job(job["id"], timeout=120, until=("released", "failed", "rejected", "cancelled"))


def _ts(job: dict, key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(job[key])


def test_a_queued_query_finishes_on_a_latency_bucket_boundary(parties, monkeypatch):
    from gateway import latency
    from gateway.services import jobs as jobflow
    from sandbox.sql import service as sql_service

    waits: list[float] = []

    async def no_pad(started: float, bucket_ms: int) -> None:  # the routes' own padding, not under test here
        return None

    monkeypatch.setattr(jobflow, "_sleep", waits.append)
    monkeypatch.setattr(latency, "pad", no_pad)
    monkeypatch.setattr(sql_service, "_pad", lambda start, bucket_ms: None)  # the run's own padding, likewise
    monkeypatch.setitem(parties.service.settings.__dict__, "latency_bucket_ms", BUCKET_MS)
    ag = parties.agreement(approval="owner_each_job")
    normal = _approved_run(parties, ag["id"])
    fired = _fail_next_execute(monkeypatch, "timeout")
    failed = _approved_run(parties, ag["id"])
    assert fired == ["timeout"]
    bucket = dt.timedelta(milliseconds=BUCKET_MS)
    for job in (normal, failed):
        assert job["state"] == "released" and job["failure_reason"] is None
        assert _ts(job, "finished_at") - _ts(job, "started_at") == bucket
        assert job["released_at"] == job["finished_at"]
    assert len(waits) == 2 and all(0 < w <= BUCKET_MS / 1000 for w in waits)


def test_without_a_bucket_the_worker_does_not_wait(parties, monkeypatch):
    from gateway.services import jobs as jobflow

    waits: list[float] = []
    monkeypatch.setattr(jobflow, "_sleep", waits.append)
    ag = parties.agreement(approval="owner_each_job")
    done = _approved_run(parties, ag["id"])
    assert done["state"] == "released" and waits == []
    assert _ts(done, "started_at") <= _ts(done, "finished_at") <= _ts(done, "released_at")
