"""Responses of the job and query routes (docs/api.md, "Jobs" and "Queries")."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from gateway.contract import Open, Out, example

_FP = "sha256:570867f620348ff939f388066824952621c08733e1b32ef4a4df88175ac0ae03"
_SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
JOB_EXAMPLE: dict[str, Any] = {
    "id": "job_81bf20dccc1b03330e86", "agreement_id": "agr_e8ef1abd08beeda02e4d", "kind": "query",
    "state": "pending_approval", "spec": {"epsilon": 0.5, "sql": _SQL},
    "spec_hash": "sha256:cb5f6f9fb0f3ba77188de8fe10fe16775578bef4d7982287e7a3aad3f10cfbb4",
    "datasets": {"tax_income": {"fingerprint": _FP}}, "columns": {"tax_income": ["district"]},
    "purpose": "credit_risk", "cost": {"epsilon": "0.5", "delta": "0"}, "created_by": "risk-lab",
    "created_at": "2026-12-03T03:39:05.836116+00:00", "approved_by": None, "approved_at": None,
    "rejected_reason": None, "failure_reason": None, "started_at": None, "finished_at": None, "released_at": None,
    "output_digest": None,
}
TABLE_EXAMPLE: dict[str, Any] = {
    "columns": ["district", "n"], "rows": [["Binhu", 884], ["Huishan", 632]], "error_bars": {"n": 6.43},
    "cost": {"epsilon": 0.5, "delta": 0.0}, "suppressed_groups": 0,
    "output_digest": "sha256:a7ec34a56403245d8ba1ee8be35d8fd1c44781dd86ad447a45707fe9b9ab3219"}


class Cost(Out):
    epsilon: str = Field(description="exact text")
    delta: str


class Fingerprint(Out):
    fingerprint: str


class Job(Out):
    """A job: the exact spec and its hash (what an approval binds), the datasets' fingerprints, the cost."""

    model_config = ConfigDict(json_schema_extra=example(JOB_EXAMPLE))
    id: str
    agreement_id: str
    kind: str = Field(description="query | train | code")
    state: str = Field(description="pending_approval | approved | running | released | failed | rejected | "
                                   "cancelled | awaiting_release …")
    spec: dict[str, Any]
    spec_hash: str
    datasets: dict[str, Fingerprint]
    columns: dict[str, list[str]]
    purpose: str | None
    cost: Cost
    created_by: str
    created_at: str | None
    approved_by: str | None
    approved_at: str | None
    rejected_reason: str | None
    failure_reason: str | None
    started_at: str | None
    finished_at: str | None
    released_at: str | None
    output_digest: str | None


class Review(Open):
    """What a party sees before approval (never raw data); owners also see a finished custom job's output
    awaiting release (``pending_output``) and what it printed (``owner_detail``)."""

    model_config = ConfigDict(json_schema_extra=example({
        "job": JOB_EXAMPLE, "plan": {"canonical_sql": "WITH \"__rows\" AS (…) SELECT …"},
        "mock": {"columns": ["district", "n"], "rows": [["Binhu", 158]], "suppressed_groups": 0}}))
    job: Job
    plan: Any = Field(None, description="the kind's canonical form and cost (null when the job cannot run now)")
    mock: Any = Field(None, description="the run on the mock (null when the job cannot run now)")
    problem: dict[str, Any] | None = Field(None, description="why the job cannot run now (an error body's fields)")
    pending_output: dict[str, Any] | None = None
    owner_detail: dict[str, Any] | None = None


class JobResult(Out):
    model_config = ConfigDict(json_schema_extra=example({
        "job_id": "job_81bf20dccc1b03330e86", "output_digest": TABLE_EXAMPLE["output_digest"],
        "result": TABLE_EXAMPLE}))
    job_id: str
    output_digest: str
    result: Any = Field(description="the released output: a DP table, a model card, or a custom job's JSON")


class QueryPreview(Open):
    """Canonical SQL, cost, expected error and the exact answer on the mock; spends nothing."""

    model_config = ConfigDict(json_schema_extra=example({
        "dataset": "tax_income", "canonical_sql": "WITH \"__rows\" AS (…) SELECT …",
        "cost": {"epsilon": 0.5, "delta": 0.0}, "expected_error": {"n": 6.43},
        "mock_result": {"columns": ["district", "n"], "rows": [["Binhu", 158]], "suppressed_groups": 0}}))
    dataset: str
    canonical_sql: str
    cost: dict[str, Any]
    expected_error: dict[str, Any]
    mock_result: dict[str, Any]


class QueryAnswer(Open):
    """200: the released DP table (``columns``, ``rows``, ``error_bars``, ``cost``, ``suppressed_groups``,
    ``output_digest``), or a failed job (``failure_reason``, ``refunded``); 202: the job waiting for the owner
    (``cost``)."""

    model_config = ConfigDict(json_schema_extra=example(
        {"job_id": "job_9858613d95c768f45bb9", "state": "released", **TABLE_EXAMPLE}))
    job_id: str
    state: str
