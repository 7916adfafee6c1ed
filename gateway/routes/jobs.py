"""Jobs (docs/api.md, "Jobs") and private SQL queries (docs/api.md, "Queries").

A job binds a spec (its hash), the datasets' fingerprints and its cost. ``owner_each_job`` agreements wait for
the data owner, who reviews the exact spec, the cost and the run on the mock; ``auto_within_budget`` agreements
charge at submission. The embedded worker runs approved jobs; the release gate lets out only aggregates, models
(with their card) and owner-released custom outputs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictInt

import policies
from gateway import latency
from gateway.contract import OUT, ErrorCode, doc, errors_for
from gateway.contract.jobs import Job as JobView
from gateway.contract.jobs import JobResult, QueryAnswer, QueryPreview, Review
from gateway.deps import Audit, Ctx, CurrentPrincipal, Heavy, Owner
from gateway.services import jobs as jobflow
from gateway.services.idempotency import Idempotent
from gateway.services.jobs import actor_of
from policies import Job

router = APIRouter(tags=["jobs"])

_EXAMPLE_SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
_QUERY_EXAMPLE = {"agreement_id": "agr_e8ef1abd08beeda02e4d", "sql": _EXAMPLE_SQL, "epsilon": "0.5",
                  "purpose": "credit_risk"}
#: What a submission can be refused with (the agreement's decision, the query vetting, the budget and quotas).
_SUBMIT_ERRORS = (ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                  ErrorCode.QUERY_REJECTED, ErrorCode.BUDGET_EXHAUSTED, ErrorCode.QUOTA_EXCEEDED)


class JobSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    kind: str = Field(description="query | train | code", examples=["train"])
    spec: dict[str, Any] = Field(description="the kind's spec (docs/api.md, \"Jobs\"); its canonical hash binds the "
                                           "approval")
    purpose: str | None = Field(None, description="one of the agreement's purposes (default: its only one)")


class Approve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec_hash: str = Field(description="the hash of the spec you reviewed", examples=["sha256:…"])


class Reject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="shown to the grantee")


def _note(ev: Any, job: Job) -> None:
    jobflow.note_job(ev, job)


@router.post("/jobs", name="job.submit", status_code=status.HTTP_202_ACCEPTED, response_model=JobView, **OUT,
             **doc("Submit a query, training or custom-code job", *_SUBMIT_ERRORS, status=202,
                   request_example={"agreement_id": "agr_e8ef1abd08beeda02e4d", "kind": "query",
                                    "spec": {"sql": _EXAMPLE_SQL, "epsilon": 0.5}, "purpose": "credit_risk"}))
async def submit(body: JobSubmit, p: Heavy, ctx: Ctx, ev: Audit, _idem: Idempotent) -> dict[str, Any]:
    """Submit a query, training or custom-code job; it waits for the owner unless the agreement auto-approves."""
    ev.agreement_id = body.agreement_id
    job = await run_in_threadpool(jobflow.submit, ctx, actor_of(p), body.agreement_id, body.kind, body.spec, ev,
                                  purpose=body.purpose)
    return job.public()


@router.get("/jobs", name="job.list", response_model=list[JobView], **OUT,
            **doc("Jobs on your data (owners), your own jobs (grantees), all (regulators)"))
def list_jobs(p: CurrentPrincipal, ctx: Ctx,
              state: str | None = Query(None, description="e.g. pending_approval (owners: jobs on their data)"),
              ) -> list[dict[str, Any]]:
    """Owners: jobs on their data; grantees: their own jobs; regulators: all."""
    return [j.public() for j in policies.jobs_visible_to(ctx.engine, actor_of(p), state=state)]


@router.get("/jobs/{job_id}", name="job.show", response_model=JobView, **OUT,
            **doc("One job: spec, hash, fingerprints, cost and state", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def show(job_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    job = policies.get_job(ctx.engine, actor_of(p), job_id)
    _note(ev, job)
    return job.public()


@router.get("/jobs/{job_id}/review", name="job.review", response_model=Review, **OUT,
            **doc("Review a job before approval: spec, cost, canonical form, the run on the mock",
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED))
async def review(job_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The exact spec, its hash, the cost, the canonical form and the result on the mock (spends nothing);
    the owner also sees a finished custom job's output awaiting release and what it printed."""
    out: dict[str, Any] = await run_in_threadpool(jobflow.review_job, ctx, actor_of(p), job_id)
    ev.details["job_id"] = job_id
    ev.agreement_id = out["job"]["agreement_id"]
    return out


@router.post("/jobs/{job_id}/approve", name="job.approve", response_model=JobView, **OUT,
             **doc("Approve the reviewed spec; the budget is charged now (owner)", ErrorCode.POLICY_DENIED,
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.AGREEMENT_INACTIVE, ErrorCode.BUDGET_EXHAUSTED,
                   ErrorCode.QUOTA_EXCEEDED, request_example={"spec_hash": "sha256:cb5f6f9fb0f3ba77188de8fe10fe1677"
                                                                           "5578bef4d7982287e7a3aad3f10cfbb4"}))
def approve(job_id: str, body: Approve, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Approve the reviewed spec (bound to its hash and the datasets' fingerprints); the budget is charged now."""
    job = jobflow.approve_job(ctx, actor_of(owner), job_id, body.spec_hash, ev)
    _note(ev, job)
    ev.epsilon, ev.delta = str(job.cost.epsilon), str(job.cost.delta)
    return job.public()


@router.post("/jobs/{job_id}/reject", name="job.reject", response_model=JobView, **OUT,
             **doc("Reject a pending job or refuse to release its output (owner)", ErrorCode.POLICY_DENIED,
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN, request_example={"reason": "too fine-grained for this purpose"}))
def reject(job_id: str, body: Reject, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Reject a pending job, or refuse to release a finished custom job's output; the grantee sees the reason."""
    job = jobflow.reject_job(ctx, actor_of(owner), job_id, body.reason, ev)
    _note(ev, job)
    ev.details["reason"] = body.reason
    return job.public()


@router.post("/jobs/{job_id}/cancel", name="job.cancel", response_model=JobView, **OUT,
             **doc("Withdraw a job that has not started (a charged job is refunded)", ErrorCode.POLICY_DENIED,
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def cancel(job_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The grantee withdraws a job that has not started (a charged job is refunded)."""
    job = jobflow.cancel_job(ctx, actor_of(p), job_id, ev)
    _note(ev, job)
    return job.public()


@router.post("/jobs/{job_id}/release", name="job.release", response_model=JobView, **OUT,
             **doc("Release a finished custom job's reviewed output (owner)", ErrorCode.POLICY_DENIED,
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.AGREEMENT_INACTIVE))
async def release(job_id: str, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The owner releases a finished custom job's output after reviewing it (`GET /jobs/{id}/review`)."""
    job, digest = await run_in_threadpool(jobflow.release_job, ctx, actor_of(owner), job_id, ev)
    _note(ev, job)
    ev.output_digest = digest
    return job.public()


@router.get("/jobs/{job_id}/result", name="job.result", response_model=JobResult, **OUT,
            **doc("The released output (sealed after revocation or expiry)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                  ErrorCode.AGREEMENT_INACTIVE, ErrorCode.APPROVAL_REQUIRED, ErrorCode.POLICY_DENIED))
def result(job_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The released output (grantee, after release); sealed after revocation or expiry."""
    ev.details["job_id"] = job_id
    out = jobflow.job_result(ctx, actor_of(p), job_id)
    ev.output_digest = out["output_digest"]
    return out


# --- queries ------------------------------------------------------------------------------------------------


# Money-like numbers are strict: a JSON number (never a boolean: ``true`` does not mean 1; never NaN or ±inf) or
# an exact decimal/ratio string (``"0.1"``, ``"1/3"``), parsed exactly by the sandbox (`sandbox.dp.as_fraction`).
StrictNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictText = Annotated[str, Field(strict=True, max_length=100)]
Exact = StrictInt | StrictNumber | StrictText


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    sql: str = Field(max_length=20_000, examples=["SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"])
    epsilon: Exact = Field(description="ε to spend, at least VEILBOX_MIN_QUERY_EPSILON (exact decimal strings "
                                       "accepted; booleans, NaN and infinities are not numbers)", examples=[0.5])
    delta: Exact = 0
    purpose: str | None = None


def _spec(body: QueryBody) -> dict[str, Any]:
    spec: dict[str, Any] = {"sql": body.sql, "epsilon": body.epsilon}
    if body.delta not in (0, "0"):
        spec["delta"] = body.delta
    return spec


@router.post("/queries/preview", name="query.preview", response_model=QueryPreview, **OUT,
             **doc("Preview a DP query: canonical SQL, cost, expected error, the answer on the mock",
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                   ErrorCode.QUERY_REJECTED, ErrorCode.QUOTA_EXCEEDED, request_example=_QUERY_EXAMPLE))
async def query_preview(body: QueryBody, p: Heavy, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Canonical SQL, cost, expected error and the exact answer on the mock; spends nothing."""
    ev.agreement_id = body.agreement_id
    out = await run_in_threadpool(jobflow.preview_query, ctx, actor_of(p), body.agreement_id, _spec(body),
                                  body.purpose)
    ev.dataset = out["dataset"]
    return out


@router.post("/queries", name="query.run", response_model=QueryAnswer, **OUT,
             summary="Run a DP query: the noisy answer now, or the job waiting for the owner",
             responses={202: {"model": QueryAnswer, "description": "waiting for the owner's approval",
                              "content": {"application/json": {"example": {
                                  "job_id": "job_81bf20dccc1b03330e86", "state": "pending_approval",
                                  "cost": {"epsilon": "0.5", "delta": "0"}}}}},
                        **errors_for(*_SUBMIT_ERRORS)},
             openapi_extra={"requestBody": {"content": {"application/json": {"example": _QUERY_EXAMPLE}}}})
async def query_run(body: QueryBody, p: Heavy, ctx: Ctx, ev: Audit, response: Response,
                    _idem: Idempotent) -> dict[str, Any]:
    """Run a DP query: 200 with the noisy answer when the agreement auto-approves (the budget is charged
    first), else 202 with the job waiting for the owner. A residual engine failure is answered like any release
    (the answer over an empty input, charged; the owner sees the incident); only a worker that could not start
    before reading data fails the job and refunds it (``worker.unavailable_before_read``). Every answer, success
    or error, is padded to the latency bucket (``VEILBOX_LATENCY_BUCKET_MS``)."""
    ev.agreement_id = body.agreement_id
    async with latency.padded(ctx.settings.latency_bucket_ms):
        waiting, out = await run_in_threadpool(jobflow.run_query, ctx, actor_of(p), body.agreement_id, _spec(body),
                                               ev, purpose=body.purpose)
        if waiting:
            response.status_code = status.HTTP_202_ACCEPTED
        return out
