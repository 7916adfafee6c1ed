"""Jobs: submission, owner approval bound to the spec hash and dataset fingerprints, a durable queue, results.

State machine (enforced in the database: every move is ``UPDATE … WHERE id = ? AND state IN (expected)``
and a move that matches no row raises, so two actors can never both move a job)::

    pending_approval --approve--> approved --claim/start--> running --succeed--> succeeded --release--> released
    pending_approval --reject--> rejected        pending_approval | approved --cancel--> cancelled
    approved | running | succeeded --fail--> failed

Budget: a job is charged when it becomes ``approved`` (in the same transaction), refunded when it is
cancelled or fails before any of its data was read (same transaction), and never refunded once released.
A failure after the run read data is charged like a release (`fail` with ``refund=False``): whether a run
fails may depend on the data, so the refund must not. Agreements with ``approval = "auto_within_budget"``
skip the owner: submission charges and approves at once.

Approval is bound to what the owner saw: `approve` must name the job's ``spec_hash`` (the home suite's hash,
``sha256:`` or ``sm3:``, of the canonical JSON spec), and the datasets' fingerprints recorded at submission must
still be current — otherwise the job is rejected with ``dataset.changed``. The check is repeated when a worker
claims the job (it then fails with ``dataset.changed`` and is refunded), and a claimed job whose agreement is no
longer active fails likewise.

Outputs that are not (yet) the released result live in ``job_outputs``, written in the transaction of the
state change that produces or ends them: `succeed` stores the output awaiting the owner's release
(``pending``) and the owner-only cause of an incident (``owner_detail``); `fail` stores the owner-only cause
and drops any output awaiting release; `release` drops it as the result is stored. `job_output` reads them.

An inline query (``POST /queries`` on an auto-approving agreement) makes these moves in two write transactions:
`submit` with ``start`` stores it ``running`` with its debit and meters, leased to the request's process, and
`finish` moves it ``running`` → ``succeeded`` → ``released`` with its result in one guarded UPDATE (docs/
performance.md, "A DP query call's fixed cost").

Queue: `claim_next` moves the oldest approved job to ``running`` atomically (``BEGIN IMMEDIATE`` on SQLite,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Jobs run inline by the gateway (``POST /queries`` on an auto-approving
agreement) are flagged ``inline`` and never offered to the queue.

Journal: every function that moves a job (or charges, refunds or meters for it) takes an optional ``journal``
(`policies.journal`), called in the transaction of the move as its last write, so the gateway's audit entry for
the move commits with it or not at all. `job_in` reads a job inside that transaction. `claim_next` and
`sweep_expired` pass the job as it is after the move (`ClaimJournal`, `SweepJournal`).

Leases: the process that runs a job holds a lease on it (``lease_owner``, ``lease_expires_at``), taken in the
transaction that hands it the job (`claim_next`, `start`, and `submit` for an inline query, which its request runs
next), renewed by its heartbeat (`renew_lease`, which says whether the lease is still held) and cleared with the
outcome (`succeed` unless the release follows at once, `fail`, `release`). `sweep_expired` (every worker, at start
and periodically) takes over a job whose lease expired: one stranded ``approved`` (inline) or ``running`` is failed
with ``worker.interrupted`` and refunded; one stuck in ``succeeded`` whose output was to be released at once (its
output died with the process; data was read) is failed charged with the kind's ``<kind>.failed``. Each takeover is
one guarded transaction that re-checks the expiry, so a job whose holder renewed meanwhile — any live process's —
is never touched. Expiries are compared on the callers' clocks: the lease must exceed the heartbeat period plus
any clock skew between hosts. Rows from before leases (no lease, ``running``) count as expired.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, and_, bindparam, or_, select, update

from catalog.errors import (
    AGREEMENT_INACTIVE,
    APPROVAL_REQUIRED,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
    invalid,
)
from catalog.fingerprint import HashAlg
from policies import _tables as t
from policies import ledger, quotas
from policies._canonical import MAX_SPEC_BYTES, canonical_json, json_digest, text_digest
from policies._clock import aware
from policies._exact import from_db, to_db
from policies.access import build_context
from policies.actor import Actor, Role
from policies.agreements.record import catalog_records, effective_state, load_agreement
from policies.budget import Budget
from policies.decision import Action, Decision, DecisionContext, Reason, decide, meters_for
from policies.journal import Journal, write
from vocab.jobs import JOB_KINDS, STORED_KINDS
from vocab.jobs import JobKind as JobKind  # re-exported: policies.JobKind
from vocab.states import AgreementState
from vocab.states import JobState as JobState  # re-exported: policies.JobState

S = JobState
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.RELEASED, S.FAILED}),
    S.RELEASED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
AUTO_APPROVER = "auto_within_budget"
_NOT_THE_OWNER = frozenset({"agreement.not_owner", "role.not_allowed"})
DEFAULT_LEASE_S = 30.0  # how long a job's lease holds without a heartbeat
INTERRUPTED = "worker.interrupted"


@dataclass(frozen=True)
class Job:
    """A job's row: its spec bound at submission (hash, fingerprints, columns, cost) and its lifecycle so far."""

    id: str
    agreement_id: str
    kind: JobKind
    spec: dict[str, Any]
    spec_hash: str
    fingerprints: dict[str, str]  # dataset -> fingerprint bound at submission
    columns: dict[str, tuple[str, ...]]
    purpose: str | None
    inline: bool
    state: JobState
    cost: Budget
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    approved_by: str | None
    approved_at: dt.datetime | None
    rejected_reason: str | None
    failure_reason: str | None
    worker_id: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    output_digest: str | None
    result_ref: str | None
    has_result: bool
    released_at: dt.datetime | None

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets the job reads, sorted."""
        return tuple(sorted(self.fingerprints))

    def public(self) -> dict[str, Any]:
        """``GET /jobs/{id}`` and the owner's queue: the exact spec, its hash, fingerprints and the cost."""

        def iso(x: dt.datetime | None) -> str | None:
            return x.isoformat() if x else None

        return {
            "id": self.id,
            "agreement_id": self.agreement_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "spec": self.spec,
            "spec_hash": self.spec_hash,
            "datasets": {ds: {"fingerprint": fp} for ds, fp in sorted(self.fingerprints.items())},
            "columns": {ds: list(c) for ds, c in self.columns.items()},
            "purpose": self.purpose,
            "cost": self.cost.as_json(),
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "approved_by": self.approved_by,
            "approved_at": iso(self.approved_at),
            "rejected_reason": self.rejected_reason,
            "failure_reason": self.failure_reason,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "released_at": iso(self.released_at),
            "output_digest": self.output_digest,
        }


@dataclass(frozen=True)
class JobOutput:
    """A job's ``job_outputs`` row: ``pending`` is the output awaiting the data owner's release (``None`` once
    released or refused), ``owner_detail`` what the owner alone may read about a failure or incident."""

    job_id: str
    pending: dict[str, Any] | None
    owner_detail: dict[str, Any] | None


@dataclass(frozen=True)
class JobResult:
    """A released job's output: its digest and the JSON result and/or a reference to a stored blob."""

    job_id: str
    output_digest: str
    result: Any | None
    result_ref: str | None


def spec_hash(spec: Mapping[str, Any], hash_alg: HashAlg = "sha256") -> str:
    """``"<alg>:<hex>"`` of the canonical JSON of a spec (what an approval is bound to), with the home's hash."""
    return json_digest(dict(spec), hash_alg)


def _row_to_job(r: Any) -> Job:
    return Job(
        id=r.id, agreement_id=r.agreement_id, kind=JobKind(r.kind), spec=json.loads(r.spec_json),
        spec_hash=r.spec_hash, fingerprints=json.loads(r.fingerprints_json),
        columns={ds: tuple(c) for ds, c in json.loads(r.columns_json).items()}, purpose=r.purpose,
        inline=bool(r.inline), state=JobState(r.state), cost=Budget(from_db(r.cost_epsilon), from_db(r.cost_delta)),
        created_by=r.created_by, created_at=r.created_at, updated_at=r.updated_at, approved_by=r.approved_by,
        approved_at=r.approved_at, rejected_reason=r.rejected_reason, failure_reason=r.failure_reason,
        worker_id=r.worker_id, started_at=r.started_at, finished_at=r.finished_at, output_digest=r.output_digest,
        result_ref=r.result_ref, has_result=r.result_json is not None or r.result_ref is not None,
        released_at=r.released_at,
    )


_JOB_BY_ID = select(t.jobs).where(t.jobs.c.id == bindparam("b_job"))  # built once, the id bound
_INSERT_JOB = t.jobs.insert()


def job_in(conn: Connection, job_id: str) -> Job:
    """The job as ``conn``'s transaction sees it (a journal reading the move it records)."""
    return _row_to_job(conn.execute(_JOB_BY_ID, {"b_job": job_id}).one())


def load_job(engine: Engine, job_id: str) -> Job | None:
    """The stored job without authorization (workers, internal use)."""
    with engine.connect() as conn:
        r = conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).first()
    return _row_to_job(r) if r else None


def job_output(engine: Engine, job_id: str) -> JobOutput | None:
    """The job's stored output awaiting release and owner-only detail, without authorization (the caller
    checks that the reader is the data owner)."""
    with engine.connect() as conn:
        r = conn.execute(select(t.job_outputs).where(t.job_outputs.c.job_id == job_id)).first()
    if r is None:
        return None
    return JobOutput(job_id, json.loads(r.payload) if r.payload is not None else None,
                     json.loads(r.owner_detail) if r.owner_detail is not None else None)


_KEEP: Any = object()


def _put_output(conn: Connection, job_id: str, now: dt.datetime, *, pending: Any = _KEEP,
                owner_detail: Any = _KEEP) -> None:
    """Set the job's pending output and/or owner detail (``None`` clears, `_KEEP` leaves it) in ``conn``'s
    transaction, creating the row when there is something to store."""
    values: dict[str, Any] = {}
    if pending is not _KEEP:
        values["kind"] = None if pending is None else str(pending.get("kind"))[:16]
        values["payload"] = None if pending is None else json.dumps(pending, sort_keys=True)
    if owner_detail is not _KEEP:
        values["owner_detail"] = None if owner_detail is None else json.dumps(owner_detail, sort_keys=True)
    if not values:
        return
    o = t.job_outputs.c
    res = conn.execute(update(t.job_outputs).where(o.job_id == job_id).values(updated_at=now, **values))
    if res.rowcount == 0 and any(v is not None for v in values.values()):
        conn.execute(t.job_outputs.insert().values(job_id=job_id, created_at=now, updated_at=now, **values))


def _job_not_found() -> DomainError:
    return DomainError(NOT_FOUND_OR_FORBIDDEN, "job not found")


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _move(conn: Connection, job_id: str, expected: Iterable[JobState], to: JobState, now: dt.datetime,
          **values: Any) -> None:
    """The only way a job changes state: a guarded UPDATE; raises if the job was not in ``expected``."""
    expected = tuple(expected)
    assert all(to in TRANSITIONS[s] for s in expected), f"illegal transition to {to}"
    res = conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job_id, t.jobs.c.state.in_([s.value for s in expected]))
        .values(state=to.value, updated_at=now, **values)
    )
    if res.rowcount != 1:
        _refuse_wrong_state(conn, job_id)


def _refuse_wrong_state(conn: Connection, job_id: str) -> NoReturn:
    """A guarded state change moved no row: the job is gone (not found) or in another state (``job.wrong_state``)."""
    current = conn.execute(select(t.jobs.c.state).where(t.jobs.c.id == job_id)).scalar_one_or_none()
    if current is None:
        raise _job_not_found()
    raise DomainError(INVALID_REQUEST, "the job is not in a state that allows this",
                      [{**Reason("job.wrong_state").as_dict(), "state": current}])


def _decide_for_job(engine: Engine, actor: Actor, action: Action, job: Job, now: dt.datetime, *,
                    with_cost: bool = False, bind_fingerprints: bool = False) -> Decision:
    return decide(build_context(
        engine, actor, action, job.agreement_id, now, datasets=job.datasets, columns=job.columns,
        purpose=job.purpose, job_kind=job.kind.value, cost=job.cost if with_cost else None,
        fingerprints=job.fingerprints if bind_fingerprints else None))


def _visible_job(engine: Engine, actor: Actor, job_id: str, action: Action, now: dt.datetime, **kw: bool,
                 ) -> tuple[Job, Decision]:
    """The job and the decision on it; ``NOT_FOUND_OR_FORBIDDEN`` for non-parties (existence is hidden)."""
    job = load_job(engine, job_id)
    if job is None:
        raise _job_not_found()
    decision = _decide_for_job(engine, actor, action, job, now, **kw)
    err = decision.error()
    if err is not None and err.code == NOT_FOUND_OR_FORBIDDEN:
        raise _job_not_found()
    return job, decision


# --- submission and the owner's decision ------------------------------------------------------------------


def new_job_id() -> str:
    """A fresh job id (``job_`` and 20 hex digits)."""
    return "job_" + secrets.token_hex(10)


def submit(
    engine: Engine,
    actor: Actor,
    agreement_id: str,
    kind: str,
    spec: Mapping[str, Any],
    *,
    datasets: Iterable[str],
    cost: Budget,
    columns: Mapping[str, Iterable[str]] | None = None,
    purpose: str | None = None,
    inline: bool = False,
    now: dt.datetime | None = None,
    lease_owner: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    job_id: str | None = None,
    journal: Journal | None = None,
    hash_alg: HashAlg = "sha256",
    context: DecisionContext | None = None,
    start: bool = False,
) -> Job:
    """``POST /jobs`` (and ``POST /queries`` with ``kind="query", inline=True``), by the grantee.

    ``datasets``/``columns`` are what the vetted spec touches and ``cost`` its estimated (ε, δ), both from the
    sandbox. The decision covers role, state, scope, quotas and budget; the call and job meters are consumed,
    the job stored ``pending_approval`` — or, on an ``auto_within_budget`` agreement, charged and ``approved``
    — all in one transaction (``BUDGET_EXHAUSTED``/``QUOTA_EXCEEDED`` leave nothing behind). ``inline`` keeps
    an auto-approved job off the queue so the caller runs it with `start`; such a job is leased to
    ``lease_owner`` for ``lease_s`` from the start (the request that submitted it runs it next). ``job_id`` (default:
    a fresh random id) lets the caller name the job before it exists; ``journal`` records the submission in its
    transaction.

    ``context`` (`policies.access.submission_context`, loaded before the spec was planned) is decided on instead
    of reading the store again; the write transaction re-checks what can change meanwhile (the agreement's state
    under its row lock, `ledger.charge_in`; the meters and the budget atomically). ``start`` (an inline job its
    caller runs next, auto-approved and leased) stores the job ``running`` at once, leased to ``lease_owner``: the
    move `start` would make, in the submission's transaction (the decision just checked what `start` re-checks).
    """
    now = aware(now)
    try:
        job_kind = JobKind(kind)
        if not JOB_KINDS[job_kind].stored:
            raise ValueError(kind)
    except ValueError:
        raise invalid(f"kind must be one of {', '.join(STORED_KINDS)}") from None
    if not isinstance(spec, Mapping):
        raise invalid("spec must be an object")
    try:
        spec_text = canonical_json(dict(spec))
    except (TypeError, ValueError):
        raise invalid("spec must be plain JSON (no NaN or infinities)") from None
    if len(spec_text.encode()) > MAX_SPEC_BYTES:
        raise invalid(f"spec is larger than {MAX_SPEC_BYTES} bytes")
    if not isinstance(cost, Budget):
        raise TypeError("cost must be a Budget")
    names = tuple(sorted(set(datasets)))
    if not names:
        raise invalid("a job touches at least one dataset")
    cols = {ds: tuple(sorted(set(c))) for ds, c in (columns or {}).items()}
    action = Action.QUERY_RUN if job_kind is JobKind.QUERY and inline else Action.JOB_SUBMIT
    if (context is not None and context.agreement is not None and context.agreement.id == agreement_id
            and all(ds in context.datasets for ds in names)):
        ctx = replace(context, action=action, now=now, requested=names,
                      columns={ds: frozenset(c) for ds, c in cols.items()}, purpose=purpose,
                      job_kind=job_kind.value, cost=cost)
    else:
        ctx = build_context(engine, actor, action, agreement_id, now, datasets=names, columns=cols,
                            purpose=purpose, job_kind=job_kind.value, cost=cost)
    decide(ctx).raise_if_denied()
    ag = ctx.agreement
    assert ag is not None
    fingerprints = {}
    for ds in names:
        rec = ctx.datasets.get(ds)
        assert rec is not None  # decide denied unregistered datasets
        fingerprints[ds] = rec.fingerprint
    auto = ag.document.approval == "auto_within_budget"
    leased = inline and auto and lease_owner is not None
    running = leased and start
    job_id = job_id or new_job_id()
    # an auto-approved job is stored approved (or, started, running) with its debit: the state machine's
    # pending_approval -> approved (-> running) moves, made by this one insert in the debit's transaction
    state = S.RUNNING if running else S.APPROVED if auto else S.PENDING_APPROVAL
    with engine.begin() as conn:
        quotas.consume_in(conn, ag, actor.name, meters_for(action), now)
        conn.execute(_INSERT_JOB, dict(
            id=job_id, agreement_id=ag.id, kind=job_kind.value, spec_json=spec_text,
            spec_hash=text_digest(spec_text, hash_alg), fingerprints_json=json.dumps(fingerprints, sort_keys=True),
            columns_json=json.dumps(cols, sort_keys=True), purpose=purpose, inline=inline and auto,
            state=state.value, created_by=actor.name, created_at=now, updated_at=now,
            cost_epsilon=to_db(cost.epsilon), cost_delta=to_db(cost.delta),
            lease_owner=lease_owner if leased else None,
            lease_expires_at=_lease_until(now, lease_s) if leased else None,
            **({"approved_by": AUTO_APPROVER, "approved_at": now} if auto else {}),
            **({"worker_id": lease_owner, "started_at": now} if running else {}),
        ))
        if auto:  # check-then-debit; raises (rolling the job back) if the agreement stopped being active
            ledger.charge_in(conn, ag.id, names, cost, job_id, now)
        job = job_in(conn, job_id)
        write(conn, journal)
    return job


def approve(engine: Engine, actor: Actor, job_id: str, *, spec_hash: str, now: dt.datetime | None = None,
            journal: Journal | None = None) -> Job:
    """``POST /jobs/{id}/approve`` (owner). ``spec_hash`` must be the hash the owner reviewed. If a dataset
    changed since submission the job is rejected (``dataset.changed``) and ``POLICY_DENIED`` raised. Otherwise
    the decision (state, scope, negative list, budget) must allow, and the charge and the move to ``approved``
    commit together (``BUDGET_EXHAUSTED`` leaves the job pending)."""
    now = aware(now)
    job, decision = _visible_job(engine, actor, job_id, Action.JOB_APPROVE, now, with_cost=True,
                                 bind_fingerprints=True)
    if set(decision.codes) & _NOT_THE_OWNER:
        decision.raise_if_denied()
    if job.state is not S.PENDING_APPROVAL:
        raise DomainError(INVALID_REQUEST, "the job is not pending approval",
                          [{**Reason("job.wrong_state").as_dict(), "state": job.state.value}])
    if spec_hash != job.spec_hash:
        raise DomainError(INVALID_REQUEST, "the approval must name the job's spec hash",
                          [Reason("job.spec_changed").as_dict()])
    changed = [r for r in decision.reasons if r.code == "dataset.changed"]
    if changed:  # this job can never be approved: the data it was reviewed against is gone
        with engine.begin() as conn:
            _move(conn, job_id, [S.PENDING_APPROVAL], S.REJECTED, now, rejected_reason="dataset.changed",
                  approved_by=actor.name)
            write(conn, journal)
        raise DomainError(POLICY_DENIED, "a dataset changed since submission; the job was rejected",
                          [r.as_dict() for r in changed])
    decision.raise_if_denied()
    with engine.begin() as conn:
        ledger.charge_in(conn, job.agreement_id, job.datasets, job.cost, job_id, now)
        _move(conn, job_id, [S.PENDING_APPROVAL], S.APPROVED, now, approved_by=actor.name, approved_at=now)
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


def reject(engine: Engine, actor: Actor, job_id: str, reason: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Job:
    """``POST /jobs/{id}/reject`` (owner, any agreement state): pending_approval → rejected."""
    now = aware(now)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
        raise invalid("a rejection needs a reason of 1..1000 characters")
    _, decision = _visible_job(engine, actor, job_id, Action.JOB_REJECT, now)
    decision.raise_if_denied()
    with engine.begin() as conn:
        _move(conn, job_id, [S.PENDING_APPROVAL], S.REJECTED, now, rejected_reason=reason.strip(),
              approved_by=actor.name)
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


def cancel(engine: Engine, actor: Actor, job_id: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Job:
    """Cancel a pending or approved job (its grantee or owner); an approved job's charge is refunded."""
    now = aware(now)
    _, decision = _visible_job(engine, actor, job_id, Action.JOB_CANCEL, now)
    decision.raise_if_denied()
    with engine.begin() as conn:
        _move(conn, job_id, [S.PENDING_APPROVAL, S.APPROVED], S.CANCELLED, now, finished_at=now)
        ledger.refund_in(conn, job_id, now)
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


# --- reads ------------------------------------------------------------------------------------------------


def get_job(engine: Engine, actor: Actor, job_id: str, *, now: dt.datetime | None = None) -> Job:
    """``GET /jobs/{id}``: the agreement's parties and regulators; ``NOT_FOUND_OR_FORBIDDEN`` otherwise."""
    job, decision = _visible_job(engine, actor, job_id, Action.JOB_READ, aware(now))
    decision.raise_if_denied()
    return job


def list_jobs(
    engine: Engine, *, owner: str | None = None, created_by: str | None = None, agreement_id: str | None = None,
    state: str | None = None, limit: int = 500,
) -> list[Job]:
    """Jobs filtered by the agreement's ``owner`` (the owner's approval queue), creator, agreement, state."""
    j, a = t.jobs.c, t.agreements.c
    q = select(t.jobs).order_by(j.created_at, j.id).limit(limit)
    if owner is not None:
        q = q.join(t.agreements, a.id == j.agreement_id).where(a.owner == owner)
    if created_by is not None:
        q = q.where(j.created_by == created_by)
    if agreement_id is not None:
        q = q.where(j.agreement_id == agreement_id)
    if state is not None:
        q = q.where(j.state == _job_state(state).value)
    with engine.connect() as conn:
        return [_row_to_job(r) for r in conn.execute(q).all()]


def _job_state(state: str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise DomainError(INVALID_REQUEST, "unknown job state",
                          [{"field": "state", "problem": "not a job state",
                            "allowed": [s.value for s in JobState]}]) from None


def jobs_visible_to(engine: Engine, actor: Actor, *, state: str | None = None,
                    agreement_id: str | None = None) -> list[Job]:
    """``GET /jobs?state=…``: regulators see all, owners the jobs on their agreements, others their own."""
    if actor.role is Role.REGULATOR:
        return list_jobs(engine, state=state, agreement_id=agreement_id)
    if actor.role is Role.OWNER:
        return list_jobs(engine, owner=actor.name, state=state, agreement_id=agreement_id)
    return list_jobs(engine, created_by=actor.name, state=state, agreement_id=agreement_id)


def get_result(engine: Engine, actor: Actor, job_id: str, *, now: dt.datetime | None = None) -> JobResult:
    """``GET /jobs/{id}/result`` (the grantee, after release). Sealed outputs after revocation/expiry give
    ``AGREEMENT_INACTIVE``; a job still awaiting the owner gives ``APPROVAL_REQUIRED``."""
    job, decision = _visible_job(engine, actor, job_id, Action.JOB_RESULT, aware(now))
    decision.raise_if_denied()
    if job.state is S.PENDING_APPROVAL:
        raise DomainError(APPROVAL_REQUIRED, "the job awaits the data owner's approval")
    if job.state is not S.RELEASED:
        raise DomainError(INVALID_REQUEST, "the job has no released result",
                          [{**Reason("job.not_released").as_dict(), "state": job.state.value}])
    with engine.connect() as conn:
        r = conn.execute(select(t.jobs.c.result_json, t.jobs.c.result_ref, t.jobs.c.output_digest)
                         .where(t.jobs.c.id == job_id)).one()
    return JobResult(job_id, r.output_digest, json.loads(r.result_json) if r.result_json else None, r.result_ref)


# --- the worker side --------------------------------------------------------------------------------------


def _run_blockers(engine: Engine, job: Job, now: dt.datetime) -> str | None:
    """Why an approved job must not run now: a changed dataset or an agreement no longer active."""
    records = catalog_records(engine, job.fingerprints)
    if any(rec is None or rec.fingerprint != job.fingerprints[ds] for ds, rec in records.items()):
        return "dataset.changed"
    ag = load_agreement(engine, job.agreement_id)
    state = effective_state(ag, now) if ag else AgreementState.REVOKED
    if state is not AgreementState.ACTIVE:
        return f"agreement.{'not_active' if state is AgreementState.PROPOSED else state.value}"
    return None


def _lease_until(now: dt.datetime, lease_s: float) -> dt.datetime:
    if not lease_s > 0:
        raise ValueError("a lease lasts a positive time")
    return now + dt.timedelta(seconds=lease_s)


ClaimJournal = Callable[[Connection, Job], None]  # the claimed job, running — or failed by a blocker
SweepJournal = Callable[[Connection, "Swept"], None]  # a takeover, before and after


def _claim_failure(journal: ClaimJournal | None, job_id: str) -> Journal | None:
    if journal is None:
        return None

    def write(conn: Connection) -> None:
        journal(conn, job_in(conn, job_id))

    return write


def claim_next(engine: Engine, worker_id: str, *, now: dt.datetime | None = None,
               lease_s: float = DEFAULT_LEASE_S, journal: ClaimJournal | None = None) -> Job | None:
    """Atomically move the oldest approved (queued) job to ``running`` for ``worker_id``, leased to it for
    ``lease_s``; ``None`` if the queue is empty. A job whose datasets changed or whose agreement is no longer
    active is failed and refunded instead, and the next one is tried. No job is ever handed to two claimers.
    ``journal`` is called in the claim's transaction with the job now ``running``, and in a blocked job's failure
    transaction with the job now ``failed`` (refunded)."""
    now = aware(now)
    j = t.jobs.c
    while True:
        with engine.begin() as conn:
            q = (select(j.id).where(j.state == S.APPROVED.value, j.inline.is_(False))
                 .order_by(j.approved_at, j.created_at, j.id).limit(1))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            job_id = conn.execute(q).scalar_one_or_none()
            if job_id is None:
                return None
            _move(conn, job_id, [S.APPROVED], S.RUNNING, now, worker_id=worker_id, started_at=now,
                  lease_owner=worker_id, lease_expires_at=_lease_until(now, lease_s))
            job = job_in(conn, job_id)
            if journal is not None:
                journal(conn, job)
        blocker = _run_blockers(engine, job, now)
        if blocker is None:
            return job
        fail(engine, job_id, blocker, now=now, journal=_claim_failure(journal, job_id))


def start(engine: Engine, job_id: str, worker_id: str, *, now: dt.datetime | None = None,
          lease_s: float = DEFAULT_LEASE_S, journal: Journal | None = None) -> Job:
    """Move one specific approved job to ``running``, leased to ``worker_id`` for ``lease_s`` (the gateway running
    an inline query). Raises
    ``POLICY_DENIED``/``AGREEMENT_INACTIVE`` (after failing and refunding the job) if it must not run."""
    now = aware(now)
    job = load_job(engine, job_id)
    if job is None:
        raise _job_not_found()
    blocker = _run_blockers(engine, job, now) if job.state is S.APPROVED else None
    with engine.begin() as conn:
        if blocker is not None:
            _move(conn, job_id, [S.APPROVED], S.FAILED, now, failure_reason=blocker, finished_at=now,
                  **_NO_LEASE)
            ledger.refund_in(conn, job_id, now)
        else:
            _move(conn, job_id, [S.APPROVED], S.RUNNING, now, worker_id=worker_id, started_at=now,
                  lease_owner=worker_id, lease_expires_at=_lease_until(now, lease_s))
        write(conn, journal)
    if blocker is not None:
        code = POLICY_DENIED if blocker == "dataset.changed" else AGREEMENT_INACTIVE
        raise DomainError(code, "the job can no longer run", [Reason(blocker).as_dict()])
    out = load_job(engine, job_id)
    assert out is not None
    return out


def succeed(engine: Engine, job_id: str, *, now: dt.datetime | None = None, pending: Mapping[str, Any] | None = None,
            owner_detail: Mapping[str, Any] | None = None, keep_lease: bool = False,
            journal: Journal | None = None) -> Job:
    """``running`` → ``succeeded`` (the output exists but has not been released). ``pending`` (an output that waits
    for the data owner's release) and ``owner_detail`` are stored in ``job_outputs`` in the same transaction.
    ``keep_lease`` when the holder releases the output next (the lease ends with the release); else it ends here."""
    now = aware(now)
    with engine.begin() as conn:
        _move(conn, job_id, [S.RUNNING], S.SUCCEEDED, now, finished_at=now, **({} if keep_lease else _NO_LEASE))
        _put_output(conn, job_id, now, pending=dict(pending) if pending is not None else _KEEP,
                    owner_detail=dict(owner_detail) if owner_detail else _KEEP)
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


def fail(engine: Engine, job_id: str, reason: str, *, refund: bool = True, now: dt.datetime | None = None,
         owner_detail: Mapping[str, Any] | None = None, journal: Journal | None = None) -> Job:
    """``approved`` | ``running`` | ``succeeded`` → ``failed``, refunding the charge in the same transaction
    unless ``refund`` is false (a run that read data keeps its charge). ``reason`` is a short public code
    (``"code.failed"``, ``"worker.unavailable_before_read"``), never engine text or data. In the same
    transaction any output awaiting the owner's release is dropped and ``owner_detail`` (the cause, for the owner
    only) stored."""
    now = aware(now)
    if not reason or len(reason) > 200:
        raise invalid("a failure reason is a short code")
    with engine.begin() as conn:
        _move(conn, job_id, [S.APPROVED, S.RUNNING, S.SUCCEEDED], S.FAILED, now, failure_reason=reason,
              finished_at=now, **_NO_LEASE)
        if refund:
            ledger.refund_in(conn, job_id, now)
        _put_output(conn, job_id, now, pending=None,
                    owner_detail=dict(owner_detail) if owner_detail is not None else _KEEP)
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


def _check_digest(output_digest: str) -> None:
    if len(output_digest) > 80 or ":" not in output_digest:
        raise invalid("output digest must be '<alg>:<hex>'")


def _refuse_refunded(conn: Connection, job_id: str) -> None:
    if ledger.is_refunded(conn, job_id):
        raise DomainError(INVALID_REQUEST, "a refunded job cannot be released",
                          [{**Reason("job.wrong_state").as_dict(), "state": "refunded"}])


def release(
    engine: Engine, job_id: str, *, result: Any = None, result_ref: str | None = None,
    output_digest: str | None = None, now: dt.datetime | None = None, journal: Journal | None = None,
    hash_alg: HashAlg = "sha256",
) -> Job:
    """``succeeded`` → ``released``, storing the released output (JSON ``result`` and/or a blob ``result_ref``) and its
    ``output_digest`` (default: the home's hash, ``hash_alg``, of the canonical JSON result). Refuses a job whose
    budget was refunded: an output whose cost was given back must never leave."""
    now = aware(now)
    if result is None and result_ref is None:
        raise invalid("a release stores a result or a result reference")
    try:
        result_json = canonical_json(result) if result is not None else None
    except (TypeError, ValueError):
        raise invalid("result must be plain JSON") from None
    if output_digest is None:
        if result_json is None:
            raise invalid("a released blob needs its output digest")
        output_digest = text_digest(result_json, hash_alg)
    _check_digest(output_digest)
    with engine.begin() as conn:
        _refuse_refunded(conn, job_id)
        _move(conn, job_id, [S.SUCCEEDED], S.RELEASED, now, result_json=result_json, result_ref=result_ref,
              output_digest=output_digest, released_at=now, **_NO_LEASE)
        _put_output(conn, job_id, now, pending=None)  # released: nothing awaits the owner any more
        write(conn, journal)
    out = load_job(engine, job_id)
    assert out is not None
    return out


def finish(
    engine: Engine, job_id: str, *, result: Any, output_digest: str, now: dt.datetime | None = None,
    owner_detail: Mapping[str, Any] | None = None, journal: Journal | None = None,
) -> tuple[Job, Any]:
    """``running`` → ``succeeded`` → ``released`` in one transaction, for an output released as soon as it exists
    (an inline query's answer): `succeed` with ``keep_lease`` and `release`, with one commit instead of two. The
    guarded UPDATE moves only a job still ``running`` (a job swept, cancelled or failed meanwhile raises
    ``INVALID_REQUEST``, reason ``job.wrong_state``, and nothing is released), a refunded job is refused as
    `release` refuses it, ``owner_detail`` is stored and ``journal`` written in the same transaction. Returns the
    released job and its result as stored (the canonical JSON, parsed).

    If this transaction does not commit, the job is still ``running`` under its holder's lease: the holder records
    ``succeeded`` in a transaction of its own (the output was computed on data: the lease sweep then fails it
    charged), or, if the process died, the sweep fails it refunded as any interrupted run."""
    now = aware(now)
    try:
        result_json = canonical_json(result)
    except (TypeError, ValueError):
        raise invalid("result must be plain JSON") from None
    _check_digest(output_digest)
    with engine.begin() as conn:
        _refuse_refunded(conn, job_id)
        res = conn.execute(_FINISH, {"b_job": job_id, "b_running": S.RUNNING.value, "b_released": S.RELEASED.value,
                                     "b_now": now, "b_result": result_json, "b_digest": output_digest})
        if res.rowcount != 1:
            _refuse_wrong_state(conn, job_id)
        if owner_detail:
            _put_output(conn, job_id, now, owner_detail=dict(owner_detail))
        job = job_in(conn, job_id)
        write(conn, journal)
    return job, json.loads(result_json)


_J = t.jobs.c
#: `finish`'s guarded move, built once (bind parameters, no per-call expression building)
_FINISH = (
    update(t.jobs)
    .where(_J.id == bindparam("b_job"), _J.state == bindparam("b_running"))
    .values(state=bindparam("b_released"), updated_at=bindparam("b_now"), finished_at=bindparam("b_now"),
            released_at=bindparam("b_now"), result_json=bindparam("b_result"), result_ref=None,
            output_digest=bindparam("b_digest"), lease_owner=None, lease_expires_at=None)
)


def renew_lease(engine: Engine, job_id: str, owner: str, *, lease_s: float = DEFAULT_LEASE_S,
                now: dt.datetime | None = None) -> bool:
    """The heartbeat: extend ``owner``'s lease on a job it still runs to ``now + lease_s``. False when the lease is
    no longer its own (the job finished, or a sweeper took it over after it expired)."""
    now = aware(now)
    j = t.jobs.c
    with engine.begin() as conn:
        res = conn.execute(update(t.jobs).where(
            j.id == job_id, j.lease_owner == owner,
            j.state.in_([S.APPROVED.value, S.RUNNING.value, S.SUCCEEDED.value]),
        ).values(lease_expires_at=_lease_until(now, lease_s)))
    return bool(res.rowcount == 1)


@dataclass(frozen=True)
class Swept:
    """A job `sweep_expired` took over: as it was before (its state and lease holder) and as it is now."""

    before: Job
    after: Job
    refunded: bool


def _expired(now: dt.datetime) -> Any:
    """Jobs held by no live process: a lease that ran out, or none where there must be one (rows from before
    leases; an inline ``approved`` job is leased from its submission, a ``running`` one from its start)."""
    j = t.jobs.c
    stale = j.lease_expires_at < now
    return or_(
        and_(j.state == S.RUNNING.value, or_(j.lease_expires_at.is_(None), stale)),
        and_(j.state == S.APPROVED.value, j.inline.is_(True), or_(j.lease_expires_at.is_(None), stale)),
        and_(j.state == S.SUCCEEDED.value, j.lease_expires_at.is_not(None), stale),
    )


def sweep_expired(engine: Engine, *, now: dt.datetime | None = None,
                  journal: SweepJournal | None = None) -> list[Swept]:
    """Take over every job whose lease expired (see the module's "Leases"), each in one transaction whose guarded
    UPDATE re-checks state and expiry, so a lease renewed meanwhile keeps its job. ``approved``/``running`` →
    ``failed`` (``worker.interrupted``), refunded; ``succeeded`` (an output that was to be released at once) →
    ``failed`` (``<kind>.failed``), charged, the cause (``worker.interrupted``) kept for the owner. ``journal``
    records each takeover in its transaction."""
    now = aware(now)
    j = t.jobs.c
    with engine.connect() as conn:
        ids = conn.execute(select(j.id).where(_expired(now)).order_by(j.updated_at, j.id)).scalars().all()
    out = []
    for job_id in ids:
        before = load_job(engine, job_id)
        if before is None:
            continue
        charged = before.state is S.SUCCEEDED
        reason = f"{before.kind.value}.failed" if charged else INTERRUPTED
        with engine.begin() as conn:
            res = conn.execute(update(t.jobs).where(j.id == job_id, j.state == before.state.value, _expired(now))
                               .values(state=S.FAILED.value, updated_at=now, failure_reason=reason,
                                       finished_at=now, **_NO_LEASE))
            if res.rowcount != 1:
                continue  # renewed, finished or taken over meanwhile
            if not charged:
                ledger.refund_in(conn, job_id, now)
            _put_output(conn, job_id, now, pending=None,
                        owner_detail={"failure": INTERRUPTED} if charged else _KEEP)
            swept = Swept(before, job_in(conn, job_id), refunded=not charged)
            if journal is not None:
                journal(conn, swept)
        out.append(swept)
    return out
