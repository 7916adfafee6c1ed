"""Agreements (授权运营协议): the document, its versions, and its lifecycle.

The document (`AgreementDocument`, pydantic, ``extra="forbid"``) is what the owner proposes: grantee, datasets
and columns, purposes, job kinds, validity window, (ε, δ) budget, minimum group size, quotas, approval mode,
exit clause, an optional price schedule and optional ``holders``: the principals, besides the owner, who may
contribute to the secure-aggregation rounds the grantee opens under it (`secagg_parties`; a round's participants
must be parties, never the grantee). ``holders`` is additive: a document without it (or with an empty list)
has the same canonical JSON and hash as before the field existed. Holder names are checked for form only — no
principal lookup — so naming them reveals nothing about which principals exist; the round opening refuses, with
one answer, a name that is not a usable participant. An agreement that allows ``code`` cannot grant a
``join_key`` column (``POLICY_DENIED``, `join_keys_for_code`). The document is normalised (lists sorted,
datetimes in UTC, numbers exact) so equal documents have equal canonical JSON and the same ``document_hash``.
Each amendment of a proposed agreement bumps ``version`` and is kept in ``agreement_versions``.

Lifecycle (stored states)::

    proposed --accept (grantee, inside the validity window)--> active
    active  --suspend (owner)--> suspended --resume (owner)--> active
    proposed | active | suspended --revoke (owner)--> revoked

``expired`` is *derived*: `effective_state` returns it whenever ``now >= valid_until`` (unless revoked), and
every decision uses the effective state. `record_expiry` persists ``expired_recorded`` once and returns True
only the first time, so the gateway writes exactly one audit entry. After revocation or expiry the exit
clause applies: with ``on_expiry = "seal_outputs"`` `outputs_sealed` is True and no result may be downloaded.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from sqlalchemy import Engine, or_, select, update

from catalog import registry
from catalog.columns import NAME_RE
from catalog.columns import Role as ColumnRole
from catalog.errors import (
    AGREEMENT_INACTIVE,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
    invalid,
)
from catalog.registry import Dataset
from policies import _tables as t
from policies import ledger
from policies import negative_list as neg
from policies._canonical import canonical_json, sha256_digest
from policies._clock import aware
from policies._exact import exact_str, parse_storable
from policies.actor import Actor, Role
from policies.budget import Budget
from policies.decision import Action, Decision, DecisionContext, Reason, decide, scope_reasons

GRANTEE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_HOLDERS = 1000
JOB_KINDS = ("code", "psi_members", "psi_size", "query", "score", "secagg", "train", "verify", "verify_anonymous")
JobKindName = Literal["query", "train", "code", "verify", "score", "secagg", "psi_size", "psi_members",
                      "verify_anonymous"]


class AgreementState(StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"  # derived, never stored


def _exact(v: Any) -> Fraction:
    return parse_storable(v)  # stored as canonical text and read back on every load


Exact = Annotated[
    Fraction,
    BeforeValidator(_exact),
    PlainSerializer(exact_str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class BudgetSpec(_Model):
    """The (ε, δ) allowance per dataset. Numbers are exact: 0.1 means 1/10."""

    epsilon: Exact
    delta: Exact = Fraction(0)

    @field_validator("delta")
    @classmethod
    def _delta_below_one(cls, v: Fraction) -> Fraction:
        if v >= 1:
            raise ValueError("delta must be smaller than 1")
        return v

    def as_budget(self) -> Budget:
        return Budget(self.epsilon, self.delta)


class Quotas(_Model):
    model_config = ConfigDict(strict=True)  # counts are JSON integers: true, "5" and 5.0 are refused

    calls_per_day: int = Field(10_000, ge=0, le=10**9)
    verify_per_subject_per_day: int = Field(3, ge=0, le=10**6)
    jobs_per_day: int = Field(100, ge=0, le=10**6)
    scores_per_day: int = Field(10_000, ge=0, le=10**9)
    # Cap on distinct verification parameter values per subject within the window (stops threshold search).
    distinct_params_per_subject: int = Field(3, ge=1, le=10**4)
    distinct_params_window_days: int = Field(30, ge=1, le=3660)


class ExitClause(_Model):
    on_expiry: Literal["seal_outputs", "keep_outputs"] = "seal_outputs"


class PriceSchedule(_Model):
    per_call: Exact = Fraction(0)
    per_job: Exact = Fraction(0)
    per_epsilon: Exact = Fraction(0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


def _sorted_unique(values: Iterable[str], what: str) -> tuple[str, ...]:
    items = tuple(values)
    if len(set(items)) != len(items):
        raise ValueError(f"{what} must not repeat")
    return tuple(sorted(items))


#: The scoring grant's defaults: decisions only, any layout (left out of the canonical JSON when unchanged).
SCORING_GRANT_DEFAULTS: dict[str, object] = {"score_logits": False, "score_layout": "any"}


class AgreementDocument(_Model):
    """An agreement as proposed by the data owner (docs/api.md, "Agreements": ``POST /agreements``)."""

    title: str = Field(min_length=1, max_length=200)
    grantee: str = Field(min_length=1, max_length=64)
    holders: tuple[str, ...] = Field(default=(), max_length=MAX_HOLDERS,
                                     description="principals besides the owner who may contribute to the grantee's "
                                                 "secure-aggregation rounds under this agreement")
    datasets: tuple[str, ...] = Field(min_length=1, max_length=32)
    columns: dict[str, tuple[str, ...]]
    purposes: tuple[str, ...] = Field(default=(), max_length=32)
    job_kinds: tuple[JobKindName, ...] = Field(min_length=1, max_length=len(JOB_KINDS))
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    budget: BudgetSpec
    min_group_units: int = Field(20, ge=1, le=1_000_000, strict=True)
    quotas: Quotas = Quotas()
    approval: Literal["owner_each_job", "auto_within_budget"] = "owner_each_job"
    exit: ExitClause = ExitClause()
    price: PriceSchedule | None = None
    # Encrypted scoring (job kind "score"): banks get decisions (the sign of score − their encrypted cut-off);
    # logits only where granted, and only in the granted layout(s).
    score_logits: bool = False
    score_layout: Literal["row", "columns", "any"] = "any"
    # Anonymous checks (job kind "verify_anonymous"): the fewest subjects a bucket may hold, when the agreement asks
    # for more than the service's setting (VEILBOX_ANON_MIN_BUCKET). Left out of the canonical JSON when unset.
    anon_min_bucket: int | None = Field(None, ge=2, le=1 << 20, strict=True)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("title must not be blank")
        return v

    @field_validator("grantee")
    @classmethod
    def _grantee(cls, v: str) -> str:
        if not GRANTEE_RE.match(v):
            raise ValueError("grantee must be a principal name")
        return v

    @field_validator("holders")
    @classmethod
    def _holders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not all(GRANTEE_RE.match(h) for h in v):
            raise ValueError("holders must be principal names")
        return _sorted_unique(v, "holders")

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not all(NAME_RE.match(d) for d in v):
            raise ValueError("dataset names must match ^[a-z][a-z0-9_]{0,62}$")
        return _sorted_unique(v, "datasets")

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        out = {}
        for ds, cols in sorted(v.items()):
            if not cols:
                raise ValueError("each dataset needs at least one column")
            if not all(NAME_RE.match(c) for c in cols):
                raise ValueError("column names must match ^[a-z][a-z0-9_]{0,62}$")
            out[ds] = _sorted_unique(cols, "columns of a dataset")
        return out

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not all(neg.PURPOSE_RE.match(p) for p in v):
            raise ValueError("purposes must match ^[a-z][a-z0-9_]{0,63}$")
        return _sorted_unique(v, "purposes")

    @field_validator("job_kinds")
    @classmethod
    def _job_kinds(cls, v: tuple[JobKindName, ...]) -> tuple[JobKindName, ...]:
        if len(set(v)) != len(v):
            raise ValueError("job_kinds must not repeat")
        return tuple(sorted(v))

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _utc(cls, v: dt.datetime) -> dt.datetime:
        return v.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _consistent(self) -> AgreementDocument:
        if set(self.columns) != set(self.datasets):
            raise ValueError("columns must list the shared columns of exactly the agreement's datasets")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.grantee in self.holders:
            raise ValueError("holders must not include the grantee (who opens rounds and never contributes)")
        return self

    @property
    def budget_total(self) -> Budget:
        return self.budget.as_budget()

    def as_json(self) -> dict[str, Any]:
        """JSON-able, exact (numbers as canonical text), normalised; ``holders`` only when there are any, and the
        scoring grant (``score_logits``, ``score_layout``) only when it differs from the default (so documents
        written before these fields existed keep their hash)."""
        out = self.model_dump(mode="json")
        if not out["holders"]:
            del out["holders"]
        for key, default in SCORING_GRANT_DEFAULTS.items():
            if out.get(key) == default:
                del out[key]
        if out.get("anon_min_bucket") is None:
            out.pop("anon_min_bucket", None)
        return out

    def canonical_json(self) -> str:
        return canonical_json(self.as_json())

    def digest(self) -> str:
        """``"sha256:<hex>"`` of the canonical JSON: what an acceptance is bound to."""
        return sha256_digest(self.canonical_json())


def parse_document(data: Mapping[str, Any]) -> AgreementDocument:
    """Validate a document; ``INVALID_REQUEST`` listing every problem (locations and messages, no values)."""
    try:
        return AgreementDocument.model_validate(data)
    except ValidationError as e:
        details = [
            {"reason": "document.invalid", "at": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in e.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise invalid("the agreement document is invalid", details) from None


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

    def effective_state(self, now: dt.datetime) -> AgreementState:
        return effective_state(self, now)

    def outputs_sealed(self, now: dt.datetime) -> bool:
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
    ended = effective_state(agreement, now) in (AgreementState.REVOKED, AgreementState.EXPIRED)
    return ended and agreement.document.exit.on_expiry == "seal_outputs"


# --- storage ----------------------------------------------------------------------------------------------


def _row_to_agreement(r: Any) -> Agreement:
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
    )


def load_agreement(engine: Engine, agreement_id: str) -> Agreement | None:
    """The stored agreement, without any authorization (for internal use and the gateway's own checks)."""
    with engine.connect() as conn:
        r = conn.execute(select(t.agreements).where(t.agreements.c.id == agreement_id)).first()
    return _row_to_agreement(r) if r else None


def catalog_records(engine: Engine, names: Iterable[str]) -> dict[str, Dataset | None]:
    """Catalog records by name (``None`` for unregistered). Call outside any write transaction."""
    return {n: registry.get(engine, n) for n in sorted(set(names))}


def _check_document(
    engine: Engine, actor: Actor, doc: AgreementDocument, now: dt.datetime
) -> None:
    """Owner-side validation of a proposal; raises the first applicable error class with every reason."""
    if actor.role is not Role.OWNER:
        raise DomainError(POLICY_DENIED, "only data owners propose agreements",
                          [Reason("role.not_allowed").as_dict()])
    records = catalog_records(engine, doc.datasets)
    not_found = [ds for ds, rec in records.items() if rec is None or rec.owner != actor.name]
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
    if doc.valid_until <= now:
        bad.append(Reason("agreement.ends_in_past"))
    if bad:
        raise invalid("the agreement document is invalid", [r.as_dict() for r in bad])
    policy = [r.as_dict() for r in scope_reasons(doc.datasets, doc.columns, doc.purposes, records, neg.load(engine))]
    policy += join_keys_for_code(doc, records)
    if policy:
        raise DomainError(POLICY_DENIED, "the agreement conflicts with rules no agreement can override", policy)


JOIN_KEY_FOR_CODE = "column.join_key_for_code"


def join_keys_for_code(doc: AgreementDocument, records: Mapping[str, Dataset | None]) -> list[dict[str, str]]:
    """A ``join_key`` column granted in an agreement that allows custom ``code``: refused (``POLICY_DENIED``).
    Custom code is not differentially private and reads every granted column row by row, so a join key — an
    identifier shared across datasets — would let its output link people to other data."""
    if "code" not in doc.job_kinds:
        return []
    out = []
    for ds, cols in doc.columns.items():
        rec = records.get(ds)
        for col in cols:
            info = rec.columns.get(col) if rec is not None else None
            if info is not None and info.role is ColumnRole.JOIN_KEY:
                out.append({"reason": JOIN_KEY_FOR_CODE, "dataset": ds, "column": col,
                            "message": "a join_key column cannot be granted to custom code"})
    return out


def _as_document(document: AgreementDocument | Mapping[str, Any]) -> AgreementDocument:
    return document if isinstance(document, AgreementDocument) else parse_document(document)


def create_agreement(
    engine: Engine, actor: Actor, document: AgreementDocument | Mapping[str, Any], *,
    now: dt.datetime | None = None,
) -> Agreement:
    """Propose an agreement (``POST /agreements``). The actor must be an owner and own every dataset.

    ``INVALID_REQUEST`` for a malformed document, unknown or unshareable columns, granting oneself or a window
    already over; ``NOT_FOUND_OR_FORBIDDEN`` for a dataset that is missing or not the actor's;
    ``POLICY_DENIED`` for core-grade datasets, negative-list hits, or personal data without a purpose.
    The budget accounts are opened in the same transaction.
    """
    now = aware(now)
    doc = _as_document(document)
    _check_document(engine, actor, doc, now)
    agreement_id = "agr_" + secrets.token_hex(10)
    doc_json, digest = doc.canonical_json(), doc.digest()
    with engine.begin() as conn:
        conn.execute(
            t.agreements.insert().values(
                id=agreement_id, owner=actor.name, grantee=doc.grantee, title=doc.title,
                state=AgreementState.PROPOSED.value, version=1, document_hash=digest, document_json=doc_json,
                valid_from=doc.valid_from, valid_until=doc.valid_until, created_at=now, updated_at=now,
                expired_recorded=False,
            )
        )
        conn.execute(t.agreement_versions.insert().values(
            agreement_id=agreement_id, version=1, document_hash=digest, document_json=doc_json, created_at=now))
        ledger.open_accounts(conn, agreement_id, doc.datasets, doc.budget_total, now)
    ag = load_agreement(engine, agreement_id)
    assert ag is not None
    return ag


def amend_agreement(
    engine: Engine, actor: Actor, agreement_id: str, document: AgreementDocument | Mapping[str, Any], *,
    now: dt.datetime | None = None,
) -> Agreement:
    """Replace the document of a *proposed* agreement (owner only): version + 1, new hash, fresh accounts."""
    now = aware(now)
    ag = load_agreement(engine, agreement_id)
    if ag is None or ag.owner != actor.name:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "agreement not found")
    doc = _as_document(document)
    if effective_state(ag, now) is not AgreementState.PROPOSED:
        raise DomainError(AGREEMENT_INACTIVE, "only a proposed agreement can be amended",
                          [Reason("agreement.already_active").as_dict()])
    if doc.grantee != ag.grantee:
        raise invalid("an amendment cannot change the grantee")
    _check_document(engine, actor, doc, now)
    doc_json, digest = doc.canonical_json(), doc.digest()
    with engine.begin() as conn:
        res = conn.execute(
            update(t.agreements)
            .where(t.agreements.c.id == agreement_id, t.agreements.c.state == "proposed",
                   t.agreements.c.version == ag.version)
            .values(version=ag.version + 1, document_hash=digest, document_json=doc_json, title=doc.title,
                    valid_from=doc.valid_from, valid_until=doc.valid_until, updated_at=now)
        )
        if res.rowcount != 1:
            raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently",
                              [Reason("agreement.version_mismatch").as_dict()])
        conn.execute(t.agreement_versions.insert().values(
            agreement_id=agreement_id, version=ag.version + 1, document_hash=digest, document_json=doc_json,
            created_at=now))
        ledger.replace_accounts(conn, agreement_id, doc.datasets, doc.budget_total, now)
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def decide_on(
    engine: Engine, actor: Actor, action: Action, agreement: Agreement | None, now: dt.datetime,
) -> Decision:
    """`decide` for an action on the agreement as a whole (no datasets/columns of a request)."""
    records = catalog_records(engine, agreement.document.datasets) if agreement else {}
    return decide(DecisionContext(actor=actor, action=action, now=now, agreement=agreement,
                                  datasets=records, negative_list=neg.load(engine)))


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
    """``GET /agreements``: regulators see all; others the agreements they own or are granted. ``state``
    filters on the effective state."""
    now = aware(now)
    a = t.agreements.c
    q = select(t.agreements).order_by(a.created_at, a.id)
    if actor.role is not Role.REGULATOR:
        q = q.where(or_(a.owner == actor.name, a.grantee == actor.name))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = [_row_to_agreement(r) for r in rows]
    if state is not None:
        out = [ag for ag in out if effective_state(ag, now).value == state]
    return out


def _transition(
    engine: Engine, actor: Actor, agreement_id: str, action: Action, to_state: AgreementState,
    now: dt.datetime, stamp: str | None, document_hash: str | None = None,
) -> Agreement:
    ag = load_agreement(engine, agreement_id)
    decide_on(engine, actor, action, ag, now).raise_if_denied()
    assert ag is not None
    if document_hash is not None and document_hash != ag.document_hash:
        raise DomainError(INVALID_REQUEST, "the agreement changed since you read it",
                          [Reason("agreement.version_mismatch").as_dict()])
    values: dict[str, Any] = {"state": to_state.value, "updated_at": now}
    if stamp:
        values[stamp] = now
    a = t.agreements.c
    guard = [a.id == agreement_id, a.state == ag.state.value, a.version == ag.version]
    if to_state is not AgreementState.REVOKED:
        guard.append(a.valid_until > now)  # never (re)activate past the window, even if it ends right now
    with engine.begin() as conn:
        res = conn.execute(update(t.agreements).where(*guard).values(**values))
    if res.rowcount != 1:
        raise DomainError(AGREEMENT_INACTIVE, "the agreement changed concurrently; read it again",
                          [Reason("agreement.version_mismatch").as_dict()])
    out = load_agreement(engine, agreement_id)
    assert out is not None
    return out


def accept(
    engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None,
    document_hash: str | None = None,
) -> Agreement:
    """``POST /agreements/{id}/accept`` (grantee): proposed → active, only inside the validity window.
    With ``document_hash`` the acceptance is bound to the exact version the grantee read."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_ACCEPT, AgreementState.ACTIVE, aware(now),
                       "accepted_at", document_hash)


def suspend(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> Agreement:
    """``POST /agreements/{id}/suspend`` (owner): active → suspended."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_SUSPEND, AgreementState.SUSPENDED,
                       aware(now), "suspended_at")


def resume(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> Agreement:
    """``POST /agreements/{id}/resume`` (owner): suspended → active (not once expired)."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_RESUME, AgreementState.ACTIVE, aware(now),
                       None)


def revoke(engine: Engine, actor: Actor, agreement_id: str, *, now: dt.datetime | None = None) -> Agreement:
    """``POST /agreements/{id}/revoke`` (owner): proposed | active | suspended → revoked (final). The exit
    clause applies from now on."""
    return _transition(engine, actor, agreement_id, Action.AGREEMENT_REVOKE, AgreementState.REVOKED, aware(now),
                       "revoked_at")


def record_expiry(engine: Engine, agreement_id: str, *, now: dt.datetime | None = None) -> bool:
    """Persist that the agreement has expired; True only the *first* time (write one audit entry then).
    Revoked agreements are never recorded as expired (their exit already applied)."""
    now = aware(now)
    a = t.agreements.c
    with engine.begin() as conn:
        res = conn.execute(
            update(t.agreements)
            .where(a.id == agreement_id, a.expired_recorded.is_(False), a.state != "revoked", a.valid_until <= now)
            .values(expired_recorded=True, expired_recorded_at=now, updated_at=now)
        )
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
