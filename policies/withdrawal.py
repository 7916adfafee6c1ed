"""An owner withdraws a dataset (docs/agreements.md, "Exit and withdrawal"): one transaction, one audit entry.

`withdraw` marks the dataset ``withdrawn`` (the catalog record is kept for good), suspends every active agreement
that names it (reason ``dataset.withdrawn``), cancels its pending and approved jobs and refunds an approved job's
charge (`policies.ledger.refund_in`, as a cancellation does), and writes the caller's ``journal`` — all in one
transaction, so the entry and the change commit together or not at all. From then on every scoped decision on the
dataset is refused with reason ``dataset.withdrawn`` (`policies.decision`): no query, check, job, acceptance or
resumption runs on it. Disposing of the copy after the grace period is the gateway's duty
(`gateway.services.datasets.dispose_due`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, or_, select, update

from catalog import registry
from catalog.errors import INVALID_REQUEST, DomainError, not_found
from policies import _tables as t
from policies import ledger
from policies._clock import aware
from policies.actor import Actor, Role
from policies.agreements.record import agreement_from_row
from policies.journal import Journal, write
from vocab.states import AgreementState, JobState

__all__ = ["WITHDRAWN_REASON", "Withdrawal", "withdraw"]

WITHDRAWN_REASON = "dataset.withdrawn"
_OPEN_JOBS = (JobState.PENDING_APPROVAL, JobState.APPROVED)


@dataclass(frozen=True)
class Withdrawal:
    """What a withdrawal changed: the agreements suspended and the jobs cancelled (those refunded among them)."""

    dataset: str
    withdrawn_at: dt.datetime
    agreements: tuple[str, ...]
    jobs: tuple[str, ...]
    refunded: tuple[str, ...]


def withdraw(engine: Engine, actor: Actor, name: str, reason: str, *, now: dt.datetime | None = None,
             journal: Journal | None = None, noted: Callable[[Withdrawal], None] | None = None) -> Withdrawal:
    """``POST /datasets/{name}/withdraw`` (the dataset's owner, or an admin). Anyone else, or an unknown name, gets
    ``NOT_FOUND_OR_FORBIDDEN``; a dataset already withdrawn ``INVALID_REQUEST`` (reason ``dataset.withdrawn``).
    ``noted`` is given what changed inside the transaction, before ``journal`` writes its entry."""
    now = aware(now)
    reason = reason.strip()
    if not 1 <= len(reason) <= 1000:
        raise DomainError(INVALID_REQUEST, "a withdrawal needs a reason of 1..1000 characters",
                          [{"field": "reason", "problem": "1..1000 characters"}])
    ds = registry.get(engine, name)
    if ds is None or (actor.name != ds.owner and actor.role is not Role.ADMIN):
        raise not_found("dataset")
    a, j = t.agreements.c, t.jobs.c
    with engine.begin() as conn:
        if not registry.withdraw_in(conn, name, reason, now):
            raise DomainError(INVALID_REQUEST, "the dataset is already withdrawn",
                              [{"reason": WITHDRAWN_REASON, "dataset": name}])
        mine = [agreement_from_row(r) for r in conn.execute(select(t.agreements).where(  # its own and co-owned
            or_(a.owner == ds.owner, a.document_json.contains('"co_owners"')))).all()]
        on_it = [ag for ag in mine if name in ag.document.datasets]
        suspended = []
        for ag in on_it:
            if ag.state is AgreementState.ACTIVE:
                conn.execute(update(t.agreements).where(a.id == ag.id, a.state == AgreementState.ACTIVE.value)
                             .values(state=AgreementState.SUSPENDED.value, suspended_at=now, updated_at=now,
                                     suspended_by="owner"))
                suspended.append(ag.id)
        cancelled, refunded = [], []
        if on_it:
            rows = conn.execute(select(j.id, j.fingerprints_json).where(
                j.agreement_id.in_([ag.id for ag in on_it]), j.state.in_([s.value for s in _OPEN_JOBS]))
                .order_by(j.created_at, j.id)).all()
            for job_id, fps in rows:
                if name not in json.loads(fps or "{}"):
                    continue  # a job of the agreement on its other datasets: refused when it runs, not cancelled
                res = conn.execute(update(t.jobs).where(j.id == job_id, j.state.in_([s.value for s in _OPEN_JOBS]))
                                   .values(state=JobState.CANCELLED.value, updated_at=now, finished_at=now,
                                           failure_reason=WITHDRAWN_REASON))
                if res.rowcount == 1:
                    cancelled.append(job_id)
                    if ledger.refund_in(conn, job_id, now) is not None:
                        refunded.append(job_id)
        out = Withdrawal(name, now, tuple(suspended), tuple(cancelled), tuple(refunded))
        if noted is not None:
            noted(out)
        write(conn, journal)
    return out
