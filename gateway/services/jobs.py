"""The job flow shared by the HTTP routes, the console, the CLI's endpoints and the background worker.

submit (vet + price in the sandbox, then `policies.submit`: meters, and on ``auto_within_budget`` the charge)
→ owner review (exact spec, hash, cost, the run on the mock) → approve (charge) / reject → the worker claims,
executes, passes the release gate → release (auto) or wait for the owner's release (custom code) → result.
Every move commits with its audit entry (`gateway.journal`): the request's own (passed as ``ev``) for the
submission, approval, rejection, cancellation and the owner's release (from the API or the console's forms); the
worker's ``system`` entries for the claim, failure, success and release (a trained model is registered in the
release's transaction, `_release`); an inline query's debit carries ``job.charge`` and its release or failure the
request's entry (intent, then outcome).

Nothing the grantee observes may depend on whether a run failed because of the data:

- A failure decided before any data was read (`JobFailed` with ``before_read``: the agreement or a dataset
  changed, a worker or sandbox that could not start) fails the job with its public reason and refunds it.
- Any other failure — a handler's, the release gate's refusal, an unexpected error, the owner refusing a custom
  output — is charged like a release, and the job's public reason is the kind's uniform ``<kind>.failed``.
- Query jobs do not fail once their data query is sent: a residual engine failure releases the answer over an
  empty input (`sandbox.sql.run`), and a gate refusal releases `Output.fallback`; state, response keys, reason,
  charge and the grantee's own audit entries are those of any release.

The cause goes to the data owner only: the job's ``owner_detail`` in `review_job` and an audit entry with action
``job.incident`` (the worker's entries carry role ``system``: owners read those on their agreements, admins the
incidents, regulators everything; grantees none — `gateway.audit.scope_for`).

A custom job's output awaiting the owner's release and the owner-only detail are rows of ``job_outputs``,
written by `policies.succeed`/`fail`/`release` in the transaction of the job's state change (files of an older
home are imported once when it is opened: `gateway.legacy_outputs`).

`preview_query` answers ``POST /queries/preview``: the canonical SQL, the cost and the exact answer on the mock,
authorized and metered as a preview (no ε spent, no data read).

A query job's ``finished_at`` (and ``released_at``, the same instant) lies a whole, non-zero number of
``VEILBOX_LATENCY_BUCKET_MS`` buckets after its ``started_at``: the worker waits for that boundary before the job
changes state (`_bucket_end`), so the timestamps a grantee reads say which bucket the run fell into, nothing finer.

Whoever runs a job holds its lease and renews it with a `gateway.services.leases.Heartbeat` (`run_claimed`: the
worker that claimed it; `run_inline`: this process, leased from the inline job's submission); the outcome clears
it, and an output released at once keeps it through ``succeeded`` until the release (`policies.jobs`, "Leases").

`review_job` computes a spec's plan and mock run once and serves it from ``job_reviews`` afterwards (keyed by
the kind, the spec hash, the agreement's document and the datasets' fingerprints), so reviewing is cheap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

import policies
from catalog import models as model_registry
from catalog import registry
from catalog.errors import (
    AGREEMENT_INACTIVE,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
    invalid,
)
from catalog.fingerprint import HashAlg
from catalog.registry import Dataset
from gateway import _tables as gt
from gateway import job_kinds
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import Journal, both, confirm, refusal, request_entry, system_entry
from gateway.sealing import sealer_of
from gateway.services import certificates
from gateway.services.agreements import note_expiry
from gateway.services.leases import WORKER, Heartbeat, process_id
from gateway.services.storage import check_copies
from policies import Action, Actor, Job, JobState, ledger
from policies.jobs import job_in, load_job
from sandbox.jobs import JobEnv, JobFailed, Output, digest_json, gate
from sandbox.jobs.query import QueryEngines, prepare_for, require_min_epsilon, require_sql_length
from sandbox.sql import preview as sql_preview
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

log = logging.getLogger("veilbox.jobs")

__all__ = ["INCIDENT", "Runtime", "actor_of", "approve_job", "cancel_job", "claim_next", "datasets_of",
           "job_result",
           "min_query_epsilon", "note_job", "preview_query", "refunded", "reject_job", "release_job", "review_job",
           "run_claimed", "run_inline", "run_query", "runtime", "submit", "submit_job"]

INCIDENT = AuditAction.JOB_INCIDENT  # audit action of a failure behind a charged job: owner, admin, regulator only
REVIEW_VERSION = 2  # part of the stored review's key: a new format is computed afresh (2: the plan names aggregates)
_runtime_lock = threading.Lock()
_sleep = time.sleep  # the waits of `_bucket_end` (a test replaces it to observe them without waiting)


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
            sealer = sealer_of(ctx)  # the registered copies are sealed at rest (catalog.sealed)
            engines = QueryEngines(threads=s.engine_threads, memory_limit=s.engine_memory,
                                   timeout_s=s.query_timeout_s, per_dataset=s.engines_per_dataset,
                                   wait_s=s.engine_wait_s, spark_master=s.spark_master, sealer=sealer)
            s.work_dir.mkdir(parents=True, exist_ok=True)
            env = JobEnv(data_dir=s.data_dir, models_dir=s.models_dir, work_dir=s.work_dir,
                         threads=s.engine_threads, memory_limit=s.engine_memory, timeout_s=s.job_timeout_s,
                         query_engines=engines, sealer=sealer, hash_alg=s.hash_alg,
                         extra={"latency_bucket_ms": s.latency_bucket_ms, "max_sql_chars": s.max_sql_chars,
                                "spark_master": s.spark_master})
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
    h = job_kinds.handler(kind)
    if h is None:
        raise DomainError(INVALID_REQUEST, f"job kind {kind!r} cannot be submitted as a job",
                          [{"field": "kind", "allowed": [str(k) for k in job_kinds.QUEUED_KINDS]}])
    return h


def _purpose(ag: policies.Agreement, purpose: str | None) -> str | None:
    if purpose is not None:
        return purpose
    return ag.document.purposes[0] if len(ag.document.purposes) == 1 else None


def min_query_epsilon(ctx: AppContext) -> Fraction:
    """The smallest ε a query may spend (``VEILBOX_MIN_QUERY_EPSILON``), exact."""
    return Fraction(repr(float(ctx.settings.min_query_epsilon)))


def submit_job(ctx: AppContext, actor: Actor, agreement_id: str, kind: str, spec: Mapping[str, Any], *,
               purpose: str | None = None, inline: bool = False, lease: str | None = None,
               job_id: str | None = None, journal: Journal | None = None) -> Job:
    """Vet and price ``spec`` in the sandbox, then record the job (``POST /jobs``, ``POST /queries``). A query
    asking for less than `min_query_epsilon` is refused (``INVALID_REQUEST``) before anything is metered, and
    SQL longer than ``VEILBOX_MAX_SQL_CHARS`` (``QUERY_REJECTED``, rule ``too_long``). An inline job the
    agreement auto-approves is leased to ``lease`` (the process whose request runs it) from its submission.
    ``journal`` records the submission in its transaction (`gateway.journal`)."""
    return _submit(ctx, actor, agreement_id, kind, spec, purpose=purpose, inline=inline, lease=lease,
                   job_id=job_id, journal=journal)[0]


def _submit(ctx: AppContext, actor: Actor, agreement_id: str, kind: str, spec: Mapping[str, Any], *,
            purpose: str | None = None, inline: bool = False, lease: str | None = None, job_id: str | None = None,
            journal: Journal | None = None, start: bool = False,
            ) -> tuple[Job, policies.Agreement, dict[str, Dataset]]:
    """`submit_job`, also returning the agreement and dataset records the decision read (one read transaction,
    `policies.submission_context`: the plan is made from them and the decision taken on them). ``start``: an
    inline job the agreement auto-approves is stored ``running``, leased to ``lease`` (`policies.submit`)."""
    if not isinstance(spec, Mapping):
        raise invalid("spec must be an object")
    action = Action.QUERY_RUN if kind == "query" and inline else Action.JOB_SUBMIT
    loaded = policies.submission_context(ctx.engine, actor, action, agreement_id, dt.datetime.now(dt.UTC))
    ag = loaded.agreement  # parties only; others got not-found
    assert ag is not None
    datasets = {n: d for n in ag.document.datasets if (d := loaded.datasets.get(n)) is not None}
    handler = _handler(kind)
    if kind == "query":
        require_min_epsilon(spec, min_query_epsilon(ctx))
        require_sql_length(spec, ctx.settings.max_sql_chars)
    plan = handler.plan(spec, ag, datasets, hash_alg=ctx.settings.hash_alg)
    job = policies.submit(ctx.engine, actor, agreement_id, kind, dict(spec), datasets=plan.datasets,
                          columns=plan.columns, cost=plan.cost, purpose=_purpose(ag, purpose), inline=inline,
                          lease_owner=lease, lease_s=ctx.settings.job_lease_s, job_id=job_id, journal=journal,
                          hash_alg=ctx.settings.hash_alg, context=loaded, start=start)
    return job, ag, datasets


def preview_query(ctx: AppContext, actor: Actor, agreement_id: str, spec: Mapping[str, Any],
                  purpose: str | None = None) -> dict[str, Any]:
    """What a query would run, previewed as it would run: the minimum ε checked, vetted and rewritten against the
    agreement, authorized and metered as ``query.preview`` (spends no ε), answered on the mock."""
    note_expiry(ctx, agreement_id)
    ag = policies.get_agreement(ctx.engine, actor, agreement_id)
    datasets = datasets_of(ctx, ag.document.datasets)
    require_min_epsilon(spec, min_query_epsilon(ctx))
    qp = prepare_for(spec, ag, datasets, max_sql_chars=ctx.settings.max_sql_chars)
    name = qp.query.table.name
    policies.authorize(ctx.engine, actor, Action.QUERY_PREVIEW, agreement_id, datasets=[name],
                       columns={name: sorted(qp.query.columns - {qp.query.table.id_column})}, job_kind="query",
                       purpose=purpose or (ag.document.purposes[0] if len(ag.document.purposes) == 1 else None))
    return {"dataset": name, **sql_preview(qp)}


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
        out.update(_stored_review(ctx, job, ag, datasets, handler))
    except DomainError as e:  # the agreement changed since submission: say why the job could not run now
        out["plan"] = None
        out["mock"] = None
        out["problem"] = {"code": e.code, "message": e.message, "details": e.details}
    if actor.name == ag.owner:
        stored = policies.job_output(ctx.engine, job.id)
        pending = stored.pending if stored is not None else None
        if pending is not None:
            out["pending_output"] = {"kind": pending["kind"], "result": pending["result"],
                                     "output_digest": pending["output_digest"]}
        if stored is not None and stored.owner_detail is not None:
            out["owner_detail"] = stored.owner_detail
    return out


def _review_key(job: Job, ag: policies.Agreement, datasets: Mapping[str, Dataset]) -> str:
    return digest_json({"v": REVIEW_VERSION, "kind": job.kind.value, "spec_hash": job.spec_hash,
                        "agreement": ag.id, "document_hash": ag.document_hash,
                        "fingerprints": {n: d.fingerprint for n, d in sorted(datasets.items())}})


def _load_review(ctx: AppContext, key: str) -> dict[str, Any] | None:
    with ctx.engine.connect() as conn:
        text = conn.execute(select(gt.job_reviews.c.review_json).where(gt.job_reviews.c.key == key)).scalar()
    return None if text is None else dict(json.loads(text))


def _cacheable(body: Mapping[str, Any]) -> bool:
    """A review that depends on the host rather than the spec (a custom-code dry run the sandbox could not
    start) is recomputed next time instead of being stored."""
    dry = (body.get("mock") or {}).get("dry_run_on_mock")
    return not (isinstance(dry, Mapping) and dry.get("reason") == "sandbox.unavailable")


def _stored_review(ctx: AppContext, job: Job, ag: policies.Agreement, datasets: Mapping[str, Dataset],
                   handler: Any) -> dict[str, Any]:
    """``{"plan", "mock"}`` of the job's spec: computed once (one lock per key in the context's `review_locks`,
    one INSERT in its own transaction; a concurrent writer's row wins) and read from ``job_reviews`` afterwards.
    A `DomainError` (the spec no longer fits the agreement) is raised and never stored."""
    key = _review_key(job, ag, datasets)
    stored = _load_review(ctx, key)
    if stored is not None:
        return stored
    with ctx.caches.review_locks.hold(key):  # one computation per key in this context
        stored = _load_review(ctx, key)
        if stored is not None:
            return stored
        plan = handler.plan(job.spec, ag, datasets, hash_alg=ctx.settings.hash_alg)
        body = {"plan": {"cost": plan.cost.as_json(), "datasets": list(plan.datasets),
                         "columns": {k: list(v) for k, v in plan.columns.items()}, **plan.summary},
                "mock": handler.review(job.spec, plan, datasets, replace(runtime(ctx).env, agreement=ag))}
        text = json.dumps(body, sort_keys=True, default=str)
        if not _cacheable(body):
            return dict(json.loads(text))
        try:
            with ctx.engine.begin() as conn:
                conn.execute(gt.job_reviews.insert().values(key=key, spec_hash=job.spec_hash, review_json=text,
                                                            created_at=dt.datetime.now(dt.UTC)))
        except IntegrityError:  # another process stored it first: serve theirs
            pass
    return _load_review(ctx, key) or dict(json.loads(text))


def _noted(ctx: AppContext, ev: AuditEvent | None, job_id: str, output_digest: str | None = None,
           **details: Any) -> Journal | None:
    """The request's entry for a move of ``job_id``, noted from the job as the move's transaction left it (the
    route notes the same afterwards); a job the move rejected for a changed dataset is the request's refusal."""
    if ev is None:
        return None

    def prepare(conn: Connection, entry: AuditEvent) -> bool:
        job = job_in(conn, job_id)
        note_job(entry, job)
        entry.details.update(details)
        if output_digest is not None:
            entry.output_digest = output_digest
        if job.state is JobState.APPROVED:
            entry.epsilon, entry.delta = str(job.cost.epsilon), str(job.cost.delta)
        if job.state is JobState.REJECTED and job.rejected_reason == "dataset.changed" and "reason" not in details:
            refusal(entry, POLICY_DENIED)
        return True

    return request_entry(ctx.audit, ev, prepare)


def approve_job(ctx: AppContext, actor: Actor, job_id: str, spec_hash: str, ev: AuditEvent | None = None) -> Job:
    """Approve (charge) a pending job; with the request's ``ev`` its entry commits with the charge."""
    job = policies.approve(ctx.engine, actor, job_id, spec_hash=spec_hash, journal=_noted(ctx, ev, job_id))
    runtime(ctx).wake.set()
    return job


def reject_job(ctx: AppContext, actor: Actor, job_id: str, reason: str, ev: AuditEvent | None = None) -> Job:
    """Reject a pending job, or refuse to release a finished custom job's output (it fails, charged)."""
    job, ag = _owner_job(ctx, actor, job_id)
    if job.state is JobState.SUCCEEDED and _pending(ctx, job.id) is not None:
        _require_owner(actor, ag)
        # the code ran: charged; the output awaiting release is dropped in the same transaction
        return policies.fail(ctx.engine, job.id, "release.refused_by_owner", refund=False, journal=both(
            _system(ctx, job, AuditAction.JOB_FAIL, decision="error", code="JOB_FAILED",
                    reason="release.refused_by_owner", refunded=False),
            _noted(ctx, ev, job_id, reason=reason)))
    return policies.reject(ctx.engine, actor, job_id, reason, journal=_noted(ctx, ev, job_id, reason=reason))


def cancel_job(ctx: AppContext, actor: Actor, job_id: str, ev: AuditEvent | None = None) -> Job:
    """Withdraw a job that has not started (refunded if charged, in the same transaction as its entry)."""
    return policies.cancel(ctx.engine, actor, job_id, journal=_noted(ctx, ev, job_id))


def _require_owner(actor: Actor, ag: policies.Agreement) -> None:
    if actor.role is not policies.Role.OWNER or actor.name != ag.owner:
        raise DomainError(POLICY_DENIED, "only the data owner may decide on this output",
                          [{"reason": "agreement.not_owner"}])


def release_job(ctx: AppContext, actor: Actor, job_id: str, ev: AuditEvent | None = None) -> tuple[Job, str]:
    """The owner releases a finished custom job's output after looking at it. Returns the job and its digest.
    With the request's ``ev`` its entry commits with the release."""
    job, ag = _owner_job(ctx, actor, job_id)
    _require_owner(actor, ag)
    pending = _pending(ctx, job.id)
    if job.state is not JobState.SUCCEEDED or pending is None:
        raise DomainError(INVALID_REQUEST, "the job has no output awaiting release",
                          [{"reason": "job.wrong_state", "state": job.state.value}])
    policies.check(ctx.engine, actor, Action.JOB_APPROVE, job.agreement_id, datasets=job.datasets,
                   job_kind=job.kind.value).raise_if_denied()
    out = Output(kind=pending["kind"], result=pending["result"], output_digest=pending["output_digest"],
                 release="owner", artifact=None if pending["artifact"] is None else ctx.settings.models_dir
                 / pending["artifact"], model=pending["model"])
    released = _release(ctx, job, out, approved_by=actor.name,  # drops the pending output with the release
                        request=_noted(ctx, ev, job_id, output_digest=out.output_digest))
    return released, out.output_digest


def job_result(ctx: AppContext, actor: Actor, job_id: str) -> dict[str, Any]:
    r = policies.get_result(ctx.engine, actor, job_id)
    return {"job_id": r.job_id, "output_digest": r.output_digest, "result": r.result}


def refunded(ctx: AppContext, job_id: str) -> bool:
    """Whether the job's charge was given back (only failures before any data was read are refunded)."""
    return any(e.kind == ledger.REFUND for e in ledger.entries(ctx.engine, job_id=job_id))


# --- the request paths (``POST /jobs``, ``POST /queries``) ----------------------------------------------------------


def note_job(ev: AuditEvent, job: Job) -> None:
    """The job's agreement, datasets, id, kind and state on the request's audit entry."""
    ev.agreement_id = job.agreement_id
    ev.dataset = ",".join(job.datasets) or None
    ev.details.update(job_id=job.id, kind=job.kind.value, state=job.state.value)


def submit(ctx: AppContext, actor: Actor, agreement_id: str, kind: str, spec: Mapping[str, Any], ev: AuditEvent, *,
           purpose: str | None = None, job_id: str | None = None) -> Job:
    """``POST /jobs``: note the agreement's expiry, submit (`submit_job`), audit the job and its spec hash; a job
    the agreement auto-approved is charged (ε, δ on the entry) and wakes the worker. ``job_id`` (default: a fresh
    one) names the job; a second submission under the same id fails on the job's primary key with nothing
    metered or charged (the console's one-time form tokens rely on it)."""
    note_expiry(ctx, agreement_id)
    job_id = job_id or policies.new_job_id()

    def prepare(conn: Connection, entry: AuditEvent) -> bool:  # the request's entry, in the submission's transaction
        _note_submitted(entry, job_in(conn, job_id))
        return True

    job = submit_job(ctx, actor, agreement_id, kind, spec, purpose=purpose, job_id=job_id,
                     journal=request_entry(ctx.audit, ev, prepare))
    _note_submitted(ev, job)
    if job.state is JobState.APPROVED:
        runtime(ctx).wake.set()
    return job


def _note_submitted(ev: AuditEvent, job: Job) -> None:
    note_job(ev, job)
    ev.details["spec_hash"] = job.spec_hash
    if job.state is JobState.APPROVED:
        ev.epsilon, ev.delta = str(job.cost.epsilon), str(job.cost.delta)


def _charge_entry(actor: Actor, job: Job) -> AuditEvent:
    """``job.charge``: the intent entry of an inline query's debit, the grantee's own (its outcome follows in the
    release's or failure's transaction)."""
    return AuditEvent(actor=actor.name, role=str(actor.role), action=AuditAction.JOB_CHARGE,
                      agreement_id=job.agreement_id, dataset=",".join(job.datasets) or None,
                      epsilon=str(job.cost.epsilon), delta=str(job.cost.delta),
                      details={"job_id": job.id, "kind": job.kind.value, "state": job.state.value})


def run_query(ctx: AppContext, actor: Actor, agreement_id: str, spec: Mapping[str, Any], ev: AuditEvent, *,
              purpose: str | None = None) -> tuple[bool, dict[str, Any]]:
    """``POST /queries``: submit an inline query and, when the agreement auto-approves it, run it in the request.
    Returns ``(waiting, body)``: ``waiting`` when the job waits for the owner (the body names it and its cost);
    else the released answer, or the failure with whether it was refunded (the entry records ``JOB_FAILED``).

    Intent, then outcome (`gateway.journal`): a job left waiting has the request's entry in its submission's
    transaction; an auto-approved one has the grantee's ``job.charge`` entry in the debit's transaction and the
    request's entry (with the answer's digest, or ``JOB_FAILED``) in the release's or failure's.

    The fixed cost (docs/performance.md, "A DP query call's fixed cost"): one read transaction for the decision
    (`policies.submission_context`: the plan is made from what it read), one write transaction storing the job
    ``running`` under this process's lease with its debit, meters and ``job.charge``, the engine, then one write
    transaction releasing the answer with its certificate and entries (`_finish`); the answer is returned as
    stored, without reading it back. An allowed query's agreement is in force, so only a refused one can be the
    first touch of an expired agreement: its expiry is recorded then (`note_expiry`), before the refusal."""
    job_id = policies.new_job_id()
    seen: dict[int, Job] = {}

    def job_of(conn: Connection) -> Job:  # the job as the submission's transaction wrote it, read once
        if id(conn) not in seen:
            seen.clear()
            seen[id(conn)] = job_in(conn, job_id)
        return seen[id(conn)]

    def waiting(conn: Connection, entry: AuditEvent) -> bool:  # left for the owner: the request's whole change
        job = job_of(conn)
        if job.state is not JobState.PENDING_APPROVAL:
            return False
        note_job(entry, job)
        entry.details["status"] = 202
        return True

    def charged(conn: Connection) -> AuditEvent | None:  # auto-approved (and started): the debit's intent entry
        job = job_of(conn)
        return _charge_entry(actor, job) if job.state in (JobState.APPROVED, JobState.RUNNING) else None

    try:
        job, ag, datasets = _submit(ctx, actor, agreement_id, "query", spec, purpose=purpose, inline=True,
                                    lease=process_id(), job_id=job_id, start=True,
                                    journal=both(request_entry(ctx.audit, ev, waiting),
                                                 system_entry(ctx.audit, charged)))
    except DomainError:
        note_expiry(ctx, agreement_id)
        raise
    if job.state is JobState.PENDING_APPROVAL:
        confirm(ev)  # the submission's transaction wrote the request's entry and committed
    note_job(ev, job)
    if job.state is JobState.PENDING_APPROVAL:
        return True, {"job_id": job.id, "state": job.state.value, "cost": job.cost.as_json()}
    ev.epsilon, ev.delta = str(job.cost.epsilon), str(job.cost.delta)
    answer: dict[str, Any] = {}
    if job.state is JobState.RUNNING:  # started with its submission, leased to this process
        with Heartbeat(ctx, job.id, process_id()):
            done = _execute(ctx, job, ev, loaded=(ag, datasets), answer=answer)
    else:
        done = run_inline(ctx, job, ev)
    ev.details["state"] = done.state.value
    if done.state is not JobState.RELEASED:
        ev.decision, ev.code = "error", "JOB_FAILED"
        return False, {"job_id": done.id, "state": done.state.value, "failure_reason": done.failure_reason,
                       "refunded": refunded(ctx, done.id)}
    out = answer or job_result(ctx, actor, done.id)
    ev.output_digest = out["output_digest"]
    return False, {"job_id": done.id, "state": done.state.value, **out["result"]}


# --- execution ----------------------------------------------------------------------------------------------


def _pending(ctx: AppContext, job_id: str) -> dict[str, Any] | None:
    """The job's output awaiting the owner's release (``job_outputs``), if any."""
    stored = policies.job_output(ctx.engine, job_id)
    return stored.pending if stored is not None else None


def _worker_entry(job: Job, action: str, decision: str = "allow", code: str | None = None,
                  output_digest: str | None = None, **details: Any) -> AuditEvent:
    return AuditEvent(
        actor=WORKER, role=SYSTEM, action=action, agreement_id=job.agreement_id,
        dataset=",".join(job.datasets) or None, decision=decision, code=code,
        epsilon=str(job.cost.epsilon), delta=str(job.cost.delta), output_digest=output_digest,
        details={"job_id": job.id, "kind": job.kind.value, **details})


def _audit(ctx: AppContext, job: Job, action: str, decision: str = "allow", code: str | None = None,
           output_digest: str | None = None, **details: Any) -> None:
    """A worker entry in its own transaction (for what changes no state: a discarded output)."""
    ctx.audit.append(_worker_entry(job, action, decision, code, output_digest, **details))


def _system(ctx: AppContext, job: Job, action: str, decision: str = "allow", code: str | None = None,
            output_digest: str | None = None, **details: Any) -> Journal:
    """A worker entry written in the transaction of the job's move (`gateway.journal`)."""
    ev = _worker_entry(job, action, decision, code, output_digest, **details)
    return system_entry(ctx.audit, lambda _conn: ev)


def _outcome(ctx: AppContext, ev: AuditEvent | None, state: JobState,
             output_digest: str | None = None) -> Journal | None:
    """The request's entry stating an inline query's outcome, for the release's or failure's transaction."""
    if ev is None:
        return None

    def outcome(_conn: Connection, entry: AuditEvent) -> bool:  # `run_query` notes the same once the job ends
        entry.details["state"] = state.value
        if state is JobState.RELEASED:
            entry.output_digest = output_digest
        else:
            entry.decision, entry.code = "error", "JOB_FAILED"
        return True

    return request_entry(ctx.audit, ev, outcome)


def _fail(ctx: AppContext, job: Job, e: JobFailed, ev: AuditEvent | None = None) -> Job:
    """Fail the job: refunded with its own public reason if nothing was read (``e.before_read``), else charged
    with the kind's uniform reason; the cause and its detail go to the owner (``job_outputs.owner_detail``, stored
    with the failure, and ``job.incident``)."""
    public = e.reason if e.before_read else f"{job.kind.value}.failed"
    detail: dict[str, Any] = {"failure": e.cause}
    if e.detail:
        detail["failure_detail"] = e.detail[-16384:]
    return policies.fail(ctx.engine, job.id, public, refund=e.before_read, owner_detail=detail, journal=both(
        _system(ctx, job, AuditAction.JOB_FAIL, decision="error", code="JOB_FAILED", reason=public,
                refunded=e.before_read),
        None if e.before_read else _system(ctx, job, INCIDENT, decision="error", cause=e.cause, charged=True,
                                           released=False),
        _outcome(ctx, ev, JobState.FAILED)))


def _bucket_end(ctx: AppContext, job: Job) -> dt.datetime | None:
    """For a query job with a latency bucket: wait until a whole, non-zero number of buckets has passed since its
    ``started_at`` and return that instant (its ``finished_at``); ``None`` (record the actual time) otherwise."""
    bucket_ms = ctx.settings.latency_bucket_ms
    if job.kind.value != "query" or bucket_ms <= 0 or job.started_at is None:
        return None
    bucket = dt.timedelta(milliseconds=bucket_ms)
    elapsed = dt.datetime.now(dt.UTC) - job.started_at
    end = job.started_at + max(1, math.ceil(elapsed / bucket)) * bucket
    wait = (end - dt.datetime.now(dt.UTC)).total_seconds()
    if wait > 0:
        _sleep(wait)
    return end


def _release(ctx: AppContext, job: Job, out: Output, approved_by: str | None = None,
             now: dt.datetime | None = None, request: Journal | None = None) -> Job:
    """Release through the ledger's guard (a refunded job never releases); a trained model is registered (catalog
    ``model_registry``, its ids named first and stored in the result) in the release's own transaction, before
    the ``job.release`` entry (and ``request``'s, if any): the model, the release and their entries commit
    together or not at all — no registered model without its release and entry, no release without its model."""
    result, ref, register = out.result, None, None
    if out.model is not None:
        ref, certificate = model_registry.new_model_ids()
        result = {**result, "model_id": ref, "certificate_id": certificate}
        model = out.model

        def register(conn: Connection) -> None:
            model_registry.register_model_in(conn, job_id=job.id, agreement_id=job.agreement_id,
                                             ids=(ref, certificate), **model)
    # every released output names its sources and certificate, issued in this transaction (services.certificates)
    result, certify = certificates.for_release(ctx, job, out.kind, out.output_digest, result, now)
    extra = {"released_by": approved_by} if approved_by else {}
    entry = _system(ctx, job, AuditAction.JOB_RELEASE, output_digest=out.output_digest, output_kind=out.kind,
                    **({"model_id": ref} if ref else {}), **extra)
    return policies.release(ctx.engine, job.id, result=result, result_ref=ref, output_digest=out.output_digest,
                            now=now, journal=both(register, certify, entry, request))


def _execute(ctx: AppContext, job: Job, ev: AuditEvent | None = None, *,
             loaded: tuple[policies.Agreement, Mapping[str, Dataset]] | None = None,
             answer: dict[str, Any] | None = None) -> Job:
    """Run a job that is ``running``: execute, gate, then release (auto) or keep for the owner. Every move
    commits with its entries; ``ev`` (an inline query's request) is stated by the release's or failure's.

    ``loaded``: the agreement and dataset records the inline query's submission decided on, moments ago in this
    request (its debit re-checked the agreement under its row lock), instead of reading them again; the output is
    then released as it leaves the gate in one transaction (`_finish`) and ``answer`` is given the result as
    stored and its digest."""
    if loaded is not None:
        ag: policies.Agreement | None = loaded[0]
        datasets = {n: d for n in job.datasets if (d := loaded[1].get(n)) is not None}
    else:
        ag = policies.load_agreement(ctx.engine, job.agreement_id)
        datasets = datasets_of(ctx, job.datasets)
    env = replace(runtime(ctx).env, agreement=ag)
    kind = job.kind.value
    try:
        handler = _handler(kind)
        if len(datasets) != len(job.datasets):
            raise JobFailed("dataset.missing", before_read=True)
        check_copies(ctx, datasets.values())  # fingerprints verified at read (gateway.services.storage)
    except JobFailed as e:
        return _fail(ctx, job, e, ev)
    except DomainError as e:
        return _fail(ctx, job, JobFailed(f"job.{e.code.lower()}", before_read=True), ev)
    try:
        out = handler.execute(job, datasets, env)
    except JobFailed as e:
        return _fail(ctx, job, e, ev)
    except Exception as e:  # not a handler's own verdict: it cannot vouch that nothing was read
        log.exception("job %s failed in the worker", job.id)
        cause = f"job.{e.code.lower()}" if isinstance(e, DomainError) else "worker.error"
        return _fail(ctx, job, JobFailed(f"{kind}.failed", cause=cause), ev)
    try:
        out = _gated(kind, out, ctx.settings.models_dir, ctx.settings.hash_alg)
    except JobFailed as e:
        return _fail(ctx, job, e, ev)
    detail = dict(out.owner_detail or {})
    if out.incident:
        detail["incident"] = {"cause": out.incident, "released": "the answer over an empty input (fresh noise)",
                              "charged": True}
    pending: dict[str, Any] | None = None
    if out.release == "owner":
        artifact = None if out.artifact is None else os.path.relpath(out.artifact, ctx.settings.models_dir)
        pending = {"kind": out.kind, "result": out.result, "output_digest": out.output_digest, "artifact": artifact,
                   "model": out.model}
    finished = _bucket_end(ctx, job)
    if loaded is not None and ag is not None and ev is not None and pending is None and out.model is None:
        return _finish(ctx, job, out, ev, detail, finished, (ag, datasets), answer)
    entries = both(  # the output awaiting release, the owner's detail and their entries: one transaction
        _system(ctx, job, INCIDENT, decision="error", cause=out.incident, charged=True, released=True)
        if out.incident else None,
        _system(ctx, job, AuditAction.JOB_SUCCEED, output_digest=out.output_digest, awaiting="owner_release")
        if pending is not None else None)
    try:
        succeeded = policies.succeed(ctx.engine, job.id, now=finished, pending=pending, owner_detail=detail or None,
                                     keep_lease=pending is None,  # an output released at once keeps the lease
                                     journal=entries)
    except DomainError:  # cancelled or recovered meanwhile: nothing may be released
        _audit(ctx, job, AuditAction.JOB_DISCARD, decision="error", code="JOB_FAILED", reason="job.wrong_state")
        return _reload(ctx, job.id)
    if pending is not None:
        return succeeded
    try:
        return _release(ctx, job, out, now=finished, request=_outcome(ctx, ev, JobState.RELEASED, out.output_digest))
    except DomainError as e:
        return _fail(ctx, job, JobFailed(f"{kind}.failed", cause=f"release.{e.code.lower()}"), ev)


def _finish(ctx: AppContext, job: Job, out: Output, ev: AuditEvent, detail: dict[str, Any],
            finished: dt.datetime | None, loaded: tuple[policies.Agreement, Mapping[str, Dataset]],
            answer: dict[str, Any] | None) -> Job:
    """Release an inline query's gated answer in one transaction (`policies.finish`: ``running`` → ``succeeded``
    → ``released``), with, in order, the incident entry (an answer over an empty input), the output certificate,
    ``job.release`` and the request's own entry — what `succeed` and `_release` commit in two transactions.

    If that transaction fails (the store refused it), ``succeeded`` is recorded on its own, as the two-step path
    would have left it: the answer was computed on data, so the lease sweep fails the job charged; the error is
    raised (``UNAVAILABLE``). A job no longer ``running`` (swept meanwhile) releases nothing (``job.discard``)."""
    incident = (_system(ctx, job, INCIDENT, decision="error", cause=out.incident, charged=True, released=True)
                if out.incident else None)
    result, certify = certificates.for_release(ctx, job, out.kind, out.output_digest, out.result, finished,
                                               loaded=loaded)
    entry = _system(ctx, job, AuditAction.JOB_RELEASE, output_digest=out.output_digest, output_kind=out.kind)
    try:
        released, stored = policies.finish(
            ctx.engine, job.id, result=result, output_digest=out.output_digest, now=finished,
            owner_detail=detail or None,
            journal=both(incident, certify, entry, _outcome(ctx, ev, JobState.RELEASED, out.output_digest)))
    except DomainError as e:
        current = _reload(ctx, job.id)
        if current.state is JobState.RUNNING:  # not released, still ours: a charged failure, as `_release`'s
            return _fail(ctx, job, JobFailed(f"{job.kind.value}.failed", cause=f"release.{e.code.lower()}"), ev)
        _audit(ctx, job, AuditAction.JOB_DISCARD, decision="error", code="JOB_FAILED", reason="job.wrong_state")
        return current
    except Exception:
        with contextlib.suppress(Exception):  # the output existed: leave the job charged for the sweep
            policies.succeed(ctx.engine, job.id, now=finished, owner_detail=detail or None, keep_lease=True,
                             journal=incident)
        raise
    confirm(ev)  # committed: the request's entry is in the log
    if answer is not None:
        answer.update(result=stored, output_digest=out.output_digest)
    return released


def _gated(kind: str, out: Output, models_dir: Any, hash_alg: HashAlg = "sha256") -> Output:
    """``out`` if the release gate lets it leave; else its fallback (drawn once, gated too) carrying the refusal
    as its incident; else `JobFailed` (charged: the output was computed on data)."""
    try:
        gate.check(kind, out, models_dir)
        gate.suite_digest(out, hash_alg)
        return out
    except JobFailed as refused:
        if out.fallback is None:
            raise JobFailed(f"{kind}.failed", refused.detail, cause=refused.cause) from None
        cause = refused.cause
    try:
        fb = out.fallback()
        gate.check(kind, fb, models_dir)
        gate.suite_digest(fb, hash_alg)
    except Exception:
        log.exception("the fallback output was refused too")
        raise JobFailed(f"{kind}.failed", cause=cause) from None
    return replace(fb, incident=cause, fallback=None)


def _reload(ctx: AppContext, job_id: str) -> Job:
    job = load_job(ctx.engine, job_id)
    assert job is not None
    return job


def claim_next(ctx: AppContext, worker_id: str) -> Job | None:
    """The worker claims the oldest queued job (`policies.claim_next`, leased to ``worker_id``): ``job.start``
    commits with the claim; a job that can no longer run fails refunded with its ``job.fail`` entry."""

    def entry(conn: Connection, job: Job) -> None:
        if job.state is JobState.RUNNING:
            ctx.audit.append_in(conn, _worker_entry(job, AuditAction.JOB_START))
        else:
            ctx.audit.append_in(conn, _worker_entry(job, AuditAction.JOB_FAIL, decision="error", code="JOB_FAILED",
                                                    reason=job.failure_reason, refunded=True))

    return policies.claim_next(ctx.engine, worker_id, lease_s=ctx.settings.job_lease_s, journal=entry)


def run_claimed(ctx: AppContext, job: Job) -> Job:
    """The worker's path for a job `claim_next` handed it (leased to the worker, ``job.worker_id``; its
    ``job.start`` entry committed with the claim): run it under the lease's heartbeat."""
    with Heartbeat(ctx, job.id, job.worker_id or ""):
        return _execute(ctx, job)


def run_inline(ctx: AppContext, job: Job, ev: AuditEvent | None = None) -> Job:
    """Run an auto-approved inline query in the request (``POST /queries``), under this process's lease (taken at
    submission, `submit_job`) and its heartbeat. A job that can no longer run fails refunded, the request's refusal
    in the same transaction; ``ev`` is otherwise stated by the release's or failure's transaction."""
    owner = process_id()

    def blocked(conn: Connection, entry: AuditEvent) -> bool:  # `start` failed and refunded it: refused
        failed = job_in(conn, job.id)
        if failed.state is not JobState.FAILED:
            return False
        entry.details["state"] = failed.state.value
        refusal(entry, POLICY_DENIED if failed.failure_reason == "dataset.changed" else AGREEMENT_INACTIVE)
        return True

    start = policies.start(ctx.engine, job.id, owner, lease_s=ctx.settings.job_lease_s,
                           journal=None if ev is None else request_entry(ctx.audit, ev, blocked))
    with Heartbeat(ctx, job.id, owner):
        return _execute(ctx, start, ev)
