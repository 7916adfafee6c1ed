"""The certificate registry for verification products and released outputs (成果证书), with source attribution.

Models have their certificates in the model registry (`catalog.models`). Every other product of the service gets
an entry here:

- **product** (``VBX-PC-<year>-<8 hex>``): issued when an owner defines a verification product
  (`catalog.products.define_product` calls `issue_in` in the product's own transaction). It covers the product's
  question (dataset, subject column, predicate template, parameter types) and is valid for `PRODUCT_VALID_DAYS`.
  A check under a product whose certificate is revoked or expired is refused (`gateway.services.certificates`).
- **product under an agreement** (also ``VBX-PC-…``, kind ``product`` with its ``agreement_id`` set): issued when
  a product is first used under an agreement in force (`issue_bound_in`, in the transaction that meters that first
  check with its audit entry), held by the agreement's grantee, valid until the agreement's ``valid_until`` or the
  product's own certificate's end, whichever is first. One per (product, agreement) (unique index, migration
  0022); the disposal of the agreement revokes it with the agreement's output certificates.
- **output** (``VBX-OC-<year>-<8 hex>``): issued when a job's output passes the release gate and is released
  (query answers and other aggregates, custom code's JSON), in the release's own transaction. It covers the
  job, its kind, the output kind and the output digest; its validity ends at the agreement's ``valid_until`` at
  the latest (`OUTPUT_VALID_DAYS` otherwise).

Source attribution (在成果中注明数据来源): every certificate names its sources, one `source_of` block per dataset:
the dataset, its owner (the data unit that supplied it) and its fingerprint at issue time. The same blocks are
stamped into the released output itself (``source``, next to ``certificate_id``; `stamp`).

Revocation is recorded, never a deletion: ``revoked_at`` and ``revoked_reason`` (`revoke_in`; all of an
agreement's certificates at once with `revoke_for_agreement_in`). `Certificate.status` is ``valid``, ``revoked``
or ``expired`` at a given instant.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from catalog._tables import certificates
from catalog.errors import invalid

__all__ = [
    "KINDS",
    "OUTPUT_VALID_DAYS",
    "PRODUCT_VALID_DAYS",
    "Certificate",
    "Kind",
    "Status",
    "bound_certificate_for",
    "certificate_for",
    "certificates",
    "get_certificate",
    "issue_bound_in",
    "issue_in",
    "list_certificates",
    "new_certificate_id",
    "revoke_for_agreement_in",
    "revoke_in",
    "source_of",
    "stamp",
]

Kind = Literal["product", "output"]
KINDS: tuple[Kind, ...] = ("product", "output")
Status = Literal["valid", "revoked", "expired"]
#: How long a product's certificate is valid (a product is the owner's own declaration, bound to no agreement).
PRODUCT_VALID_DAYS = 365
#: How long an output's certificate is valid at most; never beyond its agreement's ``valid_until``.
OUTPUT_VALID_DAYS = 365
_PREFIX = {"product": "VBX-PC", "output": "VBX-OC"}


def _utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)


def source_of(dataset: str, owner: str, fingerprint: str) -> dict[str, str]:
    """One source block: the dataset, the owner unit that supplied it and its fingerprint."""
    return {"dataset": dataset, "owner": owner, "fingerprint": fingerprint}


def stamp(result: Any, certificate_id: str, sources: Iterable[Mapping[str, str]]) -> Any:
    """``result`` with ``certificate_id`` and ``source`` added (existing keys kept as they are: a model's result
    already names its own certificate). A result that is not a JSON object is returned unchanged: its attribution
    is its certificate's."""
    if not isinstance(result, dict):
        return result
    stamped = {"source": [dict(s) for s in sources], **result}
    stamped.setdefault("certificate_id", certificate_id)
    return stamped


@dataclass(frozen=True)
class Certificate:
    id: str
    kind: Kind
    subject: str
    agreement_id: str | None
    owner: str
    holder: str | None
    covers: dict[str, Any]
    sources: list[dict[str, str]]
    valid_from: dt.datetime
    valid_until: dt.datetime
    revoked_at: dt.datetime | None
    revoked_reason: str | None
    created_at: dt.datetime

    def status(self, now: dt.datetime | None = None) -> Status:
        now = _utc(now or dt.datetime.now(dt.UTC))
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        return "valid" if self.valid_from <= now < self.valid_until else "expired"

    def public(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The certificate as the registry states it: status now, what it covers, its sources."""
        status = self.status(now)
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "agreement_id": self.agreement_id,
            "issued_by": self.owner,
            "holder": self.holder,
            "status": status,
            "valid": status == "valid",
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_reason": self.revoked_reason,
            "covers": self.covers,
            "source": self.sources,
            "created_at": self.created_at.isoformat(),
        }


def _row(r: Any) -> Certificate:
    return Certificate(
        id=r.id,
        kind=r.kind,
        subject=r.subject,
        agreement_id=r.agreement_id,
        owner=r.owner,
        holder=r.holder,
        covers=json.loads(r.covers_json),
        sources=json.loads(r.sources_json),
        valid_from=_utc(r.valid_from),
        valid_until=_utc(r.valid_until),
        revoked_at=_utc(r.revoked_at) if r.revoked_at else None,
        revoked_reason=r.revoked_reason,
        created_at=_utc(r.created_at),
    )


def new_certificate_id(kind: Kind, now: dt.datetime | None = None) -> str:
    """A new certificate id, named before the transaction that issues it (a release stamps it into its result)."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    return f"{_PREFIX[kind]}-{now.year}-{secrets.token_hex(4).upper()}"


def issue_in(
    conn: Connection,
    *,
    kind: Kind,
    subject: str,
    owner: str,
    covers: Mapping[str, Any],
    sources: Iterable[Mapping[str, str]],
    agreement_id: str | None = None,
    holder: str | None = None,
    valid_days: int = PRODUCT_VALID_DAYS,
    valid_until: dt.datetime | None = None,
    certificate_id: str | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Issue a certificate in the caller's transaction (the product's definition or the output's release): valid
    from ``now`` for ``valid_days``, and never beyond ``valid_until`` (an agreement's end) when given."""
    if kind not in KINDS:
        raise invalid("a certificate covers a product or an output")
    if not 1 <= valid_days <= 3660:
        raise invalid("a certificate is valid for 1 to 3660 days")
    sources = [dict(s) for s in sources]
    if not sources:
        raise invalid("a certificate names its sources")
    now = _utc(now or dt.datetime.now(dt.UTC))
    until = now + dt.timedelta(days=valid_days)
    if valid_until is not None:
        until = min(until, _utc(valid_until))
    cert_id = certificate_id or new_certificate_id(kind, now)
    conn.execute(
        _INSERT,  # built once, the values bound
        dict(
            id=cert_id,
            kind=kind,
            subject=subject,
            agreement_id=agreement_id,
            owner=owner,
            holder=holder,
            covers_json=json.dumps(dict(covers), sort_keys=True),
            sources_json=json.dumps(sources, sort_keys=True),
            valid_from=now,
            valid_until=max(until, now),
            revoked_at=None,
            revoked_reason=None,
            created_at=now,
        ),
    )
    r = conn.execute(_BY_ID, {"b_id": cert_id}).first()
    assert r is not None
    return _row(r)


_INSERT = certificates.insert()
_BY_ID = select(certificates).where(certificates.c.id == bindparam("b_id"))


def get_certificate(engine: Engine, certificate_id: str) -> Certificate | None:
    with engine.connect() as conn:
        r = conn.execute(select(certificates).where(certificates.c.id == certificate_id)).first()
    return _row(r) if r is not None else None


def certificate_for(engine: Engine, kind: Kind, subject: str) -> Certificate | None:
    """The certificate of one product (by name: its own, bound to no agreement) or one released job (by id), if
    issued."""
    t = certificates
    q = select(t).where(t.c.kind == kind, t.c.subject == subject)
    if kind == "product":
        q = q.where(t.c.agreement_id.is_(None))
    with engine.connect() as conn:
        r = conn.execute(q).first()
    return _row(r) if r is not None else None


def _bound(product: str, agreement_id: str) -> Any:
    t = certificates
    return select(t).where(t.c.kind == "product", t.c.subject == product, t.c.agreement_id == agreement_id)


def bound_certificate_for(engine: Engine, product: str, agreement_id: str) -> Certificate | None:
    """The certificate of ``product`` under ``agreement_id``, if its first use under that agreement issued it."""
    with engine.connect() as conn:
        r = conn.execute(_bound(product, agreement_id)).first()
    return _row(r) if r is not None else None


def issue_bound_in(
    conn: Connection,
    *,
    certificate_id: str,
    product: str,
    agreement_id: str,
    owner: str,
    holder: str,
    covers: Mapping[str, Any],
    sources: Iterable[Mapping[str, str]],
    valid_until: dt.datetime,
    now: dt.datetime | None = None,
) -> Certificate:
    """The certificate of ``product`` under ``agreement_id``, issued now in the caller's transaction unless it is
    already (a concurrent first use may have issued it: the insert then does nothing), valid from ``now`` to
    ``valid_until``. The certificate returned is the registry's, whichever call issued it."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    r = conn.execute(_bound(product, agreement_id)).first()
    if r is None:
        values = dict(
            id=certificate_id,
            kind="product",
            subject=product,
            agreement_id=agreement_id,
            owner=owner,
            holder=holder,
            covers_json=json.dumps(dict(covers), sort_keys=True),
            sources_json=json.dumps([dict(s) for s in sources], sort_keys=True),
            valid_from=now,
            valid_until=max(_utc(valid_until), now),
            revoked_at=None,
            revoked_reason=None,
            created_at=now,
        )
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(certificates).values(**values).on_conflict_do_nothing())
        r = conn.execute(_bound(product, agreement_id)).first()
    if r is None:  # pragma: no cover - an id taken by another certificate (32 keyed bits)
        raise invalid("the certificate could not be issued")
    return _row(r)


def list_certificates(
    engine: Engine,
    *,
    agreement_id: str | None = None,
    owner: str | None = None,
    kind: Kind | None = None,
    subjects: Iterable[str] | None = None,
    unbound: bool = False,
) -> list[Certificate]:
    """Certificates, oldest first; ``unbound``: only those bound to no agreement (products' own)."""
    q = select(certificates).order_by(certificates.c.created_at, certificates.c.id)
    if agreement_id is not None:
        q = q.where(certificates.c.agreement_id == agreement_id)
    if owner is not None:
        q = q.where(certificates.c.owner == owner)
    if kind is not None:
        q = q.where(certificates.c.kind == kind)
    if subjects is not None:
        q = q.where(certificates.c.subject.in_(sorted(set(subjects))))
    if unbound:
        q = q.where(certificates.c.agreement_id.is_(None))
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q).all()]


def revoke_in(
    conn: Connection, certificate_ids: Iterable[str], reason: str, now: dt.datetime | None = None
) -> list[str]:
    """Revoke the named certificates not revoked yet, with ``reason``; the ids revoked now (sorted)."""
    if not reason.strip() or len(reason) > 500:
        raise invalid("a revocation states its reason (at most 500 characters)")
    ids = sorted(set(certificate_ids))
    if not ids:
        return []
    now = _utc(now or dt.datetime.now(dt.UTC))
    open_ = (certificates.c.id.in_(ids), certificates.c.revoked_at.is_(None))
    revoked = sorted(conn.execute(select(certificates.c.id).where(*open_)).scalars())
    if revoked:
        conn.execute(
            update(certificates).where(certificates.c.id.in_(revoked)).values(revoked_at=now, revoked_reason=reason)
        )
    return revoked


def revoke_for_agreement_in(
    conn: Connection, agreement_id: str, reason: str, *, products: Iterable[str] = (), now: dt.datetime | None = None
) -> list[str]:
    """Revoke, in the caller's transaction, every certificate bound to ``agreement_id`` (outputs released under it,
    products used under it) and the own certificates of the named ``products``; the ids revoked now."""
    t = certificates
    ids = list(conn.execute(select(t.c.id).where(t.c.agreement_id == agreement_id)).scalars())
    names = sorted(set(products))
    if names:
        own = (t.c.kind == "product", t.c.subject.in_(names), t.c.agreement_id.is_(None))
        ids += conn.execute(select(t.c.id).where(*own)).scalars()
    return revoke_in(conn, ids, reason, now)
