"""The stored agreement (`Agreement`), its effective state and what follows from it.

Stored states and the transitions between them are made by `policies.agreements.lifecycle`::

    proposed --accept (grantee, inside the validity window)--> active          (filing not required)
    proposed --accept--> accepted --submit (owner)--> under_review             (filing required, 备案)
    under_review --file (authority, number issued)--> filed --activate (owner)--> active
    under_review --refuse (authority, with reasons)--> returned --submit | amend (owner)--> under_review | proposed
    active  --suspend (owner or authority)--> suspended --resume (whoever suspended)--> active
    any but revoked --revoke (owner)--> revoked

(docs/agreements.md; the filing transitions are `policies.agreements.filing`).

``expired`` is *derived*: `effective_state` returns it whenever ``now >= valid_until`` (unless revoked), and
every decision uses the effective state. After revocation or expiry the exit clause applies: when it seals or
deletes outputs (`ExitClause.output_disposal`, for the listed ``cases``) `outputs_sealed` is True and no result
may be downloaded (the disposal itself: `policies.disposal`). `secagg_parties` names who may contribute to the
grantee's secure-aggregation rounds. `load_agreement` reads a record without any authorization (the decision
table, `policies.decision`, authorizes).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from catalog import registry
from catalog.registry import Dataset
from policies import _tables as t
from policies._clock import aware
from policies.agreements.document import AgreementDocument
from vocab.states import AgreementState


@dataclass(frozen=True)
class Agreement:
    """A stored agreement. ``state`` is the stored state; use `effective_state` for decisions."""

    id: str
    owner: str
    grantee: str
    state: AgreementState
    version: int
    document_hash: str
    document: AgreementDocument
    created_at: dt.datetime
    updated_at: dt.datetime
    accepted_at: dt.datetime | None
    suspended_at: dt.datetime | None
    revoked_at: dt.datetime | None
    expired_recorded: bool
    expired_recorded_at: dt.datetime | None
    filing_required: bool = False
    filing_number: str | None = None
    filed_at: dt.datetime | None = None
    suspended_by: str | None = None  # "owner" or "authority" while suspended
    # the named reviewers (专家委员会, 网信) whose approval filing needs: name → kind (`policies.agreements.filing`)
    reviewers: Mapping[str, str] = field(default_factory=dict)

    def effective_state(self, now: dt.datetime) -> AgreementState:
        """The state every access enforces at ``now`` (see `effective_state`)."""
        return effective_state(self, now)

    def outputs_sealed(self, now: dt.datetime) -> bool:
        """True when results may no longer be downloaded at ``now`` (see `outputs_sealed`)."""
        return outputs_sealed(self, now)

    def public(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The API view (``GET /agreements/{id}``)."""
        now = aware(now)

        def iso(x: dt.datetime | None) -> str | None:
            return x.isoformat() if x else None

        return {
            "id": self.id,
            "state": self.effective_state(now).value,
            "version": self.version,
            "document_hash": self.document_hash,
            "owner": self.owner,
            **self.document.as_json(),
            "created_at": iso(self.created_at),
            "accepted_at": iso(self.accepted_at),
            "suspended_at": iso(self.suspended_at),
            "revoked_at": iso(self.revoked_at),
            "outputs_sealed": self.outputs_sealed(now),
            "filing_required": self.filing_required,
            "filing_number": self.filing_number,
            "filed_at": iso(self.filed_at),
            "suspended_by": self.suspended_by,
            "reviewers": dict(self.reviewers),
        }


def effective_state(agreement: Agreement, now: dt.datetime) -> AgreementState:
    """The state every access enforces: the stored state, or ``expired`` once ``valid_until`` has passed
    (revocation wins over expiry)."""
    now = aware(now)
    if agreement.state is AgreementState.REVOKED:
        return AgreementState.REVOKED
    if now >= agreement.document.valid_until:
        return AgreementState.EXPIRED
    return agreement.state


def secagg_parties(agreement: Agreement) -> frozenset[str]:
    """Who may be a participant of a secure-aggregation round under ``agreement``: its owner and its ``holders``
    (never the grantee, who opens the rounds and receives the sums)."""
    return frozenset({agreement.owner, *agreement.document.holders}) - {agreement.grantee}


def outputs_sealed(agreement: Agreement, now: dt.datetime) -> bool:
    """True when the agreement has ended (revoked or expired) and its exit clause seals outputs: the gateway
    must refuse every result download."""
    state = effective_state(agreement, now)
    ended = state in (AgreementState.REVOKED, AgreementState.EXPIRED)
    clause = agreement.document.exit
    return ended and clause.applies_to(state.value) and clause.output_disposal in ("seal", "delete")



def agreement_from_row(r: Any) -> Agreement:
    """The `Agreement` an ``agreements`` table row stores (the document re-validated on every load)."""
    return Agreement(
        id=r.id,
        owner=r.owner,
        grantee=r.grantee,
        state=AgreementState(r.state),
        version=r.version,
        document_hash=r.document_hash,
        document=AgreementDocument.model_validate(json.loads(r.document_json)),
        created_at=r.created_at,
        updated_at=r.updated_at,
        accepted_at=r.accepted_at,
        suspended_at=r.suspended_at,
        revoked_at=r.revoked_at,
        expired_recorded=bool(r.expired_recorded),
        expired_recorded_at=r.expired_recorded_at,
        filing_required=bool(r.filing_required),
        filing_number=r.filing_number,
        filed_at=r.filed_at,
        suspended_by=r.suspended_by,
        reviewers=json.loads(r.reviewers_json) if getattr(r, "reviewers_json", None) else {},
    )


def load_agreement(engine: Engine, agreement_id: str) -> Agreement | None:
    """The stored agreement, without any authorization (for internal use and the gateway's own checks)."""
    with engine.connect() as conn:
        return load_agreement_in(conn, agreement_id)


def load_agreement_in(conn: Connection, agreement_id: str) -> Agreement | None:
    """`load_agreement` within ``conn``'s transaction."""
    r = conn.execute(_AGREEMENT_BY_ID, {"b_agreement": agreement_id}).first()
    return agreement_from_row(r) if r else None


# statements built once, the ids bound (a decision's reads build no expression trees per call)
_AGREEMENT_BY_ID = select(t.agreements).where(t.agreements.c.id == bindparam("b_agreement"))
_O = t.rectification_orders.c
_OPEN_ORDERS = (select(_O.id, _O.deadline, _O.text)
                .where(_O.agreement_id == bindparam("b_agreement"), _O.closed_at.is_(None))
                .order_by(_O.opened_at, _O.id))


def catalog_records(engine: Engine, names: Iterable[str]) -> dict[str, Dataset | None]:
    """Catalog records by name (``None`` for unregistered). Call outside any write transaction."""
    with engine.connect() as conn:
        return registry.get_many_in(conn, names)


def order_notice(order_id: str, deadline: dt.datetime, text: str) -> str:
    """What every refusal under an agreement says while one of its rectification orders (整改) is open."""
    return f"rectification order (整改) {order_id}, due {deadline.date().isoformat()}: {text}"


def open_orders_in(conn: Connection, agreement_id: str) -> tuple[str, ...]:
    """The notices of the agreement's open rectification orders, oldest first (`policies.agreements.filing`)."""
    rows = conn.execute(_OPEN_ORDERS, {"b_agreement": agreement_id}).all()
    return tuple(order_notice(r.id, r.deadline, r.text) for r in rows)
