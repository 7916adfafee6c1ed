"""Queued query jobs over real HTTP: a residual engine failure after approval is released like any answer
(charged, same state and keys, the owner sees the incident), the release gate's refusal releases the answer over
an empty input, and the owner's review runs the mock once per spec."""

from __future__ import annotations

import json
from fractions import Fraction

from sandbox.jobs import HANDLERS, gate
from tests.system.http.flows.test_queries_http import _fail_next_execute

COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
#: a released table's keys, with the certificate and the data sources stamped at release (docs/certificates.md)
RESULT_KEYS = {"columns", "rows", "suppressed_groups", "cost", "error_bars", "output_digest", "certificate_id",
               "source"}
VOLATILE = {"id", "spec_hash", "created_at", "approved_at", "started_at", "finished_at", "released_at",
            "output_digest"}


def _spent(parties, ag_id: str) -> Fraction:
    return Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"])


def _details(entry) -> dict:
    d = entry["details"]
    return d if isinstance(d, dict) else json.loads(d)


def _approved_run(parties, ag_id: str, sql: str = COUNT_BY_DISTRICT) -> tuple[dict, dict]:
    job = parties.operator.submit_job(ag_id, "query", {"sql": sql, "epsilon": "0.5"})
    parties.owner.approve_job(job["id"], job["spec_hash"])
    done = parties.operator.wait_job(job["id"], timeout=120)
    return done, parties.operator.job_result(job["id"])


def test_a_queued_job_with_a_residual_failure_is_released_and_charged(parties, monkeypatch):
    ag = parties.agreement(approval="owner_each_job")
    normal, normal_result = _approved_run(parties, ag["id"])
    fired = _fail_next_execute(monkeypatch, "timeout")
    failed, failed_result = _approved_run(parties, ag["id"])
    assert fired == ["timeout"]
    strip = lambda j: {k: v for k, v in j.items() if k not in VOLATILE}  # noqa: E731
    assert strip(failed) == strip(normal) and failed["state"] == "released" and failed["failure_reason"] is None
    assert set(failed_result["result"]) == set(normal_result["result"]) == RESULT_KEYS
    assert failed_result["result"]["error_bars"] == normal_result["result"]["error_bars"]
    assert failed_result["result"]["cost"] == normal_result["result"]["cost"]
    assert _spent(parties, ag["id"]) == 1  # both charged, nothing refunded
    owner_detail = parties.owner.job_review(failed["id"])["owner_detail"]
    assert owner_detail["incident"]["cause"] == "engine.timeout"
    assert "owner_detail" not in parties.operator.job_review(failed["id"])
    assert "owner_detail" not in parties.owner.job_review(normal["id"])
    incidents = [_details(e) for e in parties.owner.audit(action="job.incident")["entries"]]
    assert [(d["job_id"], d["cause"], d["released"]) for d in incidents] == [(failed["id"], "engine.timeout", True)]
    assert parties.operator.audit(action="job.incident")["entries"] == []


def test_a_gate_refusal_releases_the_answer_over_an_empty_input(parties, monkeypatch):
    real = gate.check
    refused: list[str] = []

    def check(kind, out, models_dir, max_bytes=gate.MAX_RESULT_BYTES):
        if not refused and out.incident is None:  # the first answer computed on data is "too large"
            refused.append(out.output_digest)
            return real(kind, out, models_dir, max_bytes=10)
        return real(kind, out, models_dir, max_bytes)

    monkeypatch.setattr(gate, "check", check)
    ag = parties.agreement(approval="owner_each_job")
    done, result = _approved_run(parties, ag["id"])
    assert refused and done["state"] == "released" and done["failure_reason"] is None
    assert set(result["result"]) == RESULT_KEYS and result["output_digest"] != refused[0]
    assert _spent(parties, ag["id"]) == Fraction(1, 2)
    assert parties.owner.job_review(done["id"])["owner_detail"]["incident"]["cause"] == "release.too_large"


def test_the_review_runs_the_mock_once_per_spec(parties, monkeypatch):
    handler = HANDLERS["query"]
    real = handler.review
    calls: list[str] = []

    def review(spec, plan, datasets, env):
        calls.append(spec["sql"])
        return real(spec, plan, datasets, env)

    monkeypatch.setattr(handler, "review", review)
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1})
    first = parties.owner.job_review(job["id"])
    again = parties.owner.job_review(job["id"])
    by_grantee = parties.operator.job_review(job["id"])
    twin = parties.operator.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1})
    parties.owner.job_review(twin["id"])
    assert calls == [COUNT_BY_DISTRICT]  # one mock run, then served from the store
    assert first["mock"] == again["mock"] == by_grantee["mock"] and first["plan"] == again["plan"]
    assert first["mock"]["mock_result"]["rows"] and first["plan"]["canonical_sql"].startswith("WITH")
    other = parties.operator.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 2})
    parties.owner.job_review(other["id"])
    assert len(calls) == 2  # another spec hash: its own review
    narrower = parties.agreement(approval="owner_each_job", min_group_units=50)
    moved = parties.operator.submit_job(narrower["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": 1})
    parties.owner.job_review(moved["id"])
    assert len(calls) == 3  # another agreement document: its own review
