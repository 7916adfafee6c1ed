"""The job flow shared by the HTTP routes, the console and the background worker.

submit (vet + price in the sandbox, then `policies.submit`: meters, and on ``auto_within_budget`` the charge)
→ owner review (exact spec, hash, cost, the run on the mock) → approve (charge) / reject → the worker claims,
executes, passes the release gate → release (auto) or wait for the owner's release (custom code) → result.
Failures at any point after the charge fail the job and refund it. Every transition the worker makes is
audited here (requests are audited by the middleware).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import policies
from catalog import models as model_registry
from catalog import registry
from catalog.errors import INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, POLICY_DENIED, DomainError, invalid
from catalog.registry import Dataset
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from policies import Action, Actor, Job, JobState
from policies.jobs import load_job
from sandbox.jobs import JobEnv, JobFailed, Output, gate, handler_for
from sandbox.jobs.query import QueryEngines

log = logging.getLogger("veilbox.jobs")

__all__ = ["Runtime", "actor_of", "approve_job", "cancel_job", "datasets_of", "job_result", "reject_job",
           "release_job", "review_job", "run_claimed", "run_inline", "runtime", "submit_job"]

WORKER = "worker"  # audit actor of the background worker
_runtime_lock = threading.Lock()


@dataclass
class Runtime:
    """Per-service execution resources: the locked query engines, the job environment, the worker's wake-up."""

    engines: QueryEngines
    env: JobEnv
    wake: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.engines.close()


def runtime(ctx: AppContext) -> Runtime:
    with _runtime_lock:
        if ctx.runtime is None:
            s = ctx.settings
            engines = QueryEngines(threads=s.engine_threads, memory_limit=s.engine_memory,
                                   timeout_s=s.query_timeout_s)
            s.work_dir.mkdir(parents=True, exist_ok=True)
            env = JobEnv(data_dir=s.data_dir, models_dir=s.models_dir, work_dir=s.work_dir,
                         threads=s.engine_threads, memory_limit=s.engine_memory, timeout_s=s.job_timeout_s,
                         query_engines=engines)
            ctx.runtime = Runtime(engines, env)
        rt: Runtime = ctx.runtime
        return rt


def actor_of(p: Principal) -> Actor:
    return Actor(p.name, p.role.value)


def datasets_of(ctx: AppContext, names: Iterable[str]) -> dict[str, Dataset]:
    out = {}
    for n in names:
        ds = registry.get(ctx.engine, n)
        if ds is not None:
            out[n] = ds
    return out


def _handler(kind: str) -> Any:
    h = handler_for(kind)
    if h is None:
        raise DomainError(INVALID_REQUEST, f"job kind {kind!r} cannot be submitted as a job",
                          [{"field": "kind", "allowed": ["query", "train", "code"]}])
    return h


def _purpose(ag: policies.Agreement, purpose: str | None) -> str | None:
    if purpose is not None:
        return purpose
    return ag.document.purposes[0] if len(ag.document.purposes) == 1 else None


def submit_job(ctx: AppContext, actor: Actor, agreement_id: str, kind: str, spec: Mapping[str, Any], *,
               purpose: str | None = None, inline: bool = False) -> Job:
    """Vet and price ``spec`` in the sandbox, then record the job (``POST /jobs``, ``POST /queries``)."""
    if not isinstance(spec, Mapping):
        raise invalid("spec must be an object")
    ag = policies.get_agreement(ctx.engine, actor, agreement_id)  # parties only; others get not-found
    handler = _handler(kind)
    plan = handler.plan(spec, ag, datasets_of(ctx, ag.document.datasets))
    return policies.submit(ctx.engine, actor, agreement_id, kind, dict(spec), datasets=plan.datasets,
                           columns=plan.columns, cost=plan.cost, purpose=_purpose(ag, purpose), inline=inline)


def _owner_job(ctx: AppContext, actor: Actor, job_id: str) -> tuple[Job, policies.Agreement]:
    job = policies.get_job(ctx.engine, actor, job_id)
    ag = policies.load_agreement(ctx.engine, job.agreement_id)
    if ag is None:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "not found")
    return job, ag


def review_job(ctx: AppContext, actor: Actor, job_id: str) -> dict[str, Any]:
    """What a party sees before approval: the exact spec and its hash, the datasets' fingerprints, the cost,
    the canonical form and the run on the mock (never raw data). Owners additionally see what a finished custom
    job printed and the output awaiting their release."""
    job, ag = _owner_job(ctx, actor, job_id)
    handler = _handler(job.kind.value)
    datasets = datasets_of(ctx, ag.document.datasets)
    out: dict[str, Any] = {"job": job.public()}
    try:
        plan = handler.plan(job.spec, ag, datasets)
        out["plan"] = {"cost": plan.cost.as_json(), "datasets": list(plan.datasets),
                       "columns": {k: list(v) for k, v in plan.columns.items()}, **plan.summary}
        out["mock"] = handler.review(job.spec, plan, datasets, replace(runtime(ctx).env, agreement=ag))
    except DomainError as e:  # the agreement changed since submission: say why the job could not run now
        out["plan"] = None
        out["mock"] = None
        out["problem"] = {"code": e.code, "message": e.message, "details": e.details}
    if actor.name == ag.owner:
        pending = _read_side(ctx, "pending", job.id)
        if pending is not None:
            out["pending_output"] = {"kind": pending["kind"], "result": pending["result"],
                                     "output_digest": pending["output_digest"]}
        detail = _read_side(ctx, "detail", job.id)
        if detail is not None:
            out["owner_detail"] = detail
    return out


def approve_job(ctx: AppContext, actor: Actor, job_id: str, spec_hash: str) -> Job:
    job = policies.approve(ctx.engine, actor, job_id, spec_hash=spec_hash)
    runtime(ctx).wake.set()
    return job


def reject_job(ctx: AppContext, actor: Actor, job_id: str, reason: str) -> Job:
    """Reject a pending job, or refuse to release a finished custom job's output (it fails and is refunded)."""
    job, ag = _owner_job(ctx, actor, job_id)
    if job.state is JobState.SUCCEEDED and _read_side(ctx, "pending", job.id) is not None:
        _require_owner(actor, ag)
        failed = policies.fail(ctx.engine, job.id, "release.refused_by_owner")
        _drop_side(ctx, "pending", job.id)
        return failed
    return policies.reject(ctx.engine, actor, job_id, reason)


def cancel_job(ctx: AppContext, actor: Actor, job_id: str) -> Job:
    return policies.cancel(ctx.engine, actor, job_id)


def _require_owner(actor: Actor, ag: policies.Agreement) -> None:
    if actor.role is not policies.Role.OWNER or actor.name != ag.owner:
        raise DomainError(POLICY_DENIED, "only the data owner may decide on this output",
                          [{"reason": "agreement.not_owner"}])


def release_job(ctx: AppContext, actor: Actor, job_id: str) -> tuple[Job, str]:
    """The owner releases a finished custom job's output after looking at it. Returns the job and its digest."""
    job, ag = _owner_job(ctx, actor, job_id)
    _require_owner(actor, ag)
    pending = _read_side(ctx, "pending", job.id)
    if job.state is not JobState.SUCCEEDED or pending is None:
        raise DomainError(INVALID_REQUEST, "the job has no output awaiting release",
                          [{"reason": "job.wrong_state", "state": job.state.value}])
    policies.check(ctx.engine, actor, Action.JOB_APPROVE, job.agreement_id, datasets=job.datasets,
                   job_kind=job.kind.value).raise_if_denied()
    out = Output(kind=pending["kind"], result=pending["result"], output_digest=pending["output_digest"],
                 release="owner", artifact=None if pending["artifact"] is None else ctx.settings.models_dir
                 / pending["artifact"], model=pending["model"])
    released = _release(ctx, job, out, approved_by=actor.name)
    _drop_side(ctx, "pending", job.id)
    return released, out.output_digest


def job_result(ctx: AppContext, actor: Actor, job_id: str) -> dict[str, Any]:
    r = policies.get_result(ctx.engine, actor, job_id)
    return {"job_id": r.job_id, "output_digest": r.output_digest, "result": r.result}


# --- execution ----------------------------------------------------------------------------------------------


def _side_path(ctx: AppContext, what: str, job_id: str) -> Any:
    d = ctx.settings.work_dir / what
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{job_id}.json"


def _write_side(ctx: AppContext, what: str, job_id: str, value: Any) -> None:
    path = _side_path(ctx, what, job_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.replace(tmp, path)


def _read_side(ctx: AppContext, what: str, job_id: str) -> Any:
    path = _side_path(ctx, what, job_id)
    return json.loads(path.read_text()) if path.exists() else None


def _drop_side(ctx: AppContext, what: str, job_id: str) -> None:
    _side_path(ctx, what, job_id).unlink(missing_ok=True)


def _audit(ctx: AppContext, job: Job, action: str, decision: str = "allow", code: str | None = None,
           output_digest: str | None = None, **details: Any) -> None:
    ctx.audit.append(AuditEvent(
        actor=WORKER, role="system", action=action, agreement_id=job.agreement_id,
        dataset=",".join(job.datasets) or None, decision=decision, code=code,
        epsilon=str(job.cost.epsilon), delta=str(job.cost.delta), output_digest=output_digest,
        details={"job_id": job.id, "kind": job.kind.value, **details}))


def _fail(ctx: AppContext, job: Job, reason: str, detail: str | None = None) -> Job:
    failed = policies.fail(ctx.engine, job.id, reason)
    if detail:
        _write_side(ctx, "detail", job.id, {"failure_detail": detail[-16384:]})
    _audit(ctx, job, "job.fail", decision="error", code="JOB_FAILED", reason=reason, refunded=True)
    return failed


def _release(ctx: AppContext, job: Job, out: Output, approved_by: str | None = None) -> Job:
    """Release through the ledger's guard (a refunded job never releases), registering models first."""
    result, ref = out.result, None
    if out.model is not None:
        rec = model_registry.register_model(ctx.engine, job_id=job.id, agreement_id=job.agreement_id, **out.model)
        ref = rec.id
        result = {**result, "model_id": rec.id, "certificate_id": rec.certificate_id}
    released = policies.release(ctx.engine, job.id, result=result, result_ref=ref, output_digest=out.output_digest)
    extra = {"released_by": approved_by} if approved_by else {}
    _audit(ctx, job, "job.release", output_digest=out.output_digest, output_kind=out.kind,
           **({"model_id": ref} if ref else {}), **extra)
    return released


def _execute(ctx: AppContext, job: Job) -> Job:
    """Run a job that is ``running``: execute, gate, then release (auto) or keep for the owner."""
    ag = policies.load_agreement(ctx.engine, job.agreement_id)
    datasets = datasets_of(ctx, job.datasets)
    env = replace(runtime(ctx).env, agreement=ag)
    try:
        handler = _handler(job.kind.value)
        if len(datasets) != len(job.datasets):
            raise JobFailed("dataset.missing")
        out = handler.execute(job, datasets, env)
        gate.check(job.kind.value, out, ctx.settings.models_dir)
    except JobFailed as e:
        return _fail(ctx, job, e.reason, e.detail)
    except DomainError as e:
        return _fail(ctx, job, f"job.{e.code.lower()}")
    except Exception:
        log.exception("job %s failed in the worker", job.id)
        return _fail(ctx, job, "worker.error")
    try:
        succeeded = policies.succeed(ctx.engine, job.id)
    except DomainError:  # cancelled or recovered meanwhile: nothing may be released
        _audit(ctx, job, "job.discard", decision="error", code="JOB_FAILED", reason="job.wrong_state")
        return _reload(ctx, job.id)
    if out.owner_detail:
        _write_side(ctx, "detail", job.id, out.owner_detail)
    if out.release == "owner":
        artifact = None if out.artifact is None else os.path.relpath(out.artifact, ctx.settings.models_dir)
        _write_side(ctx, "pending", job.id, {"kind": out.kind, "result": out.result,
                                             "output_digest": out.output_digest, "artifact": artifact,
                                             "model": out.model})
        _audit(ctx, job, "job.succeed", output_digest=out.output_digest, awaiting="owner_release")
        return succeeded
    try:
        return _release(ctx, job, out)
    except DomainError as e:
        return _fail(ctx, job, f"release.{e.code.lower()}")


def _reload(ctx: AppContext, job_id: str) -> Job:
    job = load_job(ctx.engine, job_id)
    assert job is not None
    return job


def run_claimed(ctx: AppContext, job: Job) -> Job:
    """The worker's path for a job `policies.claim_next` handed it."""
    _audit(ctx, job, "job.start")
    return _execute(ctx, job)


def run_inline(ctx: AppContext, job: Job) -> Job:
    """Run an auto-approved inline query in the request (``POST /queries``)."""
    return _execute(ctx, policies.start(ctx.engine, job.id, "gateway"))
