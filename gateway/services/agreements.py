"""Agreement helpers every path that names an agreement shares (routes, console, CLI endpoints).

`note_expiry`: the first time anyone touches an agreement that has expired, one ``agreement.expire`` audit entry
is written (no scheduler runs, so the audit log still shows when it lapsed), in the transaction recording the
expiry. `agreement_entry`: the request's entry for an agreement's change, written in the change's transaction
(`gateway.journal`). `check_grantee`: one answer for a grantee that does not exist, is disabled or expired, or has
another role (no existence oracle). `filing_required` / `set_filing`: the home's choice whether agreements are filed
(备案) before they are active (``service_meta`` key ``agreement_filing``; docs/agreements.md). `note_migrations`:
the one ``agreement.migrate`` entry for each agreement migration 0013 filed, written the first time anyone touches
or lists agreements after the upgrade. `name_reviewers`: the data authority names the reviewers (专家委员会, 网信) an
agreement under review needs (``POST /v1/agreements/{id}/reviewers`` and the authority's console form); and
`reviewer_states`: each named reviewer's latest sign-off on the current document hash (approved, refused or
pending), as the authority's and the reviewer's console pages show it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, select

import policies
from catalog.errors import INVALID_REQUEST, DomainError
from gateway import _tables as gt
from gateway import identities
from gateway.audit import AuditEvent
from gateway.journal import Journal, request_entry, system_entry
from policies.agreements import filing

if TYPE_CHECKING:  # gateway.context imports the services' round registry (gateway.caches)
    from gateway.context import AppContext
from vocab.actions import AuditAction
from vocab.roles import ANALYSTS, SYSTEM, Role

__all__ = ["FILING_KEY", "GRANTEE_ROLES", "agreement_entry", "check_grantee", "filing_required", "name_reviewers",
           "note_expiry", "note_migrations", "quotas_today", "reviewer_states", "set_filing"]

#: The ``service_meta`` key holding the home's filing choice: ``required`` (set by ``veilbox init``) or absent.
FILING_KEY = "agreement_filing"

GRANTEE_ROLES = tuple(r.value for r in Role if r in ANALYSTS)  # operator, bank


def filing_required(engine: Engine) -> bool:
    """Whether agreements proposed now need review and filing (备案) before they can be active."""
    with engine.connect() as conn:
        value = conn.execute(select(gt.service_meta.c.value).where(gt.service_meta.c.key == FILING_KEY)).scalar()
    return value == "required"


def set_filing(engine: Engine, required: bool) -> None:
    """Set the home's filing choice (agreements already proposed keep theirs)."""
    with engine.begin() as conn:
        conn.execute(delete(gt.service_meta).where(gt.service_meta.c.key == FILING_KEY))
        if required:
            conn.execute(gt.service_meta.insert().values(key=FILING_KEY, value="required"))


def _fixed(ev: AuditEvent) -> Callable[[Connection], AuditEvent]:
    return lambda _conn: ev


def note_migrations(ctx: AppContext) -> None:
    """Write one ``agreement.migrate`` entry (role ``system``) for each agreement migration 0013 filed, once, in
    the transaction that marks it noted."""
    for agreement_id, number in policies.unnoted_migrations(ctx.engine):
        ev = AuditEvent(actor="system", role=SYSTEM, action=AuditAction.AGREEMENT_MIGRATE, agreement_id=agreement_id,
                        details={"filing_number": number, "note": "in force before filing (备案) existed: filed by "
                                 "the upgrade"})
        policies.note_migration(ctx.engine, agreement_id, journal=system_entry(ctx.audit, _fixed(ev)))


def note_expiry(ctx: AppContext, agreement_id: str) -> None:
    """Write the one ``agreement.expire`` audit entry the first time anyone touches an expired agreement, in the
    transaction that records the expiry (`gateway.journal`); and the ``agreement.migrate`` entries not yet
    written (`note_migrations`)."""
    note_migrations(ctx)
    ev = AuditEvent(actor="system", role=SYSTEM, action=AuditAction.AGREEMENT_EXPIRE, agreement_id=agreement_id,
                    details={"exit": "seal_outputs"})
    policies.record_expiry(ctx.engine, agreement_id, journal=system_entry(ctx.audit, lambda _conn: ev))


def agreement_entry(ctx: AppContext, ev: AuditEvent, agreement_id: str, *fields: str,
                    datasets: bool = False) -> Journal:
    """The request's entry for a change of the agreement (proposal, amendment, acceptance, suspension, resumption,
    revocation), noted from the agreement as the change's transaction left it (its ``fields`` in the details, its
    ``datasets`` if asked) and written in that transaction (`gateway.journal`)."""

    def prepare(conn: Connection, entry: AuditEvent) -> bool:
        ag = policies.agreement_in(conn, agreement_id)
        entry.agreement_id = ag.id
        if datasets:
            entry.dataset = ",".join(ag.document.datasets)
        for key in fields:
            entry.details[key] = getattr(ag, key)
        return True

    return request_entry(ctx.audit, ev, prepare)


def check_grantee(ctx: AppContext, doc: dict[str, Any]) -> None:
    """One answer for a grantee that does not exist, is disabled or expired, or has another role (no existence
    oracle). ``holders`` are not looked up at all (`policies.agreements.document`)."""
    name = doc.get("grantee")
    if not isinstance(name, str):
        return  # the document validator reports it
    p = identities.usable_by_name(ctx.engine, name)
    if p is None or p.role.value not in GRANTEE_ROLES:
        raise DomainError(INVALID_REQUEST, "the grantee must be an existing operator or bank",
                          [{"field": "grantee", "reason": "grantee.unknown_or_wrong_role"}])


def name_reviewers(ctx: AppContext, ev: AuditEvent, actor: policies.Actor, agreement_id: str,
                   names: list[str]) -> policies.Agreement:
    """The data authority names the reviewers whose approval filing requires (replacing the earlier list; none:
    none required): each must be an enabled principal with role ``reviewer`` (``INVALID_REQUEST``, reason
    ``reviewer.unknown``); the change commits with ``ev`` (its ``details.reviewers``: name → kind)."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    named = identities.named_reviewers(ctx.engine, names)
    ev.details["reviewers"] = named
    return filing.require_reviewers(ctx.engine, actor, agreement_id, named,
                                    journal=agreement_entry(ctx, ev, agreement_id))


def reviewer_states(ag: policies.Agreement, signoffs: list[policies.SignOff]) -> list[dict[str, Any]]:
    """Each named reviewer of ``ag`` (by name) with its kind and its latest sign-off on the current document hash:
    ``state`` approve | refuse | pending, with that sign-off's ``reasons`` and ``at`` (none while pending). A
    sign-off on an earlier version does not count: an amendment asks every reviewer again."""
    latest = {s.reviewer: s for s in signoffs if s.document_hash == ag.document_hash and s.role == Role.REVIEWER}
    out = []
    for name, kind in sorted(ag.reviewers.items()):
        s = latest.get(name)
        out.append({"name": name, "kind": kind, "state": s.verdict if s else "pending",
                    "reasons": list(s.reasons) if s else [], "at": s.at if s else None})
    return out


def quotas_today(ag: policies.Agreement, usage: dict[str, Any], today: dt.date) -> list[tuple[str, int, int, int]]:
    """(quota, limit, used today, remaining today) for the daily call and job quotas, from the metering the API
    reads (`policies.read_usage`)."""
    used: dict[str, Any] = next((d for d in usage["days"] if d["day"] == today.isoformat()), {})
    limits = ag.document.quotas
    return [(name, limit, int(used.get(key, 0)), max(0, limit - int(used.get(key, 0))))
            for name, key, limit in (("calls per day", "calls", limits.calls_per_day),
                                     ("jobs per day", "jobs", limits.jobs_per_day))]
