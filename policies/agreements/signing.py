"""Multi-owner agreements: each co-owner signs its part (docs/revenue.md, "Multi-owner agreements").

An agreement may list datasets of several owners: the proposer is one owner and names the others in the document's
``co_owners``; every listed dataset must belong to the proposer or to a named co-owner, and every co-owner must own
at least one (`policies.agreements.lifecycle`). Before the grantee may accept, each co-owner signs its part — its
datasets in the agreement — bound to the current ``document_hash`` (`sign`). An amendment changes the hash, so the
signatures on an older version no longer count (`unsigned_in` compares with the current hash) and the co-owners
sign again. A signature is a row of ``agreement_signatures`` written with the caller's audit entry (``journal``);
the parties (proposer, co-owners, grantee), the data authority and regulators read them (`signatures`).

A single-owner agreement (no ``co_owners``) needs no signature: its flow is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from catalog import registry
from catalog.errors import INVALID_REQUEST, DomainError
from policies import _tables as t
from policies import negative_list as neg
from policies._clock import aware
from policies.actor import Actor
from policies.agreements.record import Agreement, catalog_records, load_agreement, open_orders_in
from policies.decision import Action, DecisionContext, Reason, decide
from policies.journal import Journal, write


@dataclass(frozen=True)
class Signature:
    """One co-owner's signature of its part of one version."""

    owner: str
    version: int
    document_hash: str
    datasets: tuple[str, ...]
    signed_at: dt.datetime
    current: bool  # signed on the agreement's current hash

    def as_json(self) -> dict[str, Any]:
        """The signature as JSON."""
        return {
            "owner": self.owner,
            "version": self.version,
            "document_hash": self.document_hash,
            "datasets": list(self.datasets),
            "signed_at": self.signed_at.isoformat(),
            "current": self.current,
        }


def signatures_in(conn: Connection, ag: Agreement) -> list[Signature]:
    """Every signature of ``ag``, oldest version first (``current`` marks those on its current hash)."""
    s = t.agreement_signatures.c
    rows = conn.execute(
        select(t.agreement_signatures).where(s.agreement_id == ag.id).order_by(s.version, s.owner)
    ).all()
    return [
        Signature(
            r.owner,
            r.version,
            r.document_hash,
            tuple(json.loads(r.datasets_json)),
            r.signed_at,
            r.document_hash == ag.document_hash and r.version == ag.version,
        )
        for r in rows
    ]


def unsigned_in(conn: Connection, ag: Agreement) -> list[str]:
    """The co-owners who have not signed the agreement's current version (empty for a single-owner agreement)."""
    if not ag.document.co_owners:
        return []
    signed = {sig.owner for sig in signatures_in(conn, ag) if sig.current}
    return [o for o in ag.document.co_owners if o not in signed]


def signatures(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> list[Signature]:
    """``GET /agreements/{id}/signatures``: whoever may read the agreement."""
    now = aware(now)
    ag = load_agreement(engine, agreement_id)
    _decide(engine, actor, Action.AGREEMENT_READ, ag, now)
    assert ag is not None
    with engine.connect() as conn:
        return signatures_in(conn, ag)


def _decide(engine: Engine, actor: Actor, action: Action, ag: Agreement | None, now: dt.datetime) -> None:
    """`decide` for an action on the agreement as a whole (as `policies.agreements.lifecycle.decide_on`, which
    imports this module)."""
    records = catalog_records(engine, ag.document.datasets) if ag else {}
    with engine.connect() as conn:
        orders = open_orders_in(conn, ag.id) if ag else ()
    decide(
        DecisionContext(
            actor=actor,
            action=action,
            now=now,
            agreement=ag,
            datasets=records,
            negative_list=neg.load(engine),
            orders=orders,
        )
    ).raise_if_denied()


def sign(
    engine: Engine,
    actor: Actor,
    agreement_id: str,
    *,
    document_hash: str,
    now: dt.datetime | None = None,
    journal: Journal | None = None,
) -> Signature:
    """``POST /agreements/{id}/sign`` (a co-owner): sign its part of the proposed version whose hash the co-owner
    read. ``INVALID_REQUEST`` (``agreement.version_mismatch``) when the agreement changed since; signing the same
    version twice is refused (``agreement.already_signed``). ``journal`` records the signature in its transaction."""
    now = aware(now)
    ag = load_agreement(engine, agreement_id)
    _decide(engine, actor, Action.AGREEMENT_SIGN, ag, now)
    assert ag is not None
    if document_hash != ag.document_hash:
        raise DomainError(
            INVALID_REQUEST, "the agreement changed since you read it", [Reason("agreement.version_mismatch").as_dict()]
        )
    with engine.connect() as conn:
        records = registry.get_many_in(conn, ag.document.datasets)
    part = tuple(ds for ds in ag.document.datasets if (rec := records.get(ds)) is not None and rec.owner == actor.name)
    try:
        with engine.begin() as conn:
            a = t.agreements.c  # the row locked (PostgreSQL) so an amendment cannot slip in before the insert
            cur = conn.execute(
                select(a.version, a.document_hash, a.state).where(a.id == agreement_id).with_for_update()
            ).first()
            if cur is None or (cur.version, cur.document_hash, cur.state) != (ag.version, ag.document_hash, ag.state):
                raise DomainError(
                    INVALID_REQUEST,
                    "the agreement changed since you read it",
                    [Reason("agreement.version_mismatch").as_dict()],
                )
            conn.execute(
                t.agreement_signatures.insert().values(
                    agreement_id=agreement_id,
                    owner=actor.name,
                    version=ag.version,
                    document_hash=ag.document_hash,
                    datasets_json=json.dumps(list(part)),
                    signed_at=now,
                )
            )
            write(conn, journal)
    except IntegrityError:
        raise DomainError(
            INVALID_REQUEST,
            "you have already signed this version",
            [{"reason": "agreement.already_signed", "message": "you have already signed this version"}],
        ) from None
    return Signature(actor.name, ag.version, ag.document_hash, part, now, True)


__all__ = ["Signature", "sign", "signatures", "signatures_in", "unsigned_in"]
