"""The privacy-budget ledger: one account per (agreement, dataset), and an append-only journal.

Guarantees (see docs/mechanisms/budget.md):

- **Exact**: totals, spent amounts and entries are `fractions.Fraction`, stored as ``"num/den"`` text.
- **Composition**: basic sequential composition of (ε, δ) per dataset; a job touching several datasets is
  charged its full cost on each of them.
- **Check-then-debit is one transaction** (`charge`): on SQLite the engine opens every transaction with
  ``BEGIN IMMEDIATE`` so writers serialise; on PostgreSQL the agreement row and the accounts are locked with
  ``SELECT … FOR UPDATE`` (in dataset order, so two charges cannot deadlock). Either every dataset is debited
  or none is: an insufficient account raises ``BUDGET_EXHAUSTED`` and nothing is spent.
- **Refunds** (`refund`) return a job's debits at most once (the journal's unique key (job, dataset, kind)
  makes a second refund impossible even if the check were bypassed) and never for a job that was released:
  once an output has left, its privacy cost is spent for good. Conversely a refunded job can never be released
  (`policies.jobs.release` checks `is_refunded` in its transaction).

Invariant: for every account, 0 ≤ spent ≤ total component-wise, and spent equals the sum of debits minus
refunds in the journal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from catalog.errors import (
    AGREEMENT_INACTIVE,
    ALREADY_EXISTS,
    BUDGET_EXHAUSTED,
    INVALID_REQUEST,
    POLICY_DENIED,
    DomainError,
    invalid,
    not_found,
)
from policies import _tables as t
from policies._clock import aware
from policies._exact import from_db, to_db
from policies.budget import Budget
from policies.decision import Reason
from policies.journal import Journal, write

DEBIT, REFUND = "debit", "refund"


@dataclass(frozen=True)
class Account:
    """One agreement's budget on one dataset: its allowance and what has been spent of it."""

    agreement_id: str
    dataset: str
    total: Budget
    spent: Budget

    @property
    def remaining(self) -> Budget:
        """What is left to spend on this dataset."""
        return self.total - self.spent


@dataclass(frozen=True)
class BudgetStatus:
    """The agreement-level view for ``GET /agreements/{id}/budget``: the allowance (the same on every dataset)
    and the spent amount of the most-spent dataset, component-wise; plus every account."""

    agreement_id: str
    total: Budget
    spent: Budget
    accounts: tuple[Account, ...]

    @property
    def remaining(self) -> Budget:
        """What is left on the most-spent dataset: the most any further job may cost."""
        return self.total - self.spent

    def as_json(self) -> dict[str, Any]:
        """API shape: numbers for display, exact text under ``"exact"``, and the per-dataset accounts."""
        total, spent = self.total.as_json(), self.spent.as_json()
        return {
            "epsilon_total": float(self.total.epsilon),
            "epsilon_spent": float(self.spent.epsilon),
            "delta_total": float(self.total.delta),
            "delta_spent": float(self.spent.delta),
            "exact": {
                "epsilon_total": total["epsilon"],
                "epsilon_spent": spent["epsilon"],
                "delta_total": total["delta"],
                "delta_spent": spent["delta"],
            },
            "datasets": {
                a.dataset: {"spent": a.spent.as_json(), "remaining": a.remaining.as_json()} for a in self.accounts
            },
        }


@dataclass(frozen=True)
class Entry:
    """One journal line: a job's debit or refund of ``amount`` on one dataset of an agreement."""

    agreement_id: str
    dataset: str
    job_id: str
    kind: str
    amount: Budget
    ts: dt.datetime


def _budget(eps: str, delta: str) -> Budget:
    return Budget(from_db(eps), from_db(delta))


def _account(r: Any) -> Account:
    return Account(
        r.agreement_id,
        r.dataset,
        _budget(r.epsilon_total, r.delta_total),
        _budget(r.epsilon_spent, r.delta_spent),
    )


# --- accounts (opened with the agreement, in its transaction) ---------------------------------------------


def open_accounts(conn: Connection, agreement_id: str, datasets: Iterable[str], total: Budget,
                  now: dt.datetime) -> None:
    """Create the accounts of a new agreement (nothing spent). Called inside the creating transaction."""
    zero = to_db(Fraction(0))
    conn.execute(
        t.budget_accounts.insert(),
        [
            {
                "agreement_id": agreement_id,
                "dataset": ds,
                "epsilon_total": to_db(total.epsilon),
                "delta_total": to_db(total.delta),
                "epsilon_spent": zero,
                "delta_spent": zero,
                "updated_at": now,
            }
            for ds in sorted(set(datasets))
        ],
    )


def replace_accounts(conn: Connection, agreement_id: str, datasets: Iterable[str], total: Budget,
                     now: dt.datetime) -> None:
    """Reset the accounts of a *proposed* agreement after an amendment (nothing can have been spent)."""
    spent = conn.execute(
        select(t.budget_entries.c.id).where(t.budget_entries.c.agreement_id == agreement_id).limit(1)
    ).first()
    if spent is not None:
        raise invalid("an agreement with budget history cannot be amended")
    conn.execute(t.budget_accounts.delete().where(t.budget_accounts.c.agreement_id == agreement_id))
    open_accounts(conn, agreement_id, datasets, total, now)


# --- charge / refund --------------------------------------------------------------------------------------


# The charge's statements, built once with bind parameters (a charge binds its values instead of building and
# cache-keying expression trees on every call).
_AC = t.budget_accounts.c
_AGREEMENT_FOR_CHARGE = (select(t.agreements.c.state, t.agreements.c.valid_until)
                         .where(t.agreements.c.id == bindparam("b_agreement")).with_for_update())
_CHARGED_BEFORE = select(t.budget_entries.c.id).where(t.budget_entries.c.job_id == bindparam("b_job")).limit(1)
_ACCOUNTS_FOR_CHARGE = (select(t.budget_accounts)
                        .where(_AC.agreement_id == bindparam("b_agreement"),
                               _AC.dataset.in_(bindparam("b_datasets", expanding=True)))
                        .order_by(_AC.dataset).with_for_update())
_SPEND = (update(t.budget_accounts)
          .where(_AC.agreement_id == bindparam("b_agreement"), _AC.dataset == bindparam("b_dataset"))
          .values(epsilon_spent=bindparam("b_eps"), delta_spent=bindparam("b_delta"), updated_at=bindparam("b_now")))
_INSERT_ENTRY = t.budget_entries.insert()
_ACCOUNTS_OF = select(t.budget_accounts).where(_AC.agreement_id == bindparam("b_agreement")).order_by(_AC.dataset)


def _require_chargeable(conn: Connection, agreement_id: str, now: dt.datetime) -> None:
    row = conn.execute(_AGREEMENT_FOR_CHARGE, {"b_agreement": agreement_id}).first()
    if row is None:
        raise not_found("agreement")
    if row.state == "revoked":
        reason = "agreement.revoked"
    elif now >= row.valid_until:
        reason = "agreement.expired"
    elif row.state == "suspended":
        reason = "agreement.suspended"
    elif row.state != "active":
        reason = "agreement.not_active"
    else:
        return
    raise DomainError(AGREEMENT_INACTIVE, "the agreement is not active", [Reason(reason).as_dict()])


def charge_in(conn: Connection, agreement_id: str, datasets: Sequence[str], cost: Budget, job_id: str,
              now: dt.datetime) -> dict[str, Budget]:
    """`charge` inside the caller's transaction (so a job transition and its debit commit together)."""
    if not isinstance(cost, Budget):
        raise TypeError("cost must be a Budget")
    if not job_id or len(job_id) > 64:
        raise invalid("job id must be 1..64 characters")
    names = sorted(set(datasets))
    if not names:
        raise invalid("a charge names at least one dataset")
    _require_chargeable(conn, agreement_id, now)
    if conn.execute(_CHARGED_BEFORE, {"b_job": job_id}).first() is not None:
        raise DomainError(ALREADY_EXISTS, "this job has already been charged")
    rows = conn.execute(_ACCOUNTS_FOR_CHARGE, {"b_agreement": agreement_id, "b_datasets": names}).all()
    accounts = {r.dataset: _account(r) for r in rows}
    outside = [ds for ds in names if ds not in accounts]
    if outside:
        raise DomainError(
            POLICY_DENIED,
            "the request is outside what the agreement allows",
            [Reason("dataset.outside_agreement", dataset=ds).as_dict() for ds in outside],
        )
    short = [ds for ds in names if not cost.fits_in(accounts[ds].remaining)]
    if short:
        raise DomainError(
            BUDGET_EXHAUSTED,
            "the privacy budget does not cover this request",
            [Reason("budget.insufficient", dataset=ds).as_dict() for ds in short],
        )
    after: dict[str, Budget] = {}
    for ds in names:
        spent = accounts[ds].spent + cost
        conn.execute(_SPEND, {"b_agreement": agreement_id, "b_dataset": ds, "b_eps": to_db(spent.epsilon),
                              "b_delta": to_db(spent.delta), "b_now": now})
        conn.execute(_INSERT_ENTRY, {"agreement_id": agreement_id, "dataset": ds, "job_id": job_id, "kind": DEBIT,
                                     "epsilon": to_db(cost.epsilon), "delta": to_db(cost.delta), "ts": now})
        after[ds] = accounts[ds].total - spent
    return after


def charge(engine: Engine, agreement_id: str, datasets: Sequence[str], cost: Budget, job_id: str, *,
           now: dt.datetime | None = None, journal: Journal | None = None) -> dict[str, Budget]:
    """Check, then debit ``cost`` on every dataset's account, in one transaction; the remaining budgets.

    ``AGREEMENT_INACTIVE`` unless the agreement is active and unexpired; ``POLICY_DENIED`` for a dataset
    outside the agreement; ``ALREADY_EXISTS`` if ``job_id`` was charged before; ``BUDGET_EXHAUSTED`` (naming
    every short dataset) if any account cannot cover the cost — in every failure nothing is spent. ``journal``
    (`policies.journal`) records the debit in its transaction.
    """
    now = aware(now)
    with engine.begin() as conn:
        after = charge_in(conn, agreement_id, datasets, cost, job_id, now)
        write(conn, journal)
        return after


def is_refunded(conn: Connection, job_id: str) -> bool:
    """Whether the job's debits were refunded (then it can never be released), in the caller's transaction."""
    return conn.execute(_REFUNDED, {"b_job": job_id, "b_kind": REFUND}).first() is not None


_REFUNDED = (select(t.budget_entries.c.id)
             .where(t.budget_entries.c.job_id == bindparam("b_job"), t.budget_entries.c.kind == bindparam("b_kind"))
             .limit(1))


def refund_in(conn: Connection, job_id: str, now: dt.datetime) -> Budget | None:
    """`refund` inside the caller's transaction."""
    job = conn.execute(
        select(t.jobs.c.state).where(t.jobs.c.id == job_id).with_for_update()
    ).first()
    if job is not None and job.state == "released":
        raise DomainError(INVALID_REQUEST, "a released job's budget cannot be refunded")
    e = t.budget_entries.c
    ac = t.budget_accounts.c
    journal_q = select(t.budget_entries).where(e.job_id == job_id).order_by(e.dataset, e.kind)
    if conn.dialect.name == "postgresql":
        # Lock the job's accounts before reading its journal: under READ COMMITTED a concurrent refund that
        # committed while this one waited is then visible, so the job is refunded once (SQLite's BEGIN IMMEDIATE
        # already serialises the whole transaction).
        accounts = sorted({(r.agreement_id, r.dataset) for r in conn.execute(journal_q) if r.kind == DEBIT})
        for agreement_id, dataset in accounts:
            conn.execute(select(ac.agreement_id).where(ac.agreement_id == agreement_id, ac.dataset == dataset)
                         .with_for_update())
    entries = conn.execute(journal_q).all()
    debits = [r for r in entries if r.kind == DEBIT]
    if not debits or any(r.kind == REFUND for r in entries):
        return None
    amount: Budget | None = None
    for d in debits:
        cost = _budget(d.epsilon, d.delta)
        acc_row = conn.execute(
            select(t.budget_accounts)
            .where(ac.agreement_id == d.agreement_id, ac.dataset == d.dataset)
            .with_for_update()
        ).one()
        spent = _account(acc_row).spent - cost  # BudgetError if the journal and the account disagree
        conn.execute(
            update(t.budget_accounts)
            .where(ac.agreement_id == d.agreement_id, ac.dataset == d.dataset)
            .values(epsilon_spent=to_db(spent.epsilon), delta_spent=to_db(spent.delta), updated_at=now)
        )
        conn.execute(
            t.budget_entries.insert().values(
                agreement_id=d.agreement_id, dataset=d.dataset, job_id=job_id, kind=REFUND,
                epsilon=d.epsilon, delta=d.delta, ts=now,
            )
        )
        amount = cost
    return amount


def refund(engine: Engine, job_id: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Budget | None:
    """Return a job's debits to every account it was charged on; the per-dataset amount, or ``None`` when
    there is nothing to refund (never charged, or already refunded). Idempotent. Raises ``INVALID_REQUEST``
    for a released job (its output has left: the cost is spent for good). ``journal`` records the refund in its
    transaction (only when there was something to refund)."""
    now = aware(now)
    with engine.begin() as conn:
        amount = refund_in(conn, job_id, now)
        if amount is not None:
            write(conn, journal)
        return amount


# --- reads ------------------------------------------------------------------------------------------------


def accounts(engine: Engine, agreement_id: str) -> list[Account]:
    """The agreement's accounts, one per dataset, by dataset name (empty for an unknown agreement)."""
    with engine.connect() as conn:
        return accounts_in(conn, agreement_id)


def accounts_in(conn: Connection, agreement_id: str) -> list[Account]:
    """`accounts` within ``conn``'s transaction."""
    rows = conn.execute(_ACCOUNTS_OF, {"b_agreement": agreement_id}).all()
    return [_account(r) for r in rows]


def remaining(engine: Engine, agreement_id: str, datasets: Iterable[str] | None = None) -> dict[str, Budget]:
    """Remaining budget per dataset of the agreement (optionally only ``datasets``)."""
    with engine.connect() as conn:
        return remaining_in(conn, agreement_id, datasets)


def remaining_in(conn: Connection, agreement_id: str, datasets: Iterable[str] | None = None) -> dict[str, Budget]:
    """`remaining` within ``conn``'s transaction."""
    wanted = None if datasets is None else set(datasets)
    return {a.dataset: a.remaining for a in accounts_in(conn, agreement_id)
            if wanted is None or a.dataset in wanted}


def status(engine: Engine, agreement_id: str) -> BudgetStatus:
    """The agreement-level `BudgetStatus`; ``NOT_FOUND`` when the agreement has no accounts."""
    accs = accounts(engine, agreement_id)
    if not accs:
        raise not_found("agreement")
    total = accs[0].total
    spent = Budget.zero()
    for a in accs:
        spent = spent.max(a.spent)
    return BudgetStatus(agreement_id, total, spent, tuple(accs))


def entries(engine: Engine, *, agreement_id: str | None = None, job_id: str | None = None) -> list[Entry]:
    """Journal lines in the order written, optionally of one agreement and/or one job."""
    e = t.budget_entries.c
    q = select(t.budget_entries).order_by(e.id)
    if agreement_id is not None:
        q = q.where(e.agreement_id == agreement_id)
    if job_id is not None:
        q = q.where(e.job_id == job_id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [Entry(r.agreement_id, r.dataset, r.job_id, r.kind, _budget(r.epsilon, r.delta), r.ts) for r in rows]
