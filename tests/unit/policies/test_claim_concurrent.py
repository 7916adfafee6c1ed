"""Concurrent claimers on one store (`policies.claim_next`): ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite. Four workers racing over a queue of jobs claim every job exactly once, each leased to
the worker that claimed it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

import policies
from policies import Budget
from policies import _tables as pt

SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district", "epsilon": "0.1"}
JOBS = 12


def test_racing_workers_claim_every_job_exactly_once(world: Any) -> None:
    ag = world.active(approval="auto_within_budget", budget={"epsilon": 10, "delta": 1e-5})
    submitted = {policies.submit(world.engine, world.bank, ag.id, "query", SPEC, datasets=["tax_income"],
                                 columns={"tax_income": ["district"]}, cost=Budget.parse("0.1", "1e-7"),
                                 now=world.now).id for _ in range(JOBS)}
    start = threading.Barrier(4)

    def work(worker: str) -> list[str]:
        start.wait()
        mine = []
        while (job := policies.claim_next(world.engine, worker, now=world.now, lease_s=30)) is not None:
            mine.append(job.id)
        return mine

    with ThreadPoolExecutor(4) as pool:
        claims = dict(zip(["w1", "w2", "w3", "w4"], pool.map(work, ["w1", "w2", "w3", "w4"]), strict=True))
    everything = [jid for ids in claims.values() for jid in ids]
    assert sorted(everything) == sorted(submitted)  # every job once, none twice
    with world.engine.connect() as conn:
        rows = conn.execute(select(pt.jobs.c.id, pt.jobs.c.state, pt.jobs.c.worker_id, pt.jobs.c.lease_owner)).all()
    holder = {jid: w for w, ids in claims.items() for jid in ids}
    assert {r.id: (r.state, r.worker_id, r.lease_owner) for r in rows} == {
        jid: ("running", holder[jid], holder[jid]) for jid in submitted}
