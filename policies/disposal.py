"""The disposal of an ended agreement (协议期满后数据的处置, docs/agreements.md "Disposal").

When an agreement is revoked or expires, its exit clause (`policies.agreements.document.ExitClause`) is carried
out by a short, ordered list of steps, each its own transaction, journaled in ``agreement_disposals``:

1. ``jobs`` — the agreement's pending and approved jobs are cancelled (reason ``agreement.revoked`` /
   ``agreement.expired``) and an approved job's charge is refunded (`policies.ledger.refund_in`), for every end
   (nothing may run under an ended agreement);
2. ``outputs`` — the released outputs are sealed (kept, never downloadable again: `outputs_sealed`), deleted (the
   stored result and any output still awaiting the owner's release erased) or kept, as the clause says; every
   output is named with its fingerprint (the output digest the release recorded);
3. ``models`` — the certificates of models trained under the agreement are revoked (``models = "revoke"``):
   scoring with them is refused with ``AGREEMENT_INACTIVE`` (`catalog.models.revoke_models_in`).

Steps 2 and 3 apply only when the clause lists the case (``cases``); otherwise they record that nothing was
disposed of. The gateway may add steps of its own (`gateway.services.disposal.STEPS`) and ends with `finish`: the
disposal record (what, how, when, the fingerprints of what was disposed of), signed with the service's signing
key, stored with the row and stated in the audit log.

Crash safety and idempotence: `start` creates the row once (the end it records is fixed then); `run_step`
re-checks in its transaction that the step is not yet done, does it, notes its result in ``steps_json`` and writes
the caller's ``journal`` — all in one transaction, so a step is done and noted (and audited) together or not at
all, and running the disposal again (a retry, the worker's sweep racing a revocation) skips what is done. `finish`
signs once; a completed disposal is never changed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Column, Connection, Engine, ForeignKey, String, Table, Text, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from catalog import models as model_registry
from catalog.fingerprint import HashAlg
from policies import _tables as t
from policies import ledger
from policies._canonical import canonical_json, text_digest
from policies._clock import aware
from policies.agreements.record import Agreement, agreement_from_row
from policies.journal import Journal, write
from vocab.states import AgreementState, JobState

__all__ = ["FORMAT", "STEPS", "Disposal", "Disposing", "ExitCase", "Step", "agreement_disposals", "due", "ended_case",
           "finish", "load", "record_message", "run_step", "start"]

ExitCase = Literal["revoked", "expired"]
#: The record's format tag (part of what is signed).
FORMAT = "veilbox-disposal-1"

agreement_disposals = Table(
    "agreement_disposals",
    t.metadata,
    Column("agreement_id", String(40), ForeignKey("agreements.id"), primary_key=True),
    Column("exit_case", String(16), nullable=False),  # revoked | expired
    Column("started_at", t.UTCDateTime, nullable=False),
    Column("steps_json", Text, nullable=False),  # {step name: its result}, in the order done
    Column("record_json", Text, nullable=True),  # the signed record (canonical JSON), once complete
    Column("signature", Text, nullable=True),
    Column("completed_at", t.UTCDateTime, nullable=True),
)

_OPEN_JOBS = (JobState.PENDING_APPROVAL.value, JobState.APPROVED.value)


@dataclass(frozen=True)
class Disposing:
    """What a step is given: the agreement as stored, how it ended, the step's instant and the home's hash."""

    agreement: Agreement
    case: ExitCase
    now: dt.datetime
    hash_alg: HashAlg

    @property
    def applies(self) -> bool:
        """Whether the exit clause disposes of outputs and models for this end (its ``cases``)."""
        return self.agreement.document.exit.applies_to(self.case)


Step = Callable[[Connection, Disposing], dict[str, Any]]


@dataclass(frozen=True)
class Disposal:
    """An agreement's disposal as stored: the steps done (with their results) and, once complete, the record."""

    agreement_id: str
    case: ExitCase
    started_at: dt.datetime
    steps: dict[str, Any]
    record: dict[str, Any] | None
    signature: str | None
    completed_at: dt.datetime | None

    def public(self) -> dict[str, Any]:
        """``GET /agreements/{id}/disposal``."""
        return {"agreement_id": self.agreement_id, "case": self.case, "state": "complete" if self.record else
                "in_progress", "started_at": self.started_at.isoformat(), "steps_done": list(self.steps),
                "completed_at": self.completed_at.isoformat() if self.completed_at else None,
                "record": self.record, "signature": self.signature}


def _disposal(r: Any) -> Disposal:
    return Disposal(r.agreement_id, r.exit_case, r.started_at, json.loads(r.steps_json),
                    json.loads(r.record_json) if r.record_json else None, r.signature, r.completed_at)


def load(engine: Engine, agreement_id: str) -> Disposal | None:
    """The agreement's disposal, or None when none started (no authorization: the caller decides who reads)."""
    with engine.connect() as conn:
        r = conn.execute(select(agreement_disposals).where(agreement_disposals.c.agreement_id == agreement_id)).first()
    return _disposal(r) if r is not None else None


def _lock(conn: Connection, agreement_id: str) -> Any:
    q = select(agreement_disposals).where(agreement_disposals.c.agreement_id == agreement_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).first()


def ended_case(agreement: Agreement, now: dt.datetime) -> ExitCase | None:
    """How the agreement ended (``revoked`` first), or None while it has not."""
    if agreement.state is AgreementState.REVOKED:
        return "revoked"
    if now >= agreement.document.valid_until:
        return "expired"
    return None


def start(engine: Engine, agreement_id: str, *, now: dt.datetime | None = None) -> Disposal | None:
    """Begin the agreement's disposal if it has ended (the end is fixed now); the disposal (begun now or before),
    or None while the agreement is in force."""
    now = aware(now)
    with engine.begin() as conn:
        r = conn.execute(select(t.agreements).where(t.agreements.c.id == agreement_id)).first()
        case = ended_case(agreement_from_row(r), now) if r is not None else None
        if case is not None:  # begun by another process already: its end stands
            ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(ins(agreement_disposals).values(agreement_id=agreement_id, exit_case=case, started_at=now,
                                                         steps_json="{}")
                         .on_conflict_do_nothing(index_elements=["agreement_id"]))
    return load(engine, agreement_id)


def run_step(engine: Engine, agreement_id: str, name: str, step: Step, *, hash_alg: HashAlg,
             now: dt.datetime | None = None, journal: Callable[[dict[str, Any]], Journal] | None = None) -> bool:
    """Do step ``name`` of a begun disposal unless it is done; its result noted and ``journal(result)`` written in
    the same transaction. True if the step ran now."""
    now = aware(now)
    d = agreement_disposals.c
    with engine.begin() as conn:
        row = _lock(conn, agreement_id)
        if row is None or row.completed_at is not None:
            return False
        steps = json.loads(row.steps_json)
        if name in steps:
            return False
        ag = agreement_from_row(conn.execute(select(t.agreements).where(t.agreements.c.id == agreement_id)).one())
        result = step(conn, Disposing(ag, row.exit_case, now, hash_alg))
        steps[name] = {"at": now.isoformat(), **result}
        conn.execute(update(agreement_disposals).where(d.agreement_id == agreement_id, d.completed_at.is_(None))
                     .values(steps_json=json.dumps(steps, sort_keys=False, separators=(",", ":"))))
        write(conn, journal(result) if journal is not None else None)
    return True


def record_message(record: dict[str, Any]) -> bytes:
    """The bytes a disposal record's signature covers."""
    return b"veilbox-disposal|" + canonical_json(record).encode()


def finish(engine: Engine, agreement_id: str, *, sign: Callable[[bytes], str], key_id: str, hash_alg: HashAlg,
           now: dt.datetime | None = None, journal: Callable[[dict[str, Any], str], Journal] | None = None
           ) -> Disposal | None:
    """Sign and store the disposal record once (``journal(record, signature)`` in the same transaction); the
    disposal as stored."""
    now = aware(now)
    d = agreement_disposals.c
    with engine.begin() as conn:
        row = _lock(conn, agreement_id)
        if row is not None and row.completed_at is None:
            ag = agreement_from_row(conn.execute(select(t.agreements).where(t.agreements.c.id == agreement_id))
                                    .one())
            clause = ag.document.exit
            record = {
                "format": FORMAT, "agreement_id": ag.id, "document_hash": ag.document_hash, "owner": ag.owner,
                "grantee": ag.grantee, "case": row.exit_case, "started_at": row.started_at.isoformat(),
                "completed_at": now.isoformat(),
                "exit": {"cases": list(clause.cases), "outputs": clause.output_disposal, "models": clause.models},
                "steps": [{"step": k, **v} for k, v in json.loads(row.steps_json).items()],
                "hash_alg": hash_alg, "key_id": key_id,
            }
            signature = sign(record_message(record))
            conn.execute(update(agreement_disposals).where(d.agreement_id == agreement_id, d.completed_at.is_(None))
                         .values(record_json=canonical_json(record), signature=signature, completed_at=now))
            write(conn, journal(record, signature) if journal is not None else None)
    return load(engine, agreement_id)


def due(engine: Engine, *, now: dt.datetime | None = None, limit: int = 100) -> list[str]:
    """Agreements that ended (revoked, or past their validity) and whose disposal is not complete."""
    now = aware(now)
    a, d = t.agreements.c, agreement_disposals.c
    q = (select(a.id).select_from(t.agreements.outerjoin(agreement_disposals, d.agreement_id == a.id))
         .where(d.completed_at.is_(None), or_(a.state == AgreementState.REVOKED.value, a.valid_until <= now))
         .order_by(a.id).limit(limit))
    with engine.connect() as conn:
        return list(conn.execute(q).scalars().all())


# --- the steps ---------------------------------------------------------------------------------------------------


def cancel_jobs(conn: Connection, dp: Disposing) -> dict[str, Any]:
    """Cancel the agreement's pending and approved jobs; refund what an approved job was charged."""
    j = t.jobs.c
    rows = conn.execute(select(j.id, j.spec_hash, j.state).where(j.agreement_id == dp.agreement.id,
                                                                 j.state.in_(_OPEN_JOBS))
                        .order_by(j.created_at, j.id)).all()
    cancelled = []
    for job_id, spec_hash, state in rows:
        res = conn.execute(update(t.jobs).where(j.id == job_id, j.state.in_(_OPEN_JOBS))
                           .values(state=JobState.CANCELLED.value, updated_at=dp.now, finished_at=dp.now,
                                   failure_reason=f"agreement.{dp.case}"))
        if res.rowcount == 1:
            refund = ledger.refund_in(conn, job_id, dp.now)
            cancelled.append({"job_id": job_id, "spec_hash": spec_hash, "was": state,
                              "refunded": refund is not None})
    return {"cancelled": cancelled}


def dispose_outputs(conn: Connection, dp: Disposing) -> dict[str, Any]:
    """Seal, delete or keep the agreement's released outputs (and outputs awaiting release) as the clause says."""
    method = dp.agreement.document.exit.output_disposal if dp.applies else "keep"
    j, o = t.jobs.c, t.job_outputs.c
    released = conn.execute(select(j.id, j.output_digest, j.result_json).where(
        j.agreement_id == dp.agreement.id, j.state == JobState.RELEASED.value).order_by(j.created_at, j.id)).all()
    pending = conn.execute(select(o.job_id, o.kind, o.payload).select_from(t.job_outputs.join(t.jobs, j.id == o.job_id))
                           .where(j.agreement_id == dp.agreement.id, o.payload.is_not(None))
                           .order_by(o.job_id)).all()
    outputs = [{"job_id": r.id, "output_digest": r.output_digest, "stored": r.result_json is not None}
               for r in released]
    awaiting = [{"job_id": r.job_id, "kind": r.kind, "output_digest": text_digest(r.payload, dp.hash_alg)}
                for r in pending]
    if method == "delete":
        if released:
            conn.execute(update(t.jobs).where(and_(j.agreement_id == dp.agreement.id,
                                                   j.state == JobState.RELEASED.value, j.result_json.is_not(None)))
                         .values(result_json=None, updated_at=dp.now))
        for r in pending:
            conn.execute(update(t.job_outputs).where(o.job_id == r.job_id)
                         .values(kind=None, payload=None, updated_at=dp.now))
    return {"method": method, "released": outputs, "awaiting_release": awaiting}


def revoke_models(conn: Connection, dp: Disposing) -> dict[str, Any]:
    """Revoke the certificates of models trained under the agreement (``models = "revoke"``)."""
    if not dp.applies or dp.agreement.document.exit.models != "revoke":
        return {"method": "retain", "revoked": []}
    revoked = model_registry.revoke_models_in(conn, dp.agreement.id, f"agreement.{dp.case}", dp.now)
    return {"method": "revoke", "revoked": [{"model_id": m.id, "certificate_id": m.certificate_id,
                                             "output_digest": m.output_digest} for m in revoked]}


#: The steps every disposal runs, in order (`gateway.services.disposal.STEPS` adds the gateway's own).
STEPS: tuple[tuple[str, Step], ...] = (("jobs", cancel_jobs), ("outputs", dispose_outputs),
                                       ("models", revoke_models))
