"""Certificates of verification products and released outputs: issuing at release, verifying, listing, revoking.

The registry is `catalog.certificates`. This module is what the gateway does with it:

- `for_release`: a job's released output gets an output certificate, issued in the release's own transaction
  (`gateway.services.jobs._release`), valid until its agreement's ``valid_until`` at the latest; the released
  result is stamped with ``certificate_id`` and ``source`` (dataset, owner unit, dataset fingerprint of each
  dataset the job read: 在成果中注明数据来源). A model's result keeps the model's own certificate id (the model
  registry's) and gets the ``source`` block too. The output digest stays the digest of the output the release gate
  checked; the stamp is added beside it.
- `refuse_if_uncertified`: a check under a product whose certificate is revoked or expired is refused before
  anything is read or metered, as scoring refuses a model: revoked, ``AGREEMENT_INACTIVE`` with reason
  ``product.certificate_revoked`` (a model's revoked by a disposal: ``model.certificate_revoked``); expired,
  ``POLICY_DENIED`` with reason ``product.certificate_expired`` (a model's: ``model.certificate_invalid``). A
  product defined before the registry existed has no certificate and is checked as before.
- `for_check`: a product's certificate under the agreement a check is made under. The first check under an
  agreement in force issues it, in the transaction that meters that check with its audit entry (both or neither);
  its id is named before any data is read, the same for a present and an absent subject (a keyed digest of the
  product and the agreement, so concurrent first checks name the same certificate), and every check's receipt and
  answer carry it (``certificate_id``). It is valid until the agreement's ``valid_until`` or the product's own
  certificate's end, whichever is first; once revoked (the agreement's disposal) a check under it is refused
  ``AGREEMENT_INACTIVE`` (``product.certificate_revoked``), once expired ``POLICY_DENIED``
  (``product.certificate_expired``).
- `show`: ``GET /certificates/{id}`` verifies a certificate for any authenticated principal (a certificate is
  shown to third parties): status now (valid, revoked or expired), what it covers, its sources.
- `list_for_agreement`: ``GET /certificates?agreement_id=``, for the agreement's readers (its parties, the data
  authority, regulators): the certificates of outputs released under it and of the products over its datasets.
- `revoke_certificates_for_agreement`: revokes, in the caller's transaction, every certificate of outputs released
  under the agreement and of products used under it and, when asked, the own certificates of the owner's products
  over its datasets. `revoke_in_disposal` is that revocation as a step of an agreement's disposal
  (`policies.disposal.Step`, for `gateway.services.disposal.STEPS`): the certificates bound to the agreement only
  — a product's own certificate serves every agreement over its dataset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

import policies
from catalog import certificates as registry
from catalog import products
from catalog import registry as datasets
from catalog._tables import verification_products
from catalog.errors import AGREEMENT_INACTIVE, POLICY_DENIED, UNAVAILABLE, DomainError, not_found
from policies import Actor
from policies.agreements.record import load_agreement_in
from policies.disposal import Disposing
from policies.jobs import Job

if TYPE_CHECKING:
    from gateway.context import AppContext
    from gateway.journal import Journal

__all__ = [
    "bound_certificate_id",
    "for_check",
    "for_release",
    "list_for_agreement",
    "refuse_if_uncertified",
    "revoke_certificates_for_agreement",
    "revoke_in_disposal",
    "show",
]


def for_release(
    ctx: AppContext, job: Job, output_kind: str, output_digest: str, result: Any, now: dt.datetime | None = None,
    *, loaded: tuple[policies.Agreement, Mapping[str, Any]] | None = None,
) -> tuple[Any, Journal]:
    """The released ``result`` stamped with its certificate and sources, and the journal that issues the
    certificate in the release's transaction. A model output keeps its model certificate (no output
    certificate: the model registry certifies it) and gets its sources. ``loaded``: the job's agreement and
    dataset records as the caller already read them (an inline query's, from its decision), instead of reading."""
    sources = []
    for name in job.datasets:  # the fingerprint the job was submitted and approved against
        ds = loaded[1].get(name) if loaded is not None else datasets.get(ctx.engine, name)
        if ds is not None:
            sources.append(registry.source_of(ds.name, ds.owner, job.fingerprints[name]))
    ag = loaded[0] if loaded is not None else policies.load_agreement(ctx.engine, job.agreement_id)
    if output_kind == "model":
        stamped = {**result, "source": sources} if isinstance(result, dict) else result
        return stamped, lambda _conn: None
    if not sources or ag is None:  # pragma: no cover - a released job read its datasets under its agreement
        return result, lambda _conn: None
    cert_id = registry.new_certificate_id("output", now)
    stamped = registry.stamp(result, cert_id, sources)

    def issue(conn: Connection) -> None:
        registry.issue_in(
            conn,
            kind="output",
            subject=job.id,
            owner=ag.owner,
            holder=job.created_by,
            agreement_id=job.agreement_id,
            certificate_id=cert_id,
            sources=sources,
            covers={
                "job_id": job.id,
                "job_kind": job.kind.value,
                "output_kind": output_kind,
                "output_digest": output_digest,
            },
            valid_days=registry.OUTPUT_VALID_DAYS,
            valid_until=ag.document.valid_until,
            now=now,
        )

    return stamped, issue


def refuse_if_uncertified(ctx: AppContext, product: products.Product, now: dt.datetime | None = None) -> None:
    """Refuse a check under ``product`` when its certificate is revoked or expired (see the module docstring)."""
    cert = registry.certificate_for(ctx.engine, "product", product.name)
    if cert is not None:
        _refuse(cert, now)


def _refuse(cert: registry.Certificate, now: dt.datetime | None = None) -> None:
    status = cert.status(now)
    if status != "valid":  # revoked: as a model whose certificate the disposal revoked; expired: as an expired model
        raise DomainError(
            AGREEMENT_INACTIVE if status == "revoked" else POLICY_DENIED,
            f"the product's certificate is {status}",
            [
                {
                    "reason": f"product.certificate_{status}",
                    "certificate_id": cert.id,
                    "valid_until": cert.valid_until.isoformat(),
                }
            ],
        )


def bound_certificate_id(ctx: AppContext, product: str, agreement_id: str, now: dt.datetime | None = None) -> str:
    """The id a product's certificate under an agreement has (or gets when first issued): a keyed digest of the
    two names, so it is the same for every concurrent first check and guessable by no one."""
    now = now or dt.datetime.now(dt.UTC)
    mac = ctx.keys.suite.hmac_hex(ctx.keys.subject_key, f"certificate\n{product}\n{agreement_id}".encode())
    return f"VBX-PC-{now.year}-{mac[:8].upper()}"


def for_check(
    ctx: AppContext, product: products.Product, agreement_id: str, now: dt.datetime | None = None
) -> tuple[str, Journal]:
    """The id of ``product``'s certificate under ``agreement_id`` and the journal that issues it, if not issued
    yet, in the transaction that meters the check (see the module docstring). Called after the check's policy
    decision and before anything is read: nothing in it depends on the subject. A revoked or expired one is
    refused."""
    existing = registry.bound_certificate_for(ctx.engine, product.name, agreement_id)
    if existing is not None:
        _refuse(existing, now)
        return existing.id, lambda _conn: None
    ag = policies.load_agreement(ctx.engine, agreement_id)
    if ag is None:  # pragma: no cover - the decision just found it in force
        raise not_found("agreement")
    cert_id = bound_certificate_id(ctx, product.name, agreement_id, now)
    own = registry.certificate_for(ctx.engine, "product", product.name)
    ends = [ag.document.valid_until]  # never beyond the agreement, nor beyond the product's own certificate
    ends.append(
        own.valid_until
        if own is not None
        else (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=registry.PRODUCT_VALID_DAYS)
    )
    until = min(ends)
    covers = {
        **(own.covers if own is not None else {"product": product.name, "dataset": product.dataset}),
        "agreement_id": agreement_id,
        "product_certificate_id": own.id if own is not None else None,
    }
    source = [product.source()]

    def issue(conn: Connection) -> None:
        cert = registry.issue_bound_in(
            conn,
            certificate_id=cert_id,
            product=product.name,
            agreement_id=agreement_id,
            owner=product.owner,
            holder=ag.grantee,
            covers=covers,
            sources=source,
            valid_until=until,
            now=now,
        )
        if cert.id != cert_id:  # pragma: no cover - a concurrent first check across a new year named another id
            raise DomainError(UNAVAILABLE, "the product's certificate was being issued; retry")

    return cert_id, issue


def show(ctx: AppContext, certificate_id: str) -> dict[str, Any]:
    """One certificate as the registry states it now (``NOT_FOUND_OR_FORBIDDEN`` for an unknown id)."""
    cert = registry.get_certificate(ctx.engine, certificate_id)
    if cert is None:
        raise not_found("certificate")
    return cert.public()


def _product_names(ctx: AppContext, datasets: Iterable[str]) -> list[str]:
    wanted = set(datasets)
    return [p.name for p in products.list_products(ctx.engine) if p.dataset in wanted]


def list_for_agreement(ctx: AppContext, actor: Actor, agreement_id: str) -> list[dict[str, Any]]:
    """The certificates of an agreement (outputs released under it, products used under it, the own certificates
    of the products over its datasets), for its
    readers; ``NOT_FOUND_OR_FORBIDDEN`` for anyone else."""
    ag = policies.get_agreement(ctx.engine, actor, agreement_id)
    names = _product_names(ctx, ag.document.datasets)
    out = registry.list_certificates(ctx.engine, agreement_id=agreement_id)
    if names:
        out += registry.list_certificates(ctx.engine, kind="product", subjects=names, unbound=True)
    now = dt.datetime.now(dt.UTC)
    return [c.public(now) for c in sorted(out, key=lambda c: (c.created_at, c.id))]


def revoke_certificates_for_agreement(
    conn: Connection,
    agreement_id: str,
    reason: str,
    *,
    products_too: bool = False,
    now: dt.datetime | None = None,
) -> list[str]:
    """Revoke, in ``conn``'s transaction, every certificate bound to ``agreement_id`` (outputs, products used under
    it) (and, with
    ``products_too``, of the agreement owner's products over the agreement's datasets); the ids revoked now.
    Everything is read through ``conn``: the caller's transaction may hold the store's write lock."""
    names: list[str] = []
    if products_too:
        ag = load_agreement_in(conn, agreement_id)
        if ag is not None:
            t = verification_products
            names = list(
                conn.execute(
                    select(t.c.name).where(t.c.owner == ag.owner, t.c.dataset.in_(list(ag.document.datasets)))
                ).scalars()
            )
    return registry.revoke_for_agreement_in(conn, agreement_id, reason, products=names, now=now)


def revoke_in_disposal(conn: Connection, dp: Disposing) -> dict[str, Any]:
    """A disposal step (`policies.disposal.Step`): the certificates bound to the ended agreement (outputs released
    under it, products used under it) revoked, with the reason ``agreement.revoked`` or ``agreement.expired``."""
    revoked = revoke_certificates_for_agreement(conn, dp.agreement.id, f"agreement.{dp.case}", now=dp.now)
    return {"revoked": revoked}
