"""Private SQL and the job workflow over real HTTP: approval bound to the hash, differencing exhausts the
budget, the attack corpus is refused at the API, no engine text leaks, interrupted jobs are refunded."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from catalog.errors import INVALID_REQUEST
from veilbox.client import ApiError

SHARED = Path(__file__).resolve().parents[3] / "shared"
COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _err(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value


def _corpus(shared, name):
    return [json.loads(line) for line in (shared / "attacks" / name).read_text().splitlines() if line.strip()]


def test_differencing_costs_budget_each_time_and_ends_exhausted(parties):
    ag = parties.agreement(budget={"epsilon": 1})
    pair = ("SELECT COUNT(*) AS n FROM tax_income WHERE age <= 40",
            "SELECT COUNT(*) AS n FROM tax_income WHERE age < 40")
    answered = 0
    with pytest.raises(ApiError) as e:
        for i in range(100):
            parties.operator.query(ag["id"], pair[i % 2], "0.125")
            answered += 1
    assert e.value.code == "BUDGET_EXHAUSTED" and answered == 8
    assert Fraction(parties.operator.budget(ag["id"])["exact"]["epsilon_spent"]) == 1
    entries = parties.regulator.audit(agreement_id=ag["id"], limit=1000)["entries"]
    assert [x["decision"] for x in entries if x["code"] == "BUDGET_EXHAUSTED"] == ["deny"]


def test_attack_corpus_is_refused_through_the_api_without_engine_text(parties):
    ag = parties.agreement()
    before = parties.operator.budget(ag["id"])["exact"]["epsilon_spent"]
    for case in _corpus(SHARED, "sql.jsonl"):
        e = _err(parties.operator.query, ag["id"], case["sql"], 0.1)
        assert e.code in ("QUERY_REJECTED", "INVALID_REQUEST"), case
        # "at" quotes the caller's own SQL back; everything else is ours and must carry no engine text
        ours = [{k: v for k, v in d.items() if k != "at"} for d in e.details]
        body = json.dumps({"message": e.message, "details": ours}).lower()
        home = str(parties.service.settings.home).lower()
        for leak in ("duckdb", "binder error", "parser error", "catalog error", "traceback", home):
            assert leak not in body, (case, leak)
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == before  # nothing spent


def test_allowed_corpus_is_answered_with_noise(parties):
    ag = parties.agreement(budget={"epsilon": 100})
    for case in _corpus(SHARED, "sql_allowed.jsonl")[:12]:
        r = parties.operator.query(ag["id"], case["sql"], 0.5)
        assert r["state"] == "released" and r["cost"]["epsilon"] == 0.5 and r["output_digest"].startswith("sha256:")


def test_preview_spends_nothing_and_shows_the_mock_answer(parties):
    ag = parties.agreement()
    pv = parties.operator.preview_query(ag["id"], COUNT_BY_DISTRICT, 0.5)
    assert "QUALIFY ROW_NUMBER()" in pv["canonical_sql"] and pv["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert pv["expected_error"]["n"] > 0 and len(pv["mock_result"]["rows"]) == 7
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
    assert _err(parties.bank.preview_query, ag["id"], COUNT_BY_DISTRICT, 0.5).code == "NOT_FOUND_OR_FORBIDDEN"


def test_owner_approval_is_bound_to_the_spec_hash(parties):
    ag = parties.agreement(approval="owner_each_job")
    pending = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.5)
    assert pending["state"] == "pending_approval"
    job_id = pending["job_id"]
    queue = parties.owner.jobs(state="pending_approval")
    assert [j["id"] for j in queue] == [job_id]
    assert queue[0]["spec"]["sql"] == COUNT_BY_DISTRICT and Fraction(queue[0]["cost"]["epsilon"]) == Fraction(1, 2)
    review = parties.owner.job_review(job_id)
    assert review["plan"]["canonical_sql"].startswith("WITH") and review["mock"]["mock_result"]["rows"]
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "0"  # not charged before approval
    assert _err(parties.owner.approve_job, job_id, "sha256:" + "0" * 64).code in ("INVALID_REQUEST", "POLICY_DENIED")
    assert _err(parties.operator.approve_job, job_id, queue[0]["spec_hash"]).code == "POLICY_DENIED"
    assert _err(parties.operator.job_result, job_id).code == "APPROVAL_REQUIRED"
    parties.owner.approve_job(job_id, queue[0]["spec_hash"])
    done = parties.operator.wait_job(job_id, timeout=60)
    assert done["state"] == "released" and done["approved_by"] == "city-tax-bureau"
    res = parties.operator.job_result(job_id)
    assert res["result"]["columns"] == ["district", "n"] and res["output_digest"] == done["output_digest"]
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "0.5"
    lineage = parties.regulator.audit(agreement_id=ag["id"], action="job.release")["entries"]
    assert [e["output_digest"] for e in lineage] == [res["output_digest"]]


def test_rejection_reason_reaches_the_grantee_and_nothing_is_spent(parties):
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1})
    assert job["state"] == "pending_approval"
    parties.owner.reject_job(job["id"], "too fine-grained for this purpose")
    seen = parties.operator.job(job["id"])
    assert seen["state"] == "rejected" and seen["rejected_reason"] == "too fine-grained for this purpose"
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "0"


def test_jobs_refuse_malformed_specs_and_unknown_kinds(parties):
    ag = parties.agreement()
    assert _err(parties.operator.submit_job, ag["id"], "query", {"sql": COUNT_BY_DISTRICT}).code == INVALID_REQUEST
    assert _err(parties.operator.submit_job, ag["id"], "query",
                {"sql": COUNT_BY_DISTRICT, "epsilon": 1, "x": 1}).code == INVALID_REQUEST
    assert _err(parties.operator.submit_job, ag["id"], "verify", {}).code == INVALID_REQUEST
    assert _err(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, 0).code == INVALID_REQUEST
    assert _err(parties.operator.query, ag["id"], "SELECT tax_paid FROM tax_income", 1).code == "QUERY_REJECTED"


def test_columns_outside_the_agreement_are_refused(parties):
    ag = parties.agreement(columns={"tax_income": ["district", "age"]})
    e = _err(parties.operator.query, ag["id"], "SELECT district, SUM(monthly_income) AS s FROM tax_income "
             "GROUP BY district", 1)
    assert e.code == "QUERY_REJECTED" and any("monthly_income" in json.dumps(d) for d in e.details)


def test_an_interrupted_job_is_failed_and_refunded_at_restart(parties):
    from sqlalchemy import update

    from gateway.worker import JobWorker
    from policies import _tables as pt

    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1})
    ctx = parties.service.ctx
    approved = parties.owner.approve_job(job["id"], job["spec_hash"])
    assert approved["state"] == "approved"
    assert parties.operator.wait_job(job["id"], timeout=60)["state"] == "released"
    # simulate a worker that claimed the job and died before releasing it: put the row back into that state
    # (running, charged, no result)
    with ctx.engine.begin() as conn:
        conn.execute(update(pt.jobs).where(pt.jobs.c.id == job["id"])
                     .values(state="running", worker_id="dead-worker", result_json=None, output_digest=None,
                             released_at=None))
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "1"
    JobWorker(ctx).start_recovery()
    seen = parties.operator.job(job["id"])
    assert seen["state"] == "failed" and seen["failure_reason"] == "worker.interrupted"
    assert parties.owner.budget(ag["id"])["exact"]["epsilon_spent"] == "0"  # refunded
    recovered = parties.regulator.audit(action="job.recover")["entries"]
    details = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]) for e in recovered]
    assert [d["job_id"] for d in details] == [job["id"]]


def test_query_answers_and_errors_are_padded_to_the_latency_bucket(parties, monkeypatch):
    """Every /v1/queries answer, success or refusal, goes through the padding (`gateway.latency`, unit-tested in
    tests/gateway/test_latency.py; no timing asserted)."""
    from gateway import latency

    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)
    monkeypatch.setitem(parties.service.settings.__dict__, "latency_bucket_ms", 50)
    ag = parties.agreement()
    parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.1)
    _err(parties.operator.query, ag["id"], "SELECT * FROM tax_income", 0.1)
    _err(parties.bank.query, ag["id"], COUNT_BY_DISTRICT, 0.1)
    assert calls == [50, 50, 50]
