"""Filing (备案) and the data authority's powers over an agreement (docs/agreements.md).

When an agreement needs filing (``filing_required``, fixed at its proposal), the grantee's acceptance leads to
``accepted`` and then::

    accepted | returned --submit (owner)--> under_review
    under_review --file (authority: sign-off, number issued)--> filed --activate (owner)--> active
    under_review --refuse (authority: sign-off with reasons)--> returned   (the owner amends or submits again)
    active | suspended (by the owner) --authority_suspend--> suspended --authority_resume (authority)--> active

Every sign-off (``agreement_reviews``) names the reviewer, the verdict, the reasons and the document hash the
reviewer read: a sign-off on any other version is refused (``agreement.version_mismatch``).

Named reviewers (专家委员会 expert committee, 网信 cyberspace administration) are principals with role
``reviewer`` and a kind. While an agreement is under review the authority names the reviewers it requires
(`require_reviewers`, replacing any earlier list); each signs off on the version it read (`review`): an approval
changes nothing else, a refusal returns the agreement to its owner with the reasons, as the authority's does.
`file` is refused (``POLICY_DENIED``, one ``review.pending`` reason per reviewer) until every named reviewer's
latest sign-off on the current document hash approves it. A reviewer is a party only to the agreements it is named
on, and only while they are under review (`policies.decision`): it reads them and their sign-offs, and nothing
else. Filing numbers are
``BA-<year>-<six digits>``, unique, in the order filed. Rectification orders (整改, ``rectification_orders``) carry
a deadline and a text; while open, every refusal a party of the agreement sees lists them
(`policies.agreements.record.open_orders_in`, read by `policies.access.build_context`); an open order blocks
nothing by itself — the authority suspends the agreement to stop calls. Each change commits with its
``journal`` (`policies.journal`).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from catalog.errors import (
    AGREEMENT_INACTIVE,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
    invalid,
)
from policies import _tables as t
from policies._clock import aware
from policies.actor import Actor, Role
from policies.agreements.lifecycle import _transition, decide_on
from policies.agreements.record import Agreement, load_agreement, order_notice
from policies.agreements.sections import require_complete
from policies.decision import Action, Reason
from policies.journal import Journal, write
from vocab.states import AgreementState

__all__ = ["REVIEW_PENDING", "Order", "SignOff", "activate", "authority_resume", "authority_suspend", "close_order",
           "file", "issue_order", "list_orders", "load_order", "new_order_id", "note_migration", "pending_reviewers",
           "refuse", "require_reviewers", "review", "reviews", "submit", "unnoted_migrations"]

MAX_TEXT = 2000
MAX_REVIEWERS = 10
#: The reason of a filing refused while a named reviewer has not approved the current version.
REVIEW_PENDING = "review.pending"


@dataclass(frozen=True)
class SignOff:
    """One sign-off of a review: who, with which role, approve or refuse, why, on which document."""

    agreement_id: str
    version: int
    document_hash: str
    reviewer: str
    role: str
    verdict: str
    reasons: list[str]
    at: dt.datetime
    reviewer_kind: str | None = None  # a named reviewer's kind (expert_committee | cyberspace)

    def public(self) -> dict[str, Any]:
        """The API view."""
        return {"agreement_id": self.agreement_id, "version": self.version, "document_hash": self.document_hash,
                "reviewer": self.reviewer, "role": self.role, "verdict": self.verdict, "reasons": self.reasons,
                "at": self.at.isoformat(), "reviewer_kind": self.reviewer_kind}


@dataclass(frozen=True)
class Order:
    """A rectification order (整改) on an agreement."""

    id: str
    agreement_id: str
    text: str
    deadline: dt.datetime
    opened_by: str
    opened_at: dt.datetime
    closed_by: str | None
    closed_at: dt.datetime | None
    closing_note: str | None

    @property
    def open(self) -> bool:
        """True until the authority closes the order."""
        return self.closed_at is None

    def notice(self) -> str:
        """What every refusal under the agreement says while the order is open."""
        return order_notice(self.id, self.deadline, self.text)

    def public(self) -> dict[str, Any]:
        """The API view."""

        def iso(x: dt.datetime | None) -> str | None:
            return x.isoformat() if x else None

        return {"id": self.id, "agreement_id": self.agreement_id, "text": self.text,
                "deadline": self.deadline.isoformat(), "opened_by": self.opened_by,
                "opened_at": self.opened_at.isoformat(), "open": self.open, "closed_by": self.closed_by,
                "closed_at": iso(self.closed_at), "closing_note": self.closing_note}


def _order(r: Any) -> Order:
    return Order(r.id, r.agreement_id, r.text, r.deadline, r.opened_by, r.opened_at, r.closed_by, r.closed_at,
                 r.closing_note)


def _reasons(reasons: list[str] | tuple[str, ...], *, required: bool) -> list[str]:
    out = [r.strip() for r in reasons if r and r.strip()]
    if required and not out:
        raise invalid("a refusal states its reasons", [{"field": "reasons", "reason": "reasons.missing"}])
    if any(len(r) > MAX_TEXT for r in out) or len(out) > 20:
        raise invalid("at most 20 reasons of at most 2000 characters", [{"field": "reasons",
                                                                         "reason": "reasons.too_long"}])
    return out


def _check_hash(ag: Agreement, document_hash: str) -> None:
    if document_hash != ag.document_hash:
        raise DomainError(INVALID_REQUEST, "the agreement changed since you read it",
                          [Reason("agreement.version_mismatch").as_dict()])


def submit(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/submit`` (owner): accepted | returned → under_review. A document lacking a section
    filing requires (`policies.agreements.sections.require_complete`) is refused, naming every missing section."""
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.AGREEMENT_SUBMIT, ag, aware(now)).raise_if_denied()
    assert ag is not None
    require_complete(ag.document)
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_SUBMIT, AgreementState.UNDER_REVIEW,
                       aware(now), None, journal=journal)


def _next_number(conn: Connection, year: int) -> str:
    prefix = f"BA-{year}-"
    last = conn.execute(select(t.agreements.c.filing_number).where(t.agreements.c.filing_number.like(prefix + "%"))
                        .order_by(t.agreements.c.filing_number.desc()).limit(1)).scalar()
    n = int(last[len(prefix):]) + 1 if last else 1
    return f"{prefix}{n:06d}"


def _sign_off(engine: Engine, actor: Actor, agreement_id: str, action: Action, verdict: str,
              to_state: AgreementState, document_hash: str, reasons: list[str], now: dt.datetime,
              journal: Journal | None) -> Agreement:
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, action, ag, now).raise_if_denied()
    assert ag is not None
    _check_hash(ag, document_hash)
    if to_state is AgreementState.FILED:
        require_complete(ag.document)
        pending = pending_reviewers(engine, ag)
        if pending:
            raise DomainError(POLICY_DENIED, "named reviewers have not approved this version yet",
                              [{"reason": REVIEW_PENDING, "reviewer": name, "kind": ag.reviewers[name],
                                "message": f"{name} has not approved the version under review"} for name in pending])
    a = t.agreements.c
    # the named reviewers checked above are still the ones required when the filing commits
    named = json.dumps(dict(sorted(ag.reviewers.items()))) if ag.reviewers else None
    guards = [a.reviewers_json == named if named else a.reviewers_json.is_(None)]
    for _attempt in range(5):  # two filings at once may pick one number: the unique constraint decides
        try:
            with engine.begin() as conn:
                values: dict[str, Any] = {"state": to_state.value, "updated_at": now}
                if to_state is AgreementState.FILED:
                    values.update(filing_number=_next_number(conn, now.year), filed_at=now)
                res = conn.execute(update(t.agreements).where(
                    a.id == agreement_id, a.state == ag.state.value, a.version == ag.version,
                    a.valid_until > now, *guards).values(**values))
                if res.rowcount != 1:
                    raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently; read it again",
                                      [Reason("agreement.version_mismatch").as_dict()])
                conn.execute(insert(t.agreement_reviews).values(
                    agreement_id=agreement_id, version=ag.version, document_hash=ag.document_hash,
                    reviewer=actor.name, role=str(actor.role), verdict=verdict, reasons=json.dumps(reasons),
                    at=now, reviewer_kind=ag.reviewers.get(actor.name) if actor.role is Role.REVIEWER else None))
                write(conn, journal)
            break
        except IntegrityError:
            continue
    else:
        raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently; read it again",
                          [Reason("agreement.version_mismatch").as_dict()])
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def file(engine: Engine, actor: Actor, agreement_id: str, *, document_hash: str,
         reasons: list[str] | tuple[str, ...] = (), now: dt.datetime | None = None,
         journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/file`` (data authority): under_review → filed, with the authority's approving
    sign-off on ``document_hash`` and a new filing number."""
    return _sign_off(engine, actor, agreement_id, Action.AGREEMENT_FILE, "approve", AgreementState.FILED,
                     document_hash, _reasons(reasons, required=False), aware(now), journal)


def refuse(engine: Engine, actor: Actor, agreement_id: str, *, document_hash: str,
           reasons: list[str] | tuple[str, ...], now: dt.datetime | None = None,
           journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/refuse`` (data authority): under_review → returned to the owner, with the reasons
    (at least one) and the document hash reviewed."""
    return _sign_off(engine, actor, agreement_id, Action.AGREEMENT_REFUSE, "refuse", AgreementState.RETURNED,
                     document_hash, _reasons(reasons, required=True), aware(now), journal)


def activate(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
             journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/activate`` (owner): filed → active, inside the validity window."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_ACTIVATE, AgreementState.ACTIVE, aware(now),
                       None, journal=journal)


def authority_suspend(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
                      journal: Journal | None = None) -> Agreement:
    """``POST /authority/agreements/{id}/suspend``: active (or suspended by its owner) → suspended by the
    authority; only the authority resumes it."""
    return _transition(engine, actor, agreement_id, Action.AUTHORITY_SUSPEND, AgreementState.SUSPENDED,
                       aware(now), "suspended_at", journal=journal, extra={"suspended_by": "authority"})


def authority_resume(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
                     journal: Journal | None = None) -> Agreement:
    """``POST /authority/agreements/{id}/resume``: suspended by the authority → active (not once expired)."""
    return _transition(engine, actor, agreement_id, Action.AUTHORITY_RESUME, AgreementState.ACTIVE, aware(now),
                       None, journal=journal, extra={"suspended_by": None})


def reviews(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> list[SignOff]:
    """The sign-offs of an agreement, oldest first (its parties, regulators and the authority)."""
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.AGREEMENT_READ, ag, aware(now)).raise_if_denied()
    r = t.agreement_reviews.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.agreement_reviews).where(r.agreement_id == agreement_id)
                            .order_by(r.id)).all()
    return [SignOff(x.agreement_id, x.version, x.document_hash, x.reviewer, x.role, x.verdict,
                    json.loads(x.reasons), x.at, x.reviewer_kind) for x in rows]


def pending_reviewers(engine: Engine, ag: Agreement) -> list[str]:
    """The named reviewers of ``ag`` whose latest sign-off on its current document hash is not an approval."""
    if not ag.reviewers:
        return []
    r = t.agreement_reviews.c
    with engine.connect() as conn:
        rows = conn.execute(select(r.reviewer, r.verdict).where(
            r.agreement_id == ag.id, r.document_hash == ag.document_hash, r.reviewer.in_(list(ag.reviewers)))
            .order_by(r.id)).all()
    latest = {x.reviewer: x.verdict for x in rows}
    return sorted(name for name in ag.reviewers if latest.get(name) != "approve")


def require_reviewers(engine: Engine, actor: Actor, agreement_id: str, reviewers: dict[str, str], *,
                      now: dt.datetime | None = None, journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/reviewers`` (data authority, under review): the named reviewers (name → kind, the
    caller has checked each is a usable principal with role ``reviewer``) whose approval filing requires; replaces
    any earlier list (an empty one: no named reviewer needed)."""
    now = aware(now)
    if len(reviewers) > MAX_REVIEWERS:
        raise invalid(f"at most {MAX_REVIEWERS} named reviewers", [{"field": "reviewers", "reason": "reviewers.many"}])
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.AGREEMENT_REVIEWERS, ag, now).raise_if_denied()
    assert ag is not None
    a = t.agreements.c
    with engine.begin() as conn:
        res = conn.execute(update(t.agreements).where(
            a.id == agreement_id, a.state == ag.state.value, a.version == ag.version).values(
            reviewers_json=json.dumps(dict(sorted(reviewers.items()))) if reviewers else None, updated_at=now))
        if res.rowcount != 1:
            raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently; read it again",
                              [Reason("agreement.version_mismatch").as_dict()])
        write(conn, journal)
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def review(engine: Engine, actor: Actor, agreement_id: str, *, verdict: str, document_hash: str,
           reasons: list[str] | tuple[str, ...] = (), now: dt.datetime | None = None,
           journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/review`` (a named reviewer of an agreement under review): ``approve`` records the
    sign-off (the agreement stays under review until the authority files it); ``refuse`` (reasons required)
    returns it to its owner, as the authority's refusal does."""
    if verdict == "approve":
        return _sign_off(engine, actor, agreement_id, Action.AGREEMENT_REVIEW, "approve",
                         AgreementState.UNDER_REVIEW, document_hash, _reasons(reasons, required=False), aware(now),
                         journal)
    if verdict == "refuse":
        return _sign_off(engine, actor, agreement_id, Action.AGREEMENT_REVIEW, "refuse", AgreementState.RETURNED,
                         document_hash, _reasons(reasons, required=True), aware(now), journal)
    raise invalid("the verdict is approve or refuse", [{"field": "verdict", "reason": "verdict.unknown"}])


def new_order_id() -> str:
    """A fresh order id (``ord_`` and 16 hex digits)."""
    return "ord_" + secrets.token_hex(8)


def issue_order(engine: Engine, actor: Actor, agreement_id: str, text: str, deadline: dt.datetime, *,
                now: dt.datetime | None = None, order_id: str | None = None,
                journal: Journal | None = None) -> Order:
    """``POST /authority/agreements/{id}/orders`` (data authority): a rectification order with its deadline."""
    now = aware(now)
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        raise invalid("an order has a text of 1 to 2000 characters", [{"field": "text", "reason": "text.length"}])
    deadline = aware(deadline)
    if deadline <= now:
        raise invalid("the deadline must be in the future", [{"field": "deadline", "reason": "deadline.past"}])
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.ORDER_ISSUE, ag, now).raise_if_denied()
    order_id = order_id or new_order_id()
    with engine.begin() as conn:
        conn.execute(insert(t.rectification_orders).values(
            id=order_id, agreement_id=agreement_id, text=text, deadline=deadline, opened_by=actor.name,
            opened_at=now))
        write(conn, journal)
    return load_order(engine, order_id)


def load_order(engine: Engine, order_id: str) -> Order:
    """The stored order, without any authorization (``NOT_FOUND_OR_FORBIDDEN`` when there is none)."""
    with engine.connect() as conn:
        r = conn.execute(select(t.rectification_orders).where(t.rectification_orders.c.id == order_id)).first()
    if r is None:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "order not found")
    return _order(r)


def close_order(engine: Engine, actor: Actor, order_id: str, *, note: str = "", now: dt.datetime | None = None,
                journal: Journal | None = None) -> Order:
    """``POST /authority/orders/{id}/close`` (data authority): the order is closed (once)."""
    now = aware(now)
    order = load_order(engine, order_id)
    decide_on(engine, actor, Action.ORDER_CLOSE, load_agreement(engine, order.agreement_id), now).raise_if_denied()
    if len(note) > MAX_TEXT:
        raise invalid("a closing note has at most 2000 characters", [{"field": "note", "reason": "text.length"}])
    o = t.rectification_orders.c
    with engine.begin() as conn:
        res = conn.execute(update(t.rectification_orders).where(o.id == order_id, o.closed_at.is_(None))
                           .values(closed_by=actor.name, closed_at=now, closing_note=note.strip() or None))
        if res.rowcount != 1:
            raise DomainError(INVALID_REQUEST, "the order is already closed",
                              [{"field": "order", "reason": "order.closed"}])
        write(conn, journal)
    return load_order(engine, order_id)


def list_orders(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> list[Order]:
    """An agreement's orders, newest first (its parties, regulators and the authority)."""
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.AGREEMENT_READ, ag, aware(now)).raise_if_denied()
    o = t.rectification_orders.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.rectification_orders).where(o.agreement_id == agreement_id)
                            .order_by(o.opened_at.desc(), o.id)).all()
    return [_order(r) for r in rows]


def unnoted_migrations(engine: Engine) -> list[tuple[str, str]]:
    """(agreement id, filing number) of the agreements migration 0013 filed whose audit entry is not written yet."""
    a = t.agreements.c
    with engine.connect() as conn:
        rows = conn.execute(select(a.id, a.filing_number).where(a.migration_noted.is_(False)).order_by(a.id)).all()
    return [(r.id, r.filing_number) for r in rows]


def note_migration(engine: Engine, agreement_id: str, *, journal: Journal | None = None) -> bool:
    """Mark the migration of ``agreement_id`` as noted; True only the first time (``journal`` then records it in
    the same transaction)."""
    a = t.agreements.c
    with engine.begin() as conn:
        res = conn.execute(update(t.agreements).where(a.id == agreement_id, a.migration_noted.is_(False))
                           .values(migration_noted=True))
        if res.rowcount == 1:
            write(conn, journal)
    return res.rowcount == 1
