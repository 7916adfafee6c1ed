"""Private SQL and the job workflow over real HTTP: approval bound to the hash, differencing exhausts the
budget, the attack corpus is refused at the API, no engine text leaks, interrupted jobs are refunded."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from catalog.errors import INVALID_REQUEST
from tests.conftest import ON_BOTH_STORES
from veilbox.client import ApiError

ATTACKS = Path(__file__).resolve().parents[3] / "data" / "attacks"
COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _err(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value


def _corpus(name):
    return [json.loads(line) for line in (ATTACKS / name).read_text().splitlines() if line.strip()]


@ON_BOTH_STORES
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
    for case in _corpus("sql.jsonl"):
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
    for case in _corpus("sql_allowed.jsonl")[:12]:
        r = parties.operator.query(ag["id"], case["sql"], 0.5)
        assert r["state"] == "released" and r["cost"]["epsilon"] == 0.5 and r["output_digest"].startswith("sha256:")


def test_preview_spends_nothing_and_shows_the_mock_answer(parties):
    ag = parties.agreement()
    pv = parties.operator.preview_query(ag["id"], COUNT_BY_DISTRICT, 0.5)
    assert "QUALIFY ROW_NUMBER()" in pv["canonical_sql"] and pv["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert pv["expected_error"]["n"] > 0 and len(pv["mock_result"]["rows"]) == 7
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
    assert _err(parties.bank.preview_query, ag["id"], COUNT_BY_DISTRICT, 0.5).code == "NOT_FOUND_OR_FORBIDDEN"


@ON_BOTH_STORES
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


@ON_BOTH_STORES
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
    tests/unit/gateway/test_latency.py; no timing asserted)."""
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


# --- residual failures look like success (issue 12, items 2, 3 and 10) ---------------------------------------

#: A released answer, with its source attribution and its output certificate (a residual failure carries both too).
RELEASE_KEYS = {"job_id", "state", "columns", "rows", "suppressed_groups", "cost", "error_bars", "output_digest",
                "source", "certificate_id"}


def _details(entry) -> dict:
    d = entry["details"]
    return d if isinstance(d, dict) else json.loads(d)


def _own_view(client, since: int) -> list[tuple]:
    """The caller's own audit entries after ``since``, without what differs between any two requests (time,
    sequence, hashes, ids, digests of noisy answers), and without the caller's own polls, which are entered once a
    minute (`gateway.reads`): whether a poll is entered depends on the clock and the caller's earlier reads."""
    from gateway.reads import COALESCED

    out = []
    for e in client.audit(since=since, limit=1000)["entries"]:
        if e["action"] in COALESCED:
            continue
        d = {k: v for k, v in _details(e).items() if k not in ("ms", "job_id")}
        out.append((e["actor"], e["role"], e["action"], e["agreement_id"], e["dataset"], e["decision"], e["code"],
                    e["epsilon"], e["delta"], e["output_digest"] is not None, e["subject_hash"],
                    json.dumps(d, sort_keys=True)))
    return out


def _last_seq(parties) -> int:
    """The newest audit sequence number (read from the store: listing the log over HTTP appends to it)."""
    from sqlalchemy import func, select

    from gateway import _tables as gt

    with parties.service.ctx.engine.connect() as conn:
        return int(conn.execute(select(func.max(gt.audit_entries.c.seq))).scalar() or 0)


def _public_job(job: dict) -> dict:
    drop = {"id", "created_at", "approved_at", "started_at", "finished_at", "released_at", "output_digest"}
    return {k: v for k, v in job.items() if k not in drop}


def _grantee_observes(parties, ag_id: str, run) -> dict:
    """Everything the grantee can see of one query run: the response, the job, the result, the spent ε, its own
    audit entries (made by this run and by the reads below), and its own view of the job's review."""
    before = Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"])
    since = _last_seq(parties)
    r = run()
    job = parties.operator.job(r["job_id"])
    res = parties.operator.job_result(r["job_id"])
    review = parties.operator.job_review(r["job_id"])
    spent = Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"]) - before
    return {"status_keys": sorted(r), "state": r["state"], "error_bars": r["error_bars"], "cost": r["cost"],
            "columns": r["columns"], "n_rows_plus_suppressed": len(r["rows"]) + r["suppressed_groups"],
            "job": _public_job(job), "result_keys": sorted(res), "result_body_keys": sorted(res["result"]),
            "review_keys": sorted(review), "spent": spent, "audit": _own_view(parties.operator, since)}


def _fail_next_execute(monkeypatch, reason: str) -> list[str]:
    """Test-only seam (the gateway runs in this process): the next `QueryWorker.execute` — the call that carries
    the data query — fails with ``EngineFailure(reason)`` as a residual engine failure would."""
    from sandbox.engine import worker as engine_worker

    real = engine_worker.QueryWorker.execute
    fired: list[str] = []

    def execute(self, request):
        if not fired:
            fired.append(reason)
            raise engine_worker.EngineFailure(reason)
        return real(self, request)

    monkeypatch.setattr(engine_worker.QueryWorker, "execute", execute)
    return fired


@pytest.mark.parametrize("reason", ["engine", "timeout", "result_check"])
@ON_BOTH_STORES
def test_a_residual_engine_failure_is_answered_like_a_release_and_charged(parties, monkeypatch, reason):
    ag = parties.agreement(budget={"epsilon": 5})
    normal = _grantee_observes(parties, ag["id"], lambda: parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5"))
    fired = _fail_next_execute(monkeypatch, reason)
    failed = _grantee_observes(parties, ag["id"], lambda: parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5"))
    assert fired == [reason]
    assert normal == failed  # status keys, state, reason, refund, ε charged, error bars, job, result, audit
    assert failed["state"] == "released" and failed["job"]["failure_reason"] is None
    assert set(failed["status_keys"]) == RELEASE_KEYS and failed["spent"] == Fraction(1, 2)
    assert "owner_detail" not in failed["review_keys"]


def test_the_owner_and_the_admin_see_the_incident_the_grantee_does_not(parties, monkeypatch):
    ag = parties.agreement()
    _fail_next_execute(monkeypatch, "timeout")
    r = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5")
    assert r["state"] == "released"
    incident = parties.owner.audit(action="job.incident")["entries"]
    assert [(_details(e)["job_id"], _details(e)["cause"]) for e in incident] == [(r["job_id"], "engine.timeout")]
    assert [e["seq"] for e in parties.service.admin.audit(action="job.incident")["entries"]] == \
        [e["seq"] for e in incident]
    assert parties.operator.audit(action="job.incident")["entries"] == []
    assert all(e["role"] != "system" for e in parties.operator.audit(limit=1000)["entries"])
    owner_review = parties.owner.job_review(r["job_id"])
    assert owner_review["owner_detail"]["incident"]["cause"] == "engine.timeout"
    seen = json.dumps([parties.operator.job(r["job_id"]), parties.operator.job_result(r["job_id"]),
                       parties.operator.job_review(r["job_id"]), parties.operator.audit(limit=1000)])
    assert "incident" not in seen and "timeout" not in seen


def test_a_grantee_named_like_the_worker_reads_none_of_its_entries(parties, monkeypatch):
    worker_named = parties.service.principal("worker", "operator")
    ag = parties.agreement()
    _fail_next_execute(monkeypatch, "engine")
    parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5")
    assert worker_named.audit(limit=1000)["entries"] == []


def test_a_worker_that_cannot_start_fails_before_reading_and_is_refunded(parties, monkeypatch):
    from sandbox.engine import worker as engine_worker

    sent: list[object] = []
    monkeypatch.setattr(engine_worker.QueryWorker, "start",
                        lambda self: (_ for _ in ()).throw(engine_worker.EngineFailure("unavailable")))
    monkeypatch.setattr(engine_worker.QueryWorker, "execute", lambda self, request: sent.append(request))
    ag = parties.agreement()
    r = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5")
    assert r == {"job_id": r["job_id"], "state": "failed", "failure_reason": "worker.unavailable_before_read",
                 "refunded": True}
    assert sent == []  # decided before any request carrying the data query was sent
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
    fails = [_details(e) for e in parties.owner.audit(action="job.fail")["entries"]]
    assert [(d["reason"], d["refunded"]) for d in fails] == [("worker.unavailable_before_read", True)]
    assert parties.owner.audit(action="job.incident")["entries"] == []


def test_queries_below_the_minimum_epsilon_are_refused_and_audited(parties, monkeypatch):
    ag = parties.agreement()
    for run in (parties.operator.query, parties.operator.preview_query):
        e = _err(run, ag["id"], COUNT_BY_DISTRICT, "0.001")
        assert e.code == INVALID_REQUEST and e.details[0]["reason"] == "epsilon.below_minimum"
        assert e.details[0]["minimum"] == "0.01"
    e = _err(parties.operator.submit_job, ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 0.009})
    assert e.code == INVALID_REQUEST and e.details[0]["reason"] == "epsilon.below_minimum"
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
    assert parties.operator.jobs() == []
    refused = parties.operator.audit(action="query.run")["entries"]
    assert [(x["decision"], x["code"]) for x in refused] == [("deny", INVALID_REQUEST)]
    assert parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.01")["state"] == "released"  # the floor itself
    monkeypatch.setitem(parties.service.settings.__dict__, "min_query_epsilon", 0.5)
    assert _err(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, "0.25").details[0]["minimum"] == "0.5"


@ON_BOTH_STORES
def test_the_daily_job_cap_holds_for_queries(parties):
    ag = parties.agreement(quotas={"calls_per_day": 1000, "jobs_per_day": 2})
    for _ in range(2):
        assert parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.25")["state"] == "released"
    e = _err(parties.operator.query, ag["id"], COUNT_BY_DISTRICT, "0.25")
    assert e.code == "QUOTA_EXCEEDED" and e.details[0]["reason"] == "quota.jobs_per_day"
    assert Fraction(parties.operator.budget(ag["id"])["exact"]["epsilon_spent"]) == Fraction(1, 2)
    pv = parties.operator.preview_query(ag["id"], COUNT_BY_DISTRICT, "0.25")  # previews stay free, on the mock
    assert pv["mock_result"]["rows"] and Fraction(parties.operator.budget(ag["id"])["exact"]["epsilon_spent"]) == \
        Fraction(1, 2)


def _post(client, path: str, raw: str):
    return client.request("POST", path, content=raw.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("eps", ["5e-324", '"1e-400"', "true", '"true"', "NaN", "Infinity", '"NaN"', '"inf"',
                                 '"1e999999999"', "1e308", '"-1"', "null", "[1]", '"0x10"', "0", '"1/0"'])
def test_malformed_or_extreme_epsilon_is_an_invalid_request_never_a_500(parties, monkeypatch, eps):
    ag = parties.agreement()
    monkeypatch.setitem(parties.service.settings.__dict__, "min_query_epsilon", 5e-324)  # reach the calibration
    body = f'{{"agreement_id": "{ag["id"]}", "sql": "{COUNT_BY_DISTRICT}", "epsilon": {eps}}}'
    for path in ("/v1/queries", "/v1/queries/preview"):
        e = _err(_post, parties.operator, path, body)
        assert (e.status, e.code) == (422, INVALID_REQUEST), (path, eps)
    spec = f'{{"sql": "{COUNT_BY_DISTRICT}", "epsilon": {eps}}}'
    e = _err(_post, parties.operator, "/v1/jobs", f'{{"agreement_id": "{ag["id"]}", "kind": "query", "spec": {spec}}}')
    assert (e.status, e.code) == (422, INVALID_REQUEST), eps
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
    assert parties.operator.jobs() == []


def test_delta_and_other_numbers_of_specs_are_strict(parties):
    ag = parties.agreement()
    for delta in (True, "NaN", -1, 1):
        e = _err(parties.operator.submit_job, ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1,
                                                                  "delta": delta})
        assert e.code == INVALID_REQUEST, delta
    train = {"dataset": "tax_income", "features": ["age"], "label": "has_default", "model": "logistic_regression",
             "epochs": 1, "batch_size": 256, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0}
    for field, bad in (("epsilon", True), ("epsilon", "1"), ("epsilon", 5e-324), ("delta", True),
                       ("epochs", True), ("batch_size", 256.0), ("max_grad_norm", "1")):
        e = _err(parties.operator.submit_job, ag["id"], "train", {**train, field: bad})
        assert e.code == INVALID_REQUEST, (field, bad)
    code = {"dataset": "tax_income", "source": "def main(inputs):\n    return 1\n", "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 1024}}
    for spec in ({**code, "epsilon": True}, {**code, "epsilon": "NaN"}, {**code, "epsilon": -1},
                 {**code, "outputs": {"kind": "json", "max_bytes": True}}):
        assert _err(parties.operator.submit_job, ag["id"], "code", spec).code == INVALID_REQUEST, spec
    assert parties.operator.jobs() == [] and parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"


def test_listing_jobs_by_an_unknown_state_is_an_invalid_request(parties):
    for client in (parties.operator, parties.owner, parties.regulator):
        e = _err(client.jobs, state="bogus")
        assert (e.status, e.code) == (422, INVALID_REQUEST) and "pending_approval" in e.details[0]["allowed"]
    assert parties.owner.jobs(state="pending_approval") == []
