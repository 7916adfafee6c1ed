"""The consent registry (同意登记, docs/consent.md): recording, revoking and reading consents, enforcing them on the
check paths, and the subject-access report.

Subjects are never stored or logged raw: an owner (or a trustee it named) may give a person's raw id, in the
spelling the owner's verification products use (a string as stored, an integer as its decimal text); it is hashed
here with the product's subject key (`gateway.keys.Keys.subject_hash`, the same keyed hash every check records)
before anything is stored or audited. A bulk import sends batches of at most `policies.consent.MAX_BATCH`.

Enforcement (`require_for`): a home created by ``veilbox init`` enforces the registry (``service_meta`` key
``consent_registry`` = ``enforced``; ``veilbox init --no-consent-registry`` leaves it off, and then a check's
``consent_ref`` stays the bank's free-text reference, recorded as a digest). When enforced, every plain, encrypted
and anonymous check and every ``psi_members`` call on a personal dataset names registered consent ids, checked
(`policies.consent.require`) after the policy decision and before any data is read.

Each change commits with the request's audit entry (`gateway.journal.request_entry`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import and_, delete, or_, select, true

from catalog.columns import Kind
from catalog.errors import NOT_FOUND_OR_FORBIDDEN, DomainError, invalid
from catalog.registry import Dataset
from gateway import _tables as gt
from gateway.audit import AuditEvent, scope_for
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import request_entry
from gateway.services.audit import _owned
from gateway.services.jobs import actor_of
from policies import consent as policy
from sandbox.verify import canonical_subject
from vocab.roles import Role

__all__ = [
    "ENFORCE_KEY",
    "RecordBody",
    "RevokeBody",
    "SubjectBody",
    "TrusteeBody",
    "enforced",
    "hash_subject",
    "record",
    "require_for",
    "revoke",
    "set_enforced",
    "subject_access",
    "trustee",
]

#: The ``service_meta`` key holding whether the home enforces the registry: ``enforced`` or absent.
ENFORCE_KEY = "consent_registry"

RawSubject = Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt


class RecordBody(BaseModel):  # ``POST /consents`` (one subject or a batch) and the console's form
    model_config = ConfigDict(extra="forbid")
    subjects: list[RawSubject] = Field(
        default_factory=list,
        max_length=policy.MAX_BATCH,
        description="the people's raw ids: hashed by the gateway, never stored",
    )
    subject_hashes: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=policy.MAX_BATCH, description="or their keyed hashes (hs:…)"
    )
    owner: str | None = Field(
        None,
        max_length=64,
        description="the data owner (a trustee records for an owner that named it; default: the caller)",
    )
    grantee: str = Field(min_length=1, max_length=64, description="who may use the consent on its calls")
    scenario: str = Field(
        min_length=1, max_length=policy.MAX_TEXT, description="the scenario (场景) the person agreed to, in words"
    )
    products: list[Annotated[str, Field(max_length=160)]] = Field(
        min_length=1,
        max_length=policy.MAX_PRODUCTS,
        description="verification products over the owner's datasets, and/or psi_members:<dataset>",
    )
    valid_from: AwareDatetime | None = Field(None, description="default: now; with a time zone")
    valid_until: AwareDatetime = Field(description="with a time zone (a naive time is an invalid request)")


class RevokeBody(BaseModel):  # ``POST /consents/{id}/revoke``
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=policy.MAX_TEXT)


class SubjectBody(BaseModel):  # ``POST /consents/subject-access``
    model_config = ConfigDict(extra="forbid")
    subject: RawSubject | None = Field(None, description="the person's raw id (hashed, never kept)")
    subject_hash: str | None = Field(None, max_length=64, description="or its keyed hash (hs:…)")


class TrusteeBody(BaseModel):  # ``POST /consents/trustees``
    model_config = ConfigDict(extra="forbid")
    trustee: str = Field(min_length=1, max_length=64)
    remove: bool = False


# --- the home's choice -----------------------------------------------------------------------------------------


def enforced(ctx_or_engine: Any) -> bool:
    """Whether this home enforces the consent registry on personal data."""
    engine = getattr(ctx_or_engine, "engine", ctx_or_engine)
    with engine.connect() as conn:
        value = conn.execute(select(gt.service_meta.c.value).where(gt.service_meta.c.key == ENFORCE_KEY)).scalar()
    return bool(value == "enforced")


def set_enforced(engine: Any, on: bool) -> None:
    """Set the home's choice (``veilbox init`` turns it on unless ``--no-consent-registry``)."""
    with engine.begin() as conn:
        conn.execute(delete(gt.service_meta).where(gt.service_meta.c.key == ENFORCE_KEY))
        if on:
            conn.execute(gt.service_meta.insert().values(key=ENFORCE_KEY, value="enforced"))


def require_for(
    ctx: AppContext,
    p: Principal,
    ds: Dataset,
    product: str,
    consent_ids: list[str],
    ev: AuditEvent,
    *,
    subject_hashes: list[str | None] | None = None,
    expected: int = 1,
) -> None:
    """On a personal dataset of a home that enforces the registry, refuse unless ``consent_ids`` are registered
    consents covering this use (`policies.consent.require`). Called after the policy decision and before any
    data is read; records the ids checked in the request's entry."""
    if not ds.personal or not enforced(ctx):
        return
    # the well-formed ids named, allowed or refused (never free text): what traces the call to the people concerned
    ev.details["consent_ids"] = [i.strip() for i in consent_ids if policy.is_consent_id(i.strip())]
    policy.require(
        ctx.engine,
        consent_ids,
        grantee=p.name,
        owner=ds.owner,
        product=product,
        subject_hashes=subject_hashes,
        expected=expected,
    )


# --- recording -------------------------------------------------------------------------------------------------


def hash_subject(ctx: AppContext, raw: str | int) -> str:
    """A raw id's keyed hash, as the check path computes it (`gateway.services.complaints.subject_hash_of`)."""
    canonical = str(raw) if isinstance(raw, int) else canonical_subject(Kind.STRING, raw)
    return ctx.keys.subject_hash(canonical)


def record(ctx: AppContext, p: Principal, body: RecordBody, ev: AuditEvent) -> list[dict[str, Any]]:
    """Record one consent per subject (a raw id hashed here, or a hash), in one transaction with the request's
    entry (which names the ids and, for a single subject, its hash; never a raw id)."""
    if bool(body.subjects) == bool(body.subject_hashes):
        raise invalid(
            "name the subjects once: by raw ids or by hashes", [{"field": "subjects", "reason": "subjects.once"}]
        )
    hashes = [hash_subject(ctx, s) for s in body.subjects] or list(body.subject_hashes)
    owner = body.owner or p.name
    ids = [policy.new_consent_id() for _ in hashes]
    ev.details.update(
        owner=owner,
        grantee=body.grantee,
        products=body.products,
        count=len(ids),
        consent_ids=ids if len(ids) <= 16 else {"first": ids[0], "count": len(ids)},
    )
    if len(hashes) == 1:
        ev.subject_hash = hashes[0]
    out = policy.record(
        ctx.engine,
        actor_of(p),
        owner=owner,
        subject_hashes=hashes,
        grantee=body.grantee,
        scenario=body.scenario,
        products=body.products,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        ids=ids,
        journal=request_entry(ctx.audit, ev),
    )
    return [c.public() for c in out]


def revoke(ctx: AppContext, p: Principal, consent_id: str, reason: str, ev: AuditEvent) -> dict[str, Any]:
    """Revoke with a reason; the request's entry commits with it. The next call naming the consent is refused."""
    ev.details.update(consent_id=consent_id, reason=reason)
    current = policy.show_consent(ctx.engine, actor_of(p), consent_id)
    ev.subject_hash = current.subject_hash
    return policy.revoke(ctx.engine, actor_of(p), consent_id, reason, journal=request_entry(ctx.audit, ev)).public()


def trustee(ctx: AppContext, p: Principal, body: TrusteeBody, ev: AuditEvent) -> list[str]:
    """Name (or, with ``remove``, withdraw) a trustee allowed to record the owner's consents."""
    ev.details.update(trustee=body.trustee, remove=body.remove)
    journal = request_entry(ctx.audit, ev)
    if body.remove:
        policy.remove_trustee(ctx.engine, actor_of(p), body.trustee, journal=journal)
    else:
        policy.add_trustee(ctx.engine, actor_of(p), body.trustee, journal=journal)
    return policy.list_trustees(ctx.engine, p.name)


# --- the subject-access report ---------------------------------------------------------------------------------

_USE_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code")


def subject_access(
    ctx: AppContext, p: Principal, raw: str | int | None, given: str | None, ev: AuditEvent
) -> dict[str, Any]:
    """For the owner answering a person's request: the person's consents with this owner and every use of the
    person's data under this owner's datasets and agreements the audit log records (by the keyed hash: as the
    check's subject, or among an encrypted check's subjects) or by one of its consents' ids (anonymous checks and
    psi_members, which never see the subject), each with what was asked, when, by whom and the outcome — never a
    value."""
    if p.role != Role.OWNER:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "the subject-access report is the data owner's")
    if (raw is None) == (given is None):
        raise invalid(
            "name the subject once: by its id or by its hash", [{"field": "subject", "reason": "subject.once"}]
        )
    h = hash_subject(ctx, raw) if raw is not None else str(given)
    ev.subject_hash = h
    consents = [c.public() for c in policy.list_consents(ctx.engine, actor_of(p), subject_hash=h) if c.owner == p.name]
    e = gt.audit_entries.c
    scope = scope_for(p.role.value, p.name, *_owned(ctx, p))
    named = [e.details.contains(f'"{c["id"]}"') for c in consents[:100]]  # uses that named one of them
    cond = and_(or_(e.subject_hash == h, e.details.contains(h), *named), scope if scope is not None else true())
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(gt.audit_entries).where(cond).order_by(e.seq).limit(5000)).all()
    uses = []
    for r in rows:
        m = r._mapping
        if m["action"].startswith(("consent.", "console.consent.")):
            continue  # the registry's own entries (API and console) are the consents listed above
        item = {k: m[k] for k in _USE_FIELDS}
        item["ts"] = item["ts"].isoformat() if hasattr(item["ts"], "isoformat") else item["ts"]
        details = _details(m["details"])
        item["product"] = details.get("product")
        item["consent_ids"] = details.get("consent_ids")
        uses.append(item)
    return {"subject_hash": h, "consents": consents, "uses": uses}


def _details(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        out = json.loads(raw or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
