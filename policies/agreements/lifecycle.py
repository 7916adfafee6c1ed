"""The agreement lifecycle (授权运营协议): proposing, amending, reading and the state transitions.

`create_agreement` and `amend_agreement` check a document against the catalog and the negative list and store it
(each amendment of a proposed agreement bumps ``version`` and is kept in ``agreement_versions``; the budget
accounts are opened or replaced in the same transaction). The transitions (stored states)::

    proposed --accept (grantee, inside the validity window)--> active     (filing not required)
    proposed --accept (grantee)--> accepted                               (filing required: then
                                                                           `policies.agreements.filing`)
    active  --suspend (owner)--> suspended --resume (owner)--> active     (not a suspension by the authority)
    any state but revoked --revoke (owner)--> revoked

``filing_required`` is fixed when the agreement is proposed (the home's choice, docs/agreements.md). Each
transition is decided by `policies.decision` and guarded against concurrent change. ``expired`` is derived
(`policies.agreements.record.effective_state`); `record_expiry` persists ``expired_recorded`` once and returns
True only the first time, so the gateway writes exactly one audit entry.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update

from catalog.columns import Role as ColumnRole
from catalog.errors import (
    AGREEMENT_INACTIVE,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
    invalid,
)
from catalog.fingerprint import HashAlg
from policies import _tables as t
from policies import ledger
from policies import negative_list as neg
from policies._clock import aware
from policies.actor import Actor, Role
from policies.agreements.document import AgreementDocument, join_keys_for_code, parse_document
from policies.agreements.record import (
    Agreement,
    agreement_from_row,
    catalog_records,
    effective_state,
    load_agreement,
    open_orders_in,
)
from policies.agreements.signing import unsigned_in
from policies.decision import Action, Decision, DecisionContext, Reason, decide, scope_reasons
from policies.journal import Journal, write
from vocab.states import AgreementState


def _check_document(
    engine: Engine, actor: Actor, doc: AgreementDocument, now: dt.datetime,
    grade_ceilings: Mapping[str, Fraction | None] | None = None,
) -> None:
    """Owner-side validation of a proposal; raises the first applicable error class with every reason."""
    if actor.role is not Role.OWNER:
        raise DomainError(POLICY_DENIED, "only data owners propose agreements",
                          [Reason("role.not_allowed").as_dict()])
    records = catalog_records(engine, doc.datasets)
    # every dataset is the proposer's or a named co-owner's (multi-owner agreements, `policies.agreements.signing`)
    owners = {actor.name, *doc.co_owners}
    not_found = [ds for ds, rec in records.items() if rec is None or rec.owner not in owners]
    if not_found:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "dataset not found",
                          [Reason("dataset.not_found", dataset=ds).as_dict() for ds in not_found])
    bad: list[Reason] = []
    for ds, cols in doc.columns.items():
        rec = records[ds]
        assert rec is not None
        for col in cols:
            info = rec.columns.get(col)
            if info is None:
                bad.append(Reason("column.unknown", dataset=ds, column=col))
            elif info.role in (ColumnRole.ID, ColumnRole.NEVER_OUTPUT):
                bad.append(Reason("column.not_shareable", dataset=ds, column=col))
    if doc.grantee == actor.name:
        bad.append(Reason("grantee.is_owner"))
    bad += _co_owner_reasons(actor, doc, records)
    if doc.valid_until <= now:
        bad.append(Reason("agreement.ends_in_past"))
    if bad:
        raise invalid("the agreement document is invalid", [r.as_dict() for r in bad])
    policy = [r.as_dict() for r in scope_reasons(doc.datasets, doc.columns, doc.purposes, records, neg.load(engine),
                                                 approval=doc.approval, epsilon=doc.budget.epsilon,
                                                 ceilings=grade_ceilings)]
    policy += join_keys_for_code(doc, records)
    if policy:
        raise DomainError(POLICY_DENIED, "the agreement conflicts with rules no agreement can override", policy)


def _co_owner_reasons(actor: Actor, doc: AgreementDocument, records: Mapping[str, Any]) -> list[Reason]:
    """A multi-owner document's own checks: every co-owner owns one of its datasets (never the proposer), it does
    not allow custom code (whose outputs only the proposer would review), and revenue shares name its owners."""
    out: list[Reason] = []
    holding = {rec.owner for rec in records.values() if rec is not None}
    for co in doc.co_owners:
        if co == actor.name or co not in holding:
            out.append(Reason("co_owner.without_dataset"))
    if doc.co_owners and "code" in doc.job_kinds:
        out.append(Reason("co_owner.code"))
    if doc.revenue is not None and set(doc.revenue.shares) - {actor.name, *doc.co_owners}:
        out.append(Reason("revenue.share_not_owner"))
    return out


def _as_document(document: AgreementDocument | Mapping[str, Any]) -> AgreementDocument:
    return document if isinstance(document, AgreementDocument) else parse_document(document)


def agreement_in(conn: Connection, agreement_id: str) -> Agreement:
    """The agreement as ``conn``'s transaction sees it (a journal reading the change it records)."""
    return agreement_from_row(conn.execute(select(t.agreements).where(t.agreements.c.id == agreement_id)).one())


def new_agreement_id() -> str:
    """A fresh agreement id (``agr_`` and 20 hex digits)."""
    return "agr_" + secrets.token_hex(10)


def create_agreement(
    engine: Engine, actor: Actor, document: AgreementDocument | Mapping[str, Any], *,
    now: dt.datetime | None = None, agreement_id: str | None = None, journal: Journal | None = None,
    filing_required: bool = False, hash_alg: HashAlg = "sha256",
    grade_ceilings: Mapping[str, Fraction | None] | None = None,
) -> Agreement:
    """Propose an agreement (``POST /agreements``). The actor must be an owner and own every dataset.

    ``INVALID_REQUEST`` for a malformed document, unknown or unshareable columns, granting oneself or a window
    already over; ``NOT_FOUND_OR_FORBIDDEN`` for a dataset that is missing or not the actor's;
    ``POLICY_DENIED`` for the grade controls (`policies.grades`: core grade, an approval mode or an ε budget the
    grade does not allow; ``grade_ceilings`` are the service's ε ceilings per grade, default the table's),
    negative-list hits, or personal data without a purpose.
    The budget accounts are opened in the same transaction, and ``journal`` (`policies.journal`) records the
    proposal in it; ``agreement_id`` (default: a fresh one) lets the caller name it beforehand.
    ``filing_required``: acceptance leads to review and filing (备案) before the agreement can be active.
    ``hash_alg``: the home suite's hash of the document hash (``sha256`` intl, ``sm3`` sm).
    """
    now = aware(now)
    doc = _as_document(document)
    _check_document(engine, actor, doc, now, grade_ceilings)
    agreement_id = agreement_id or new_agreement_id()
    doc_json, digest = doc.canonical_json(), doc.digest(hash_alg)
    with engine.begin() as conn:
        conn.execute(
            t.agreements.insert().values(
                id=agreement_id, owner=actor.name, grantee=doc.grantee, title=doc.title,
                state=AgreementState.PROPOSED.value, version=1, document_hash=digest, document_json=doc_json,
                valid_from=doc.valid_from, valid_until=doc.valid_until, created_at=now, updated_at=now,
                expired_recorded=False, filing_required=filing_required,
            )
        )
        conn.execute(t.agreement_versions.insert().values(
            agreement_id=agreement_id, version=1, document_hash=digest, document_json=doc_json, created_at=now))
        ledger.open_accounts(conn, agreement_id, doc.datasets, doc.budget_total, now)
        write(conn, journal)
    ag = load_agreement(engine, agreement_id)
    assert ag is not None
    return ag


def amend_agreement(
    engine: Engine, actor: Actor, agreement_id: str, document: AgreementDocument | Mapping[str, Any], *,
    now: dt.datetime | None = None, journal: Journal | None = None, hash_alg: HashAlg = "sha256",
    grade_ceilings: Mapping[str, Fraction | None] | None = None,
) -> Agreement:
    """Replace the document of a *proposed* agreement, or of one the data authority *returned* (owner only):
    version + 1, new hash, fresh accounts, state ``proposed`` (the grantee accepts the new version again);
    ``journal`` records the amendment in its transaction."""
    now = aware(now)
    ag = load_agreement(engine, agreement_id)
    if ag is None or ag.owner != actor.name:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "agreement not found")
    doc = _as_document(document)
    if effective_state(ag, now) not in (AgreementState.PROPOSED, AgreementState.RETURNED):
        raise DomainError(AGREEMENT_INACTIVE, "only a proposed or returned agreement can be amended",
                          [Reason("agreement.already_active").as_dict()])
    if doc.grantee != ag.grantee:
        raise invalid("an amendment cannot change the grantee")
    _check_document(engine, actor, doc, now, grade_ceilings)
    doc_json, digest = doc.canonical_json(), doc.digest(hash_alg)
    with engine.begin() as conn:
        res = conn.execute(
            update(t.agreements)
            .where(t.agreements.c.id == agreement_id, t.agreements.c.state == ag.state.value,
                   t.agreements.c.version == ag.version)
            .values(state=AgreementState.PROPOSED.value, version=ag.version + 1, document_hash=digest,
                    document_json=doc_json, title=doc.title,
                    valid_from=doc.valid_from, valid_until=doc.valid_until, updated_at=now)
        )
        if res.rowcount != 1:
            raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently",
                              [Reason("agreement.version_mismatch").as_dict()])
        conn.execute(t.agreement_versions.insert().values(
            agreement_id=agreement_id, version=ag.version + 1, document_hash=digest, document_json=doc_json,
            created_at=now))
        ledger.replace_accounts(conn, agreement_id, doc.datasets, doc.budget_total, now)
        write(conn, journal)
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def decide_on(
    engine: Engine, actor: Actor, action: Action, agreement: Agreement | None, now: dt.datetime,
) -> Decision:
    """`decide` for an action on the agreement as a whole (no datasets/columns of a request)."""
    records = catalog_records(engine, agreement.document.datasets) if agreement else {}
    with engine.connect() as conn:
        orders = open_orders_in(conn, agreement.id) if agreement else ()
    return decide(DecisionContext(actor=actor, action=action, now=now, agreement=agreement,
                                  datasets=records, negative_list=neg.load(engine), orders=orders))


def get_agreement(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> Agreement:
    """``GET /agreements/{id}``: parties (owner, grantee) and regulators; anyone else gets
    ``NOT_FOUND_OR_FORBIDDEN``."""
    now = aware(now)
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, Action.AGREEMENT_READ, ag, now).raise_if_denied()
    assert ag is not None
    return ag


def list_agreements(
    engine: Engine, actor: Actor, *, now: dt.datetime | None = None, state: str | None = None,
) -> list[Agreement]:
    """``GET /agreements``: regulators and the data authority see all; others the agreements they own or are
    granted. ``state`` filters on the effective state."""
    now = aware(now)
    a = t.agreements.c
    q = select(t.agreements).order_by(a.created_at, a.id)
    mine = actor.role not in (Role.REGULATOR, Role.AUTHORITY, Role.REVIEWER)
    if actor.role is Role.REVIEWER:  # a named reviewer: the agreements under review assigned to it, nothing else
        q = q.where(a.state == AgreementState.UNDER_REVIEW.value, a.reviewers_json.is_not(None))
    if mine:  # a co-owner is named in the document: narrowed here, checked exactly below
        q = q.where(or_(a.owner == actor.name, a.grantee == actor.name, a.document_json.contains('"co_owners"')))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = [agreement_from_row(r) for r in rows]
    if mine:
        out = [ag for ag in out if actor.name in (ag.owner, ag.grantee, *ag.document.co_owners)]
    if actor.role is Role.REVIEWER:
        out = [ag for ag in out if actor.name in ag.reviewers]
    if state is not None:
        out = [ag for ag in out if effective_state(ag, now).value == state]
    return out


def _transition(
    engine: Engine, actor: Actor, agreement_id: str, action: Action, to_state: AgreementState,
    now: dt.datetime, stamp: str | None, document_hash: str | None = None, journal: Journal | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Agreement:
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, action, ag, now).raise_if_denied()
    assert ag is not None
    if document_hash is not None and document_hash != ag.document_hash:
        raise DomainError(INVALID_REQUEST, "the agreement changed since you read it",
                          [Reason("agreement.version_mismatch").as_dict()])
    values: dict[str, Any] = {"state": to_state.value, "updated_at": now, **(extra or {})}
    if stamp:
        values[stamp] = now
    a = t.agreements.c
    guard = [a.id == agreement_id, a.state == ag.state.value, a.version == ag.version]
    if to_state is not AgreementState.REVOKED:
        guard.append(a.valid_until > now)  # never (re)activate past the window, even if it ends right now
    with engine.begin() as conn:
        res = conn.execute(update(t.agreements).where(*guard).values(**values))
        if res.rowcount == 1:
            write(conn, journal)
    if res.rowcount != 1:
        raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently; read it again",
                          [Reason("agreement.version_mismatch").as_dict()])
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def accept(
    engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
    document_hash: str | None = None, journal: Journal | None = None,
) -> Agreement:
    """``POST /agreements/{id}/accept`` (grantee): proposed → active, only inside the validity window (proposed →
    accepted when the agreement needs filing, 备案). With ``document_hash`` the acceptance is bound to the exact
    version the grantee read. Every transition takes a ``journal`` (`policies.journal`) recording it in its
    transaction."""
    ag = load_agreement(engine, agreement_id)
    to = AgreementState.ACCEPTED if ag is not None and ag.filing_required else AgreementState.ACTIVE
    if ag is not None and ag.document.co_owners and actor.name == ag.grantee:
        with engine.connect() as conn:
            missing = unsigned_in(conn, ag)  # signatures only accrue; the transition's version guard does the rest
        if missing:
            raise DomainError(POLICY_DENIED, "every owner must sign its part before acceptance",
                              [{**Reason("agreement.unsigned").as_dict(), "owner": o} for o in missing])
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_ACCEPT, to, aware(now),
                       "accepted_at", document_hash, journal)


def suspend(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
            journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/suspend`` (owner): active → suspended."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_SUSPEND, AgreementState.SUSPENDED,
                       aware(now), "suspended_at", journal=journal, extra={"suspended_by": "owner"})


def resume(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/resume`` (owner): suspended → active (not once expired, nor when the data
    authority suspended it)."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_RESUME, AgreementState.ACTIVE, aware(now),
                       None, journal=journal, extra={"suspended_by": None})


def revoke(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
           journal: Journal | None = None) -> Agreement:
    """``POST /agreements/{id}/revoke`` (owner): any state but revoked → revoked (final). The exit
    clause applies from now on."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_REVOKE, AgreementState.REVOKED, aware(now),
                       "revoked_at", journal=journal)


def record_expiry(engine: Engine, agreement_id: str, *, now: dt.datetime | None = None,
                  journal: Journal | None = None) -> bool:
    """Persist that the agreement has expired; True only the *first* time (``journal`` then records it in the same
    transaction). Revoked agreements are never recorded as expired (their exit already applied)."""
    now = aware(now)
    a = t.agreements.c
    with engine.begin() as conn:
        res = conn.execute(
            update(t.agreements)
            .where(a.id == agreement_id, a.expired_recorded.is_(False), a.state != "revoked", a.valid_until <= now)
            .values(expired_recorded=True, expired_recorded_at=now, updated_at=now)
        )
        if res.rowcount == 1:
            write(conn, journal)
    return res.rowcount == 1


def record_expiries(engine: Engine, *, now: dt.datetime | None = None) -> list[str]:
    """Sweep: record every agreement that expired and was not yet recorded; the ids newly recorded."""
    now = aware(now)
    a = t.agreements.c
    with engine.connect() as conn:
        ids = conn.execute(
            select(a.id).where(a.expired_recorded.is_(False), a.state != "revoked", a.valid_until <= now)
        ).scalars().all()
    return [i for i in ids if record_expiry(engine, i, now=now)]
