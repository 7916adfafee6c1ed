"""Reads of the audit log and job polls are entered once per principal, action and minute (`gateway.reads`): many
polls leave a bounded number of entries, the reads stay traceable, refusals are entered each time, and a regulator
paging the log one entry at a time reaches its end."""

import json

import httpx
import pytest
from sqlalchemy import select

from gateway import _tables as t

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"])


def _entries(service, actor, action):
    e = t.audit_entries.c
    with service.ctx.engine.connect() as conn:
        return [(r.decision, json.loads(r.details)) for r in
                conn.execute(select(e.decision, e.details).where(e.actor == actor, e.action == action))]


def test_polls_and_audit_reads_do_not_grow_the_log(service, store):
    bank = service.admin.create_principal("icbc-wuxi", "bank")["token"]
    reg = service.admin.create_principal("regulator", "regulator")["token"]
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {bank}"}, timeout=60) as http:
        for _ in range(20):
            assert http.get("/v1/jobs").status_code == 200
        for _ in range(3):  # refused reads are entered each time
            assert http.get("/v1/jobs/job_nope").status_code == 404
    polls = _entries(service, "icbc-wuxi", "job.list")
    assert 1 <= len(polls) <= 2  # at most one per minute; the test may straddle a minute boundary
    assert all(d["coalesced"] == "minute" and d["window"].endswith("Z") for _, d in polls)
    assert [dec for dec, _ in _entries(service, "icbc-wuxi", "job.show")] == ["deny"] * 3

    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {reg}"}, timeout=60) as http:
        since, pages = 0, 0
        while pages < 500:  # one entry a page: before coalescing, every page added the entry it would read next
            page = http.get("/v1/audit", params={"since": since, "limit": 1}).json()
            pages += 1
            if not page["entries"]:
                break
            since = page["next"]
        assert pages < 500, "paging never reached the end of the log"
    reads = _entries(service, "regulator", "audit.list")
    assert 1 <= len(reads) <= 2 and reads[0][1]["coalesced"] == "minute"
    with service.ctx.engine.connect() as conn:
        assert since == conn.execute(select(t.audit_head.c.seq)).scalar_one()
    assert service.ctx.audit.verify().ok
