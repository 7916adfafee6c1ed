"""Leases in the service (`gateway.services.leases`, `gateway.worker`): two contexts on one store stand for two
processes. A worker starting on the store sweeps only expired leases, audits each takeover, and the heartbeat
keeps a running job's lease fresh."""

from __future__ import annotations

import datetime as dt
import json
import time

from sqlalchemy import select, update

import policies
from gateway.context import init_home, open_context
from gateway.services import leases
from gateway.worker import JobWorker
from policies import _tables as pt


def _running_job(engine, job_id: str, owner: str, expires: dt.datetime, state: str = "running") -> None:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        if conn.execute(pt.agreements.select()).first() is None:
            conn.execute(pt.agreements.insert().values(
                id="ag_1", owner="tax", grantee="bank", title="t", state="active", version=1, document_hash="x",
                document_json="{}", valid_from=now, valid_until=now, created_at=now, updated_at=now,
                expired_recorded=False))
        conn.execute(pt.jobs.insert().values(
            id=job_id, agreement_id="ag_1", kind="query", spec_json="{}", spec_hash="sha256:x",
            fingerprints_json='{"tax_income": "sha256:f"}', columns_json="{}", inline=False, state=state,
            created_by="bank", created_at=now, updated_at=now, cost_epsilon="1/1", cost_delta="0/1",
            worker_id=owner, started_at=now, lease_owner=owner, lease_expires_at=expires))


def _state(engine, job_id: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(pt.jobs.c.state).where(pt.jobs.c.id == job_id)).scalar_one())


def _entries(ctx, action: str) -> list[dict]:
    rows, _ = ctx.audit.entries(limit=1000)
    out = []
    for e in rows:
        if e["action"] == action:
            d = e["details"]
            out.append(d if isinstance(d, dict) else json.loads(d))
    return out


def test_a_second_process_sweeps_only_expired_leases(settings):
    init_home(settings)
    first, second = open_context(settings), open_context(settings)
    try:
        now = dt.datetime.now(dt.UTC)
        _running_job(first.engine, "job_held", "first-process", now + dt.timedelta(minutes=10))
        _running_job(first.engine, "job_dead", "dead-process", now - dt.timedelta(seconds=1))
        JobWorker(second).start_recovery()  # what a second `veilbox serve` does at start
        assert _state(first.engine, "job_held") == "running"  # the first process's lease is fresh: untouched
        assert _state(first.engine, "job_dead") == "failed"
        recovered = _entries(second, "job.recover")
        assert [(d["job_id"], d["reason"], d["refunded"]) for d in recovered] == [
            ("job_dead", "worker.interrupted", True)]
        assert policies.renew_lease(first.engine, "job_held", "first-process", lease_s=60)  # still its own
    finally:
        first.close()
        second.close()


def test_a_stuck_succeeded_job_is_failed_charged_with_its_incident_audited(settings):
    init_home(settings)
    ctx = open_context(settings)
    try:
        _running_job(ctx.engine, "job_stuck", "gone", dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                     state="succeeded")
        (s,) = leases.sweep(ctx)
        assert s.after.failure_reason == "query.failed" and not s.refunded
        assert [(d["job_id"], d["reason"], d["refunded"]) for d in _entries(ctx, "job.fail")] == [
            ("job_stuck", "query.failed", False)]
        assert [(d["cause"], d["charged"]) for d in _entries(ctx, "job.incident")] == [("worker.interrupted", True)]
    finally:
        ctx.close()


def test_the_heartbeat_renews_the_lease_and_notices_when_it_is_lost(settings):
    init_home(settings)
    ctx = open_context(settings)
    try:
        start = dt.datetime.now(dt.UTC)
        _running_job(ctx.engine, "job_beat", "me", start + dt.timedelta(seconds=0.3))
        with leases.Heartbeat(ctx, "job_beat", "me", lease_s=0.3) as hb:
            deadline = time.monotonic() + 60
            while hb.beats < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hb.beats >= 2 and not hb.lost
            with ctx.engine.connect() as conn:
                exp = conn.execute(select(pt.jobs.c.lease_expires_at).where(pt.jobs.c.id == "job_beat")).scalar_one()
            assert exp > start + dt.timedelta(seconds=0.3)  # moved on by the beats
            with ctx.engine.begin() as conn:  # a sweeper took the job over
                conn.execute(update(pt.jobs).where(pt.jobs.c.id == "job_beat")
                             .values(state="failed", lease_owner=None, lease_expires_at=None))
            while not hb.lost and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hb.lost
    finally:
        ctx.close()


def test_the_process_id_is_stable_and_random():
    assert leases.process_id() == leases.process_id()
    assert len(leases.process_id().rsplit("-", 1)[-1]) == 8
