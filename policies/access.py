"""The one door for agreement-scoped requests: load → decide → meter, or raise.

`authorize` is what a gateway route calls before doing anything on an agreement: it loads the agreement, the
catalog records, the negative list, a quota snapshot and the remaining budgets, runs `decide`, raises the
mapped `DomainError` on denial, and on allow consumes the action's meters atomically (``QUOTA_EXCEEDED`` if a
concurrent call took the last unit). `check` returns the `Decision` without raising or metering (audit,
console previews). `permit` decides and raises like `authorize` but leaves the metering to the caller
(`Permit.consume`, with its journal). `read_budget` and `read_usage` are the authorized reads for the budget and
usage endpoints. `submission_context` loads what a job's submission is decided on before its spec is planned, in
the same one read transaction, for `policies.jobs.submit` to decide on without reading again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

from sqlalchemy import Connection, Engine

from catalog import registry
from catalog.fingerprint import HashAlg
from policies import ledger, quotas
from policies import negative_list as neg
from policies._clock import aware
from policies.actor import Actor
from policies.agreements.record import Agreement, load_agreement_in, open_orders_in
from policies.budget import Budget
from policies.decision import RULES, Action, Decision, DecisionContext, decide, meters_for
from policies.journal import Journal


def build_context(
    engine: Engine,
    actor: Actor,
    action: Action,
    agreement: str | Agreement | None,
    now: dt.datetime,
    *,
    datasets: Iterable[str] = (),
    columns: Mapping[str, Iterable[str]] | None = None,
    purpose: str | None = None,
    job_kind: str | None = None,
    consent_ref: str | None = None,
    cost: Budget | None = None,
    subject_hash: str | None = None,
    param_hash: str | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> DecisionContext:
    """Load everything `decide` needs for ``action``, in one read transaction (one connection and, on SQLite,
    one ``BEGIN IMMEDIATE`` instead of one per read), so the decision sees one consistent state. Call outside
    any write transaction."""
    action = Action(action)
    requested = tuple(sorted(set(datasets)))
    cols = {ds: frozenset(c) for ds, c in (columns or {}).items()}
    rule = RULES[action]
    with engine.connect() as conn:
        ag = load_agreement_in(conn, agreement) if isinstance(agreement, str) else agreement
        records = registry.get_many_in(conn, ag.document.datasets + requested + tuple(cols)) \
            if ag is not None else {}
        usage = quotas.snapshot_in(conn, ag, actor.name, aware(now), subject_hash, param_hash) \
            if ag is not None and rule.meters else None
        remaining = ledger.remaining_in(conn, ag.id) if ag is not None and rule.spends and cost is not None else {}
        negative_list = neg.load_in(conn)
        orders = open_orders_in(conn, ag.id) if ag is not None else ()
    return DecisionContext(
        actor=actor, action=action, now=now, agreement=ag, datasets=records, requested=requested, columns=cols,
        purpose=purpose, job_kind=job_kind, consent_ref=consent_ref, negative_list=negative_list,
        usage=usage, cost=cost, remaining=remaining, fingerprints=fingerprints, orders=orders,
    )


def submission_context(engine: Engine, actor: Actor, action: Action, agreement_id: str, now: dt.datetime,
                       ) -> DecisionContext:
    """What a job's submission is decided on, loaded before its spec is planned, in one read transaction: the
    agreement, the records of every dataset it lists, the quota snapshot, the remaining budgets, the negative list
    and the open orders (`build_context` with every budget). Raises ``NOT_FOUND_OR_FORBIDDEN`` for anyone who may
    not read the agreement (as `policies.get_agreement`), so the planner sees only a party's agreement. The
    caller plans the spec from ``agreement`` and ``datasets``, then passes the context to `policies.submit`,
    which decides on it with the plan's datasets, columns and cost (no second read)."""
    ctx = build_context(engine, actor, action, agreement_id, now, cost=Budget.zero())
    decide(replace(ctx, action=Action.AGREEMENT_READ, usage=None, cost=None)).raise_if_denied()
    return ctx


class RequestFacts(TypedDict, total=False):
    """What a request asks for, as `check` and `authorize` take it (every key optional)."""

    datasets: Iterable[str]
    columns: Mapping[str, Iterable[str]] | None
    purpose: str | None
    job_kind: str | None
    consent_ref: str | None
    cost: Budget | None
    subject_hash: str | None
    params: Mapping[str, object] | None
    hash_alg: HashAlg  # the home suite's hash, for the parameters' digest (default sha256)


def _context(engine: Engine, actor: Actor, action: Action, agreement_id: str, now: dt.datetime,
             facts: RequestFacts) -> tuple[DecisionContext, str | None]:
    params = facts.get("params")
    param_hash = quotas.params_digest(params, facts.get("hash_alg", "sha256")) if params is not None else None
    ctx = build_context(
        engine, actor, action, agreement_id, now, datasets=facts.get("datasets", ()), columns=facts.get("columns"),
        purpose=facts.get("purpose"), job_kind=facts.get("job_kind"), consent_ref=facts.get("consent_ref"),
        cost=facts.get("cost"), subject_hash=facts.get("subject_hash"), param_hash=param_hash)
    return ctx, param_hash


def check(engine: Engine, actor: Actor, action: Action, agreement_id: str, *, now: dt.datetime | None = None,
          **facts: Unpack[RequestFacts]) -> Decision:
    """The decision for a request (every reason), without raising or metering."""
    return decide(_context(engine, actor, action, agreement_id, aware(now), facts)[0])


@dataclass(frozen=True)
class Permit:
    """An allowed request whose meters are not consumed yet (`permit`): `consume` bumps them in one transaction,
    with the caller's ``journal``, once the caller knows what that transaction's entry says."""

    agreement: Agreement
    principal: str
    meters: tuple[str, ...]
    now: dt.datetime
    subject_hash: str | None
    param_hash: str | None

    def consume(self, engine: Engine, journal: Journal | None = None) -> None:
        """Consume the meters (all or none, ``QUOTA_EXCEEDED`` if a concurrent call took the last unit) and write
        ``journal`` in their transaction; an unmetered action changes nothing and journals nothing here."""
        if self.meters:
            quotas.consume(engine, self.agreement, self.principal, self.meters, now=self.now,
                           subject_hash=self.subject_hash, param_hash=self.param_hash, journal=journal)

    def consume_in(self, conn: Connection) -> None:
        """Consume the meters within the caller's transaction (which a ``QUOTA_EXCEEDED`` should roll back)."""
        if self.meters:
            quotas.consume_in(conn, self.agreement, self.principal, self.meters, self.now, self.subject_hash,
                              self.param_hash)


def permit(engine: Engine, actor: Actor, action: Action, agreement_id: str, *, now: dt.datetime | None = None,
           **facts: Unpack[RequestFacts]) -> Permit:
    """Decide ``action`` and raise on denial, consuming nothing yet: `authorize` without its metering, for a
    caller that computes its answer first and then meters it with its audit entry (`Permit.consume`). The
    decision's quota reasons come from a snapshot, so a request whose meters are used up is refused here, before
    anything is computed; only a concurrent call taking the last unit meanwhile is refused by `Permit.consume`."""
    now = aware(now)
    ctx, param_hash = _context(engine, actor, action, agreement_id, now, facts)
    decide(ctx).raise_if_denied()
    assert ctx.agreement is not None
    return Permit(ctx.agreement, actor.name, meters_for(ctx.action), now, facts.get("subject_hash"), param_hash)


def authorize(engine: Engine, actor: Actor, action: Action, agreement_id: str, *, now: dt.datetime | None = None,
              journal: Journal | None = None, **facts: Unpack[RequestFacts]) -> Agreement:
    """Decide ``action`` and raise on denial; on allow consume the action's meters. Returns the agreement.

    For ``verify.check`` pass the verification product's dataset and predicate columns, the hashed
    ``subject_hash``, the call's ``params`` and its ``consent_ref``; for ``model.score`` the model's source
    datasets. Jobs (``job.submit``, ``query.run``) go through `policies.jobs.submit` instead, which meters
    and charges in the job's own transaction. ``journal`` (`policies.journal`) records a metered call in the
    transaction of its meters (an unmetered one is a read: nothing changes, nothing is journaled here).
    """
    allowed = permit(engine, actor, action, agreement_id, now=now, **facts)
    allowed.consume(engine, journal)
    return allowed.agreement


def read_budget(engine: Engine, actor: Actor, agreement_id: str, *,
                now: dt.datetime | None = None) -> ledger.BudgetStatus:
    """``GET /agreements/{id}/budget`` for the parties and regulators."""
    authorize(engine, actor, Action.BUDGET_READ, agreement_id, now=now)
    return ledger.status(engine, agreement_id)


def read_usage(engine: Engine, actor: Actor, agreement_id: str, since: dt.date, until: dt.date, *,
               now: dt.datetime | None = None) -> quotas.Usage:
    """Usage and billing of an agreement for the parties and regulators."""
    authorize(engine, actor, Action.USAGE_READ, agreement_id, now=now)
    return quotas.usage(engine, agreement_id, since, until)
