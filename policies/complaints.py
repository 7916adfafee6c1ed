"""Complaints and objections (投诉与异议, docs/complaints.md): filed, routed, decided with reasons, by a deadline.

Any principal but a regulator files a complaint (``kind`` ``complaint``) or an objection (``objection``) tied to
one target: an agreement, a job, a job's output, or a subject (数据主体). The complaint is routed to the data owner
concerned — the agreement's owner (for a job or an output, its agreement's owner; for a subject, the owner filing
on the person's behalf, or the owner of the agreement named with it) — and to the data authority; it has a
deadline (``days`` after filing, `DEFAULT_DAYS` unless configured) and a state::

    open --investigate--> investigating --resolve | reject (reasons)--> resolved | rejected
    open --resolve | reject (reasons)--> resolved | rejected

Who sees what: the filer, the owner it is routed to, the authority and admins read it and its history;
regulators read every complaint and change nothing; anyone else is told it does not exist
(``NOT_FOUND_OR_FORBIDDEN``). Only the owner it is routed to, the authority and admins move it.

Subjects are never stored raw: the caller passes the keyed subject hash the product uses (the gateway hashes a
raw id an owner gives on a person's behalf before calling here). An *objection* an owner files naming a subject
suspends that subject from every check under that owner's agreements until the objection is resolved or
rejected (`subject_suspended`, read by the check path after its policy decision).

Each change commits with its ``journal`` (`policies.journal`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, insert, or_, select, update

from catalog.errors import INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, DomainError, invalid
from policies import _tables as t
from policies._clock import aware
from policies.actor import Actor
from policies.agreements.record import load_agreement
from policies.jobs import load_job
from policies.journal import Journal, write
from vocab.roles import Role

__all__ = [
    "DEFAULT_DAYS",
    "KINDS",
    "OPEN_STATES",
    "STATES",
    "TARGETS",
    "Complaint",
    "file_complaint",
    "list_complaints",
    "new_complaint_id",
    "show_complaint",
    "subject_suspended",
    "transition",
]

#: Days from filing to the deadline by which the complaint should be decided, unless configured.
DEFAULT_DAYS = 15
KINDS = ("complaint", "objection")
TARGETS = ("agreement", "job", "output", "subject")
STATES = ("open", "investigating", "resolved", "rejected")
#: The states in which an objection naming a subject suspends its checks.
OPEN_STATES = ("open", "investigating")
MAX_TEXT = 2000
_HASH = re.compile(r"^hs:[0-9a-f]{32}$")
#: state reached -> the states it may be reached from
_MOVES: dict[str, tuple[str, ...]] = {"investigating": ("open",), "resolved": OPEN_STATES, "rejected": OPEN_STATES}


@dataclass(frozen=True)
class Complaint:
    """A stored complaint or objection, with its history of moves."""

    id: str
    kind: str
    target_kind: str
    target: str
    agreement_id: str | None
    subject_hash: str | None
    owner: str
    filer: str
    filer_role: str
    on_behalf: bool
    text: str
    state: str
    deadline: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    history: list[dict[str, Any]]

    @property
    def suspends_subject(self) -> bool:
        """Whether this complaint suspends its subject's checks now (an owner's open objection on a subject)."""
        return (
            self.kind == "objection" and self.subject_hash is not None and self.on_behalf and self.state in OPEN_STATES
        )

    def public(self) -> dict[str, Any]:
        """The API view (the subject only as its keyed hash)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target_kind": self.target_kind,
            "target": self.target,
            "agreement_id": self.agreement_id,
            "subject_hash": self.subject_hash,
            "owner": self.owner,
            "filer": self.filer,
            "filer_role": self.filer_role,
            "on_behalf": self.on_behalf,
            "text": self.text,
            "state": self.state,
            "deadline": self.deadline.isoformat(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "suspends_subject": self.suspends_subject,
            "history": self.history,
        }


def _row(r: Any) -> Complaint:
    return Complaint(
        r.id,
        r.kind,
        r.target_kind,
        r.target,
        r.agreement_id,
        r.subject_hash,
        r.owner,
        r.filer,
        r.filer_role,
        bool(r.on_behalf),
        r.text,
        r.state,
        r.deadline,
        r.created_at,
        r.updated_at,
        json.loads(r.history_json),
    )


def new_complaint_id() -> str:
    """A fresh complaint id (``cmp_`` and 16 hex digits)."""
    return "cmp_" + secrets.token_hex(8)


def _not_found() -> DomainError:
    return DomainError(NOT_FOUND_OR_FORBIDDEN, "complaint not found")


def _field(field: str, reason: str, message: str) -> DomainError:
    return invalid(message, [{"field": field, "reason": reason}])


def _text(text: str, field: str = "text") -> str:
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        raise _field(field, "text.length", f"the {field} has 1 to {MAX_TEXT} characters")
    return text


def _party_agreement(engine: Engine, actor: Actor, agreement_id: str) -> str:
    """The owner of an agreement the actor is a party to (or reads as the authority or an admin)."""
    ag = load_agreement(engine, agreement_id)
    if ag is None or (actor.role not in (Role.AUTHORITY, Role.ADMIN) and actor.name not in (ag.owner, ag.grantee)):
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "agreement not found")
    return ag.owner


def _route(
    engine: Engine,
    actor: Actor,
    target_kind: str,
    target: str | None,
    agreement_id: str | None,
    subject_hash: str | None,
) -> tuple[str, str, str | None, str | None]:
    """(target, owner routed to, agreement id, subject hash) for a filing, or the refusal."""
    if target_kind == "agreement":
        if not target:
            raise _field("target", "target.missing", "name the agreement")
        return target, _party_agreement(engine, actor, target), target, None
    if target_kind in ("job", "output"):
        if not target:
            raise _field("target", "target.missing", "name the job")
        job = load_job(engine, target)
        if job is None:
            raise DomainError(NOT_FOUND_OR_FORBIDDEN, "job not found")
        return target, _party_agreement(engine, actor, job.agreement_id), job.agreement_id, None
    if target_kind != "subject":
        raise _field("target_kind", "target_kind.unknown", "the target is an agreement, a job, an output or a subject")
    if subject_hash is None or not _HASH.match(subject_hash):
        raise _field("subject_hash", "subject.missing", "name the subject (its keyed hash, hs:…)")
    if agreement_id:
        owner = _party_agreement(engine, actor, agreement_id)
    elif actor.role == Role.OWNER:
        owner = actor.name
    else:
        raise _field("agreement_id", "agreement.missing", "a subject is named under one of your agreements")
    return subject_hash, owner, agreement_id, subject_hash


def file_complaint(
    engine: Engine,
    actor: Actor,
    *,
    kind: str,
    target_kind: str,
    text: str,
    target: str | None = None,
    agreement_id: str | None = None,
    subject_hash: str | None = None,
    days: int = DEFAULT_DAYS,
    complaint_id: str | None = None,
    now: dt.datetime | None = None,
    journal: Journal | None = None,
) -> Complaint:
    """File a complaint or an objection (any principal but a regulator), routed to the owner concerned and the
    authority, due ``days`` from now. An owner's objection naming a subject is filed on the person's behalf and
    suspends the subject's checks under the owner's agreements while it is open."""
    now = aware(now)
    if actor.role == Role.REGULATOR:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "regulators read complaints; they do not file them")
    if kind not in KINDS:
        raise _field("kind", "kind.unknown", "a complaint or an objection")
    if not 1 <= days <= 365:
        raise _field("days", "days.range", "the deadline is 1 to 365 days away")
    text = _text(text)
    target, owner, agreement_id, subject_hash = _route(engine, actor, target_kind, target, agreement_id, subject_hash)
    on_behalf = target_kind == "subject" and actor.role == Role.OWNER and actor.name == owner
    complaint_id = complaint_id or new_complaint_id()
    history = [{"state": "open", "by": actor.name, "role": str(actor.role), "reasons": [], "at": now.isoformat()}]
    with engine.begin() as conn:
        conn.execute(
            insert(t.complaints).values(
                id=complaint_id,
                kind=kind,
                target_kind=target_kind,
                target=target,
                agreement_id=agreement_id,
                subject_hash=subject_hash,
                owner=owner,
                filer=actor.name,
                filer_role=str(actor.role),
                on_behalf=on_behalf,
                text=text,
                state="open",
                deadline=now + dt.timedelta(days=days),
                created_at=now,
                updated_at=now,
                history_json=json.dumps(history),
            )
        )
        write(conn, journal)
    return _load(engine, complaint_id)


def _load(engine: Engine, complaint_id: str) -> Complaint:
    with engine.connect() as conn:
        r = conn.execute(select(t.complaints).where(t.complaints.c.id == complaint_id)).first()
    if r is None:
        raise _not_found()
    return _row(r)


def _visible(actor: Actor) -> Any:
    """Which complaints the actor reads (``None``: all)."""
    c = t.complaints.c
    if actor.role in (Role.REGULATOR, Role.AUTHORITY, Role.ADMIN):
        return None
    return or_(c.filer == actor.name, c.owner == actor.name)


def _may_move(actor: Actor, complaint: Complaint) -> bool:
    return actor.role in (Role.AUTHORITY, Role.ADMIN) or (actor.role == Role.OWNER and actor.name == complaint.owner)


def show_complaint(engine: Engine, actor: Actor, complaint_id: str) -> Complaint:
    """One complaint, if the actor may read it (else ``NOT_FOUND_OR_FORBIDDEN``, as for one that does not exist)."""
    c = _load(engine, complaint_id)
    if _visible(actor) is not None and actor.name not in (c.filer, c.owner):
        raise _not_found()
    return c


def list_complaints(engine: Engine, actor: Actor, *, state: str | None = None, limit: int = 200) -> list[Complaint]:
    """The complaints the actor reads, newest first (optionally in one state)."""
    if state is not None and state not in STATES:
        raise _field("state", "state.unknown", "one of " + ", ".join(STATES))
    c = t.complaints.c
    q = select(t.complaints)
    scope = _visible(actor)
    if scope is not None:
        q = q.where(scope)
    if state is not None:
        q = q.where(c.state == state)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(c.created_at.desc(), c.id).limit(limit)).all()
    return [_row(r) for r in rows]


def transition(
    engine: Engine,
    actor: Actor,
    complaint_id: str,
    to: str,
    *,
    reasons: list[str] | tuple[str, ...] = (),
    now: dt.datetime | None = None,
    journal: Journal | None = None,
) -> Complaint:
    """Move a complaint (the owner it is routed to, the authority, an admin): ``investigating``, or ``resolved`` /
    ``rejected`` with at least one reason. Resolving or rejecting an objection lifts its subject's suspension."""
    now = aware(now)
    if to not in _MOVES:
        raise _field("state", "state.unknown", "investigating, resolved or rejected")
    out = [r.strip() for r in reasons if r and r.strip()]
    if to != "investigating" and not out:
        raise _field("reasons", "reasons.missing", "a decision states its reasons")
    if len(out) > 20 or any(len(r) > MAX_TEXT for r in out):
        raise _field("reasons", "reasons.too_long", "at most 20 reasons of at most 2000 characters")
    c = show_complaint(engine, actor, complaint_id)
    if not _may_move(actor, c):
        raise DomainError(
            NOT_FOUND_OR_FORBIDDEN, "only the owner it is routed to, the authority or an admin decides a complaint"
        )
    if c.state not in _MOVES[to]:
        raise DomainError(
            INVALID_REQUEST,
            f"a complaint in state {c.state} cannot become {to}",
            [{"field": "state", "reason": "complaint.state"}],
        )
    history = [
        *c.history,
        {"state": to, "by": actor.name, "role": str(actor.role), "reasons": out, "at": now.isoformat()},
    ]
    col = t.complaints.c
    with engine.begin() as conn:
        res = conn.execute(
            update(t.complaints)
            .where(col.id == complaint_id, col.state == c.state)
            .values(state=to, updated_at=now, history_json=json.dumps(history))
        )
        if res.rowcount != 1:
            raise DomainError(
                INVALID_REQUEST,
                "the complaint changed concurrently; read it again",
                [{"field": "state", "reason": "complaint.state"}],
            )
        write(conn, journal)
    return _load(engine, complaint_id)


def subject_suspended_in(conn: Connection, agreement_id: str, subject_hashes: list[str]) -> bool:
    """Whether any of the subjects has an open objection its owner filed with the agreement's owner."""
    c, a = t.complaints.c, t.agreements.c
    return bool(
        conn.execute(
            select(
                exists().where(
                    and_(
                        c.kind == "objection",
                        c.on_behalf.is_(True),
                        c.state.in_(OPEN_STATES),
                        c.subject_hash.in_(subject_hashes),
                        c.owner == select(a.owner).where(a.id == agreement_id).scalar_subquery(),
                    )
                )
            )
        ).scalar()
    )


def subject_suspended(engine: Engine, agreement_id: str, subject_hashes: list[str]) -> bool:
    """Whether a check of these subjects under this agreement is suspended by an owner's open objection."""
    if not subject_hashes:
        return False
    with engine.connect() as conn:
        return subject_suspended_in(conn, agreement_id, subject_hashes)
