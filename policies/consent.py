"""The consent registry (同意登记, docs/consent.md): scenario-based consents to use one person's data, recorded by
the data's owner, checked on every use, revocable.

The policies forbid bundled consent (不得采取"一揽子授权") and ask for scenario-based authorization with tracing
(场景化授权使用与追踪溯源). A consent here is therefore narrow: one subject (its keyed hash, the same one every check
records: the gateway hashes a raw id before calling here, nothing raw is stored), one grantee, one scenario (the
purpose in words), the products it covers (verification products over the owner's datasets, and/or
``psi_members:<dataset>`` for membership tests on one of the owner's datasets) and a validity window. It can be
revoked with a reason; a revocation takes effect on the next call.

Who records: the owner of the datasets concerned, or a trustee principal the owner named (`add_trustee`: for
example the bank that collects the person's authorization at the counter). Who reads: the owner (all of its
consents), a trustee (those it recorded), the grantee (those granted to it: it names their ids on its calls).

`require` is what the check paths call, before any data is read: every consent id named must exist, be the
caller's, cover the product, be unrevoked and valid now, and — where the gateway sees the subject — be for that
subject. Its refusal (``CONSENT_REQUIRED`` / ``CONSENT_INVALID``) depends only on the consent records and the
request, never on whether the subject is in a dataset. Another grantee's consent is refused exactly like an
unknown id (``consent.unknown``), so ids cannot be probed.

Each change commits with its ``journal`` (`policies.journal`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update

from catalog import products as catalog_products
from catalog import registry
from catalog.errors import (
    CONSENT_INVALID,
    CONSENT_REQUIRED,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    DomainError,
    invalid,
)
from policies import _tables as t
from policies._clock import aware
from policies.actor import Actor
from policies.journal import Journal, write
from vocab.roles import Role

__all__ = [
    "MAX_BATCH",
    "PSI_MEMBERS",
    "Consent",
    "add_trustee",
    "is_consent_id",
    "is_trustee",
    "list_consents",
    "list_trustees",
    "new_consent_id",
    "psi_product",
    "record",
    "remove_trustee",
    "require",
    "revoke",
    "show_consent",
    "trustee_of",
]

#: Subjects per recording call (a bulk import sends batches of at most this many).
MAX_BATCH = 1000
#: The product name covering membership tests (`psi_members`) on one dataset: ``psi_members:<dataset>``.
PSI_MEMBERS = "psi_members"
MAX_PRODUCTS = 50
MAX_TEXT = 500
#: The longest validity window a consent may have (the person is asked again after it).
MAX_DAYS = 3 * 366
_HASH = re.compile(r"^hs:[0-9a-f]{32}$")
_ID = re.compile(r"^cns_[0-9a-f]{16}$")


def is_consent_id(text: str) -> bool:
    """Whether ``text`` is spelt as a consent id (``cns_`` and 16 hex digits)."""
    return bool(_ID.match(text))


def psi_product(dataset: str) -> str:
    """The product name a consent lists to cover ``psi_members`` on ``dataset``."""
    return f"{PSI_MEMBERS}:{dataset}"


@dataclass(frozen=True)
class Consent:
    """A recorded consent (the subject only as its keyed hash)."""

    id: str
    owner: str
    subject_hash: str
    grantee: str
    scenario: str
    products: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime
    recorded_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_by: str | None
    revoke_reason: str | None

    def state(self, now: dt.datetime | None = None) -> str:
        """``revoked``, ``pending`` (before its window), ``expired`` (after it) or ``valid``."""
        now = aware(now)
        if self.revoked_at is not None:
            return "revoked"
        if now < self.valid_from:
            return "pending"
        if now >= self.valid_until:
            return "expired"
        return "valid"

    def public(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The API view."""
        return {
            "id": self.id,
            "owner": self.owner,
            "subject_hash": self.subject_hash,
            "grantee": self.grantee,
            "scenario": self.scenario,
            "products": list(self.products),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "recorded_by": self.recorded_by,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
            "state": self.state(now),
        }


def _row(r: Any) -> Consent:
    return Consent(
        r.id,
        r.owner,
        r.subject_hash,
        r.grantee,
        r.scenario,
        tuple(json.loads(r.products_json)),
        r.valid_from,
        r.valid_until,
        r.recorded_by,
        r.created_at,
        r.revoked_at,
        r.revoked_by,
        r.revoke_reason,
    )


def new_consent_id() -> str:
    """A fresh consent id (``cns_`` and 16 hex digits)."""
    return "cns_" + secrets.token_hex(8)


def _field(field: str, reason: str, message: str) -> DomainError:
    return invalid(message, [{"field": field, "reason": reason}])


def _not_found() -> DomainError:
    return DomainError(NOT_FOUND_OR_FORBIDDEN, "consent not found")


# --- trustees --------------------------------------------------------------------------------------------------


def _owner_only(actor: Actor) -> None:
    if actor.role != Role.OWNER:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "only a data owner names its consent trustees")


def add_trustee(
    engine: Engine, actor: Actor, trustee: str, *, now: dt.datetime | None = None, journal: Journal | None = None
) -> None:
    """The owner ``actor`` authorises ``trustee`` to record consents for the owner's datasets (idempotent)."""
    _owner_only(actor)
    if not trustee.strip() or trustee == actor.name or len(trustee) > 64:
        raise _field("trustee", "trustee.invalid", "name another principal")
    with engine.begin() as conn:
        c = t.consent_trustees.c
        conn.execute(delete(t.consent_trustees).where(c.owner == actor.name, c.trustee == trustee))
        conn.execute(insert(t.consent_trustees).values(owner=actor.name, trustee=trustee, created_at=aware(now)))
        write(conn, journal)


def remove_trustee(engine: Engine, actor: Actor, trustee: str, *, journal: Journal | None = None) -> None:
    """The owner withdraws a trustee's authorisation (consents it recorded stay, each revocable by the owner)."""
    _owner_only(actor)
    with engine.begin() as conn:
        c = t.consent_trustees.c
        conn.execute(delete(t.consent_trustees).where(c.owner == actor.name, c.trustee == trustee))
        write(conn, journal)


def list_trustees(engine: Engine, owner: str) -> list[str]:
    """The principals ``owner`` authorised to record its consents."""
    c = t.consent_trustees.c
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(c.trustee).where(c.owner == owner).order_by(c.trustee))]


def trustee_of(engine: Engine, principal: str) -> list[str]:
    """The owners that named ``principal`` a trustee of their consents."""
    c = t.consent_trustees.c
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(c.owner).where(c.trustee == principal).order_by(c.owner))]


def is_trustee(engine: Engine, owner: str, principal: str) -> bool:
    """Whether ``owner`` named ``principal`` a trustee of its consents."""
    c = t.consent_trustees.c
    with engine.connect() as conn:
        return conn.execute(select(c.trustee).where(c.owner == owner, c.trustee == principal)).first() is not None


def _may_record(engine: Engine, actor: Actor, owner: str) -> bool:
    if actor.role == Role.OWNER and actor.name == owner:
        return True
    return is_trustee(engine, owner, actor.name)


# --- recording -------------------------------------------------------------------------------------------------


def _products(engine: Engine, owner: str, products: Sequence[str]) -> tuple[str, ...]:
    """The products named, each over one of ``owner``'s datasets (else refused, naming which)."""
    out = tuple(dict.fromkeys(p.strip() for p in products if p and p.strip()))
    if not out or len(out) > MAX_PRODUCTS:
        raise _field("products", "products.count", f"name 1 to {MAX_PRODUCTS} products the consent covers")
    for name in out:
        if name.startswith(PSI_MEMBERS + ":"):
            ds = registry.get(engine, name.split(":", 1)[1])
            dataset_owner = ds.owner if ds is not None else None
        else:
            product = catalog_products.get_product(engine, name)
            ds = registry.get(engine, product.dataset) if product is not None else None
            dataset_owner = ds.owner if ds is not None else None
        if dataset_owner != owner:
            raise invalid(
                "a consent covers products over its owner's datasets only",
                [{"field": "products", "reason": "product.unknown", "product": name}],
            )
    return out


def record(
    engine: Engine,
    actor: Actor,
    *,
    owner: str,
    subject_hashes: Sequence[str],
    grantee: str,
    scenario: str,
    products: Sequence[str],
    valid_until: dt.datetime,
    valid_from: dt.datetime | None = None,
    ids: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    journal: Journal | None = None,
) -> list[Consent]:
    """Record one consent per subject hash (same grantee, scenario, products and window), all in one transaction
    with ``journal``. ``actor`` is ``owner`` or a trustee it named; ``ids`` (one per subject) may be chosen by the
    caller, else fresh ones are drawn."""
    now = aware(now)
    valid_from = aware(valid_from) if valid_from is not None else now
    valid_until = aware(valid_until)
    if not _may_record(engine, actor, owner):
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "only the data owner or a trustee it named records its consents")
    hashes = list(subject_hashes)
    if not 1 <= len(hashes) <= MAX_BATCH:
        raise _field("subjects", "subjects.count", f"1 to {MAX_BATCH} subjects per call")
    if any(not _HASH.match(h) for h in hashes):
        raise _field("subject_hashes", "subject.hash", "subjects are keyed hashes (hs:…)")
    if not grantee.strip() or len(grantee) > 64:
        raise _field("grantee", "grantee.missing", "name the grantee")
    scenario = scenario.strip()
    if not scenario or len(scenario) > MAX_TEXT:
        raise _field("scenario", "scenario.length", f"describe the scenario in 1 to {MAX_TEXT} characters")
    if not valid_from < valid_until <= valid_from + dt.timedelta(days=MAX_DAYS):
        raise _field("valid_until", "window.invalid", f"the window ends after it starts, at most {MAX_DAYS} days later")
    covered = _products(engine, owner, products)
    chosen = list(ids) if ids is not None else [new_consent_id() for _ in hashes]
    if len(chosen) != len(hashes) or any(not _ID.match(i) for i in chosen):
        raise _field("ids", "ids.invalid", "one consent id (cns_ and 16 hex digits) per subject")
    rows: list[dict[str, Any]] = [
        {
            "id": i,
            "owner": owner,
            "subject_hash": h,
            "grantee": grantee,
            "scenario": scenario,
            "products_json": json.dumps(list(covered)),
            "valid_from": valid_from,
            "valid_until": valid_until,
            "recorded_by": actor.name,
            "created_at": now,
            "revoked_at": None,
            "revoked_by": None,
            "revoke_reason": None,
        }
        for i, h in zip(chosen, hashes, strict=True)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.consents), rows)
        write(conn, journal)
    return [
        Consent(i, owner, h, grantee, scenario, covered, valid_from, valid_until, actor.name, now, None, None, None)
        for i, h in zip(chosen, hashes, strict=True)
    ]


# --- reading ---------------------------------------------------------------------------------------------------


def _load(engine: Engine, consent_id: str) -> Consent:
    with engine.connect() as conn:
        r = conn.execute(select(t.consents).where(t.consents.c.id == consent_id)).first()
    if r is None:
        raise _not_found()
    return _row(r)


def _reads(actor: Actor, c: Consent) -> bool:
    return actor.role == Role.ADMIN or actor.name in (c.owner, c.recorded_by, c.grantee)


def show_consent(engine: Engine, actor: Actor, consent_id: str) -> Consent:
    """One consent, if the actor is its owner, recorder or grantee (else ``NOT_FOUND_OR_FORBIDDEN``)."""
    c = _load(engine, consent_id)
    if not _reads(actor, c):
        raise _not_found()
    return c


def list_consents(
    engine: Engine,
    actor: Actor,
    *,
    subject_hash: str | None = None,
    grantee: str | None = None,
    product: str | None = None,
    limit: int = 500,
) -> list[Consent]:
    """The consents the actor reads (owner: its own; trustee: those it recorded; grantee: those granted to it),
    newest first, optionally for one subject hash, grantee or product."""
    c = t.consents.c
    q = select(t.consents)
    if actor.role != Role.ADMIN:
        q = q.where(or_(c.owner == actor.name, c.recorded_by == actor.name, c.grantee == actor.name))
    if subject_hash is not None:
        q = q.where(c.subject_hash == subject_hash)
    if grantee is not None:
        q = q.where(c.grantee == grantee)
    with engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(q.order_by(c.created_at.desc(), c.id).limit(limit))]
    return [r for r in rows if product is None or product in r.products]


def revoke(
    engine: Engine,
    actor: Actor,
    consent_id: str,
    reason: str,
    *,
    now: dt.datetime | None = None,
    journal: Journal | None = None,
) -> Consent:
    """Revoke a consent (its owner, or a trustee of that owner), with a reason; the next call naming it is
    refused (``CONSENT_INVALID``, ``consent.revoked``)."""
    now = aware(now)
    reason = reason.strip()
    if not reason or len(reason) > MAX_TEXT:
        raise _field("reason", "reason.length", f"a revocation states its reason (1 to {MAX_TEXT} characters)")
    c = _load(engine, consent_id)
    if not _may_record(engine, actor, c.owner):
        raise _not_found()
    if c.revoked_at is not None:
        raise DomainError(
            INVALID_REQUEST, "the consent is already revoked", [{"field": "id", "reason": "consent.revoked"}]
        )
    col = t.consents.c
    with engine.begin() as conn:
        res = conn.execute(
            update(t.consents)
            .where(col.id == consent_id, col.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor.name, revoke_reason=reason)
        )
        if res.rowcount != 1:
            raise DomainError(
                INVALID_REQUEST, "the consent is already revoked", [{"field": "id", "reason": "consent.revoked"}]
            )
        write(conn, journal)
    return _load(engine, consent_id)


# --- enforcement -----------------------------------------------------------------------------------------------


def _problem(
    c: Consent | None, *, grantee: str, owner: str, product: str, subject_hash: str | None, now: dt.datetime
) -> str | None:
    if c is None or c.grantee != grantee:
        return "consent.unknown"  # another grantee's consent is refused exactly like an id that does not exist
    if c.owner != owner or product not in c.products:
        return "consent.product"
    if c.revoked_at is not None:
        return "consent.revoked"
    if now < c.valid_from:
        return "consent.not_yet_valid"
    if now >= c.valid_until:
        return "consent.expired"
    if subject_hash is not None and c.subject_hash != subject_hash:
        return "consent.subject"
    return None


def require(
    engine: Engine,
    consent_ids: Sequence[str],
    *,
    grantee: str,
    owner: str,
    product: str,
    subject_hashes: Sequence[str | None] | None = None,
    expected: int = 1,
    now: dt.datetime | None = None,
) -> list[str]:
    """Refuse unless ``consent_ids`` holds exactly ``expected`` distinct registered consents, each the
    ``grantee``'s, recorded for the dataset's ``owner``, covering ``product``, unrevoked and valid at ``now``, and
    (where ``subject_hashes`` gives one per id, ``None`` where the gateway does not see it) for that subject.

    Decided from the consent records and the request alone: nothing here reads a dataset, so the answer is the
    same whether or not a subject is in it. Returns the ids checked (for the audit entry)."""
    now = aware(now)
    ids = [i.strip() for i in consent_ids]
    if not ids or len(ids) != expected or any(not i for i in ids):
        raise DomainError(
            CONSENT_REQUIRED,
            f"name {expected} registered consent id(s), one per subject",
            [{"reason": "consent.missing", "expected": expected, "given": len(ids)}],
        )
    wanted = sorted({i for i in ids if _ID.match(i)})
    with engine.connect() as conn:
        found = (
            {r.id: _row(r) for r in conn.execute(select(t.consents).where(t.consents.c.id.in_(wanted)))}
            if wanted
            else {}
        )
    hashes = list(subject_hashes) if subject_hashes is not None else [None] * len(ids)
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, (cid, h) in enumerate(zip(ids, hashes, strict=True)):
        reason = (
            "consent.repeated"
            if cid in seen
            else _problem(found.get(cid), grantee=grantee, owner=owner, product=product, subject_hash=h, now=now)
        )
        seen.add(cid)
        if reason is not None:
            problems.append({"index": index, "reason": reason})
    if problems:
        raise DomainError(CONSENT_INVALID, "a consent named does not cover this use", problems[:20])
    return ids
