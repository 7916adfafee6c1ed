"""The agreement document (授权运营协议): its fields, their validation and its canonical hash.

`AgreementDocument` (pydantic, ``extra="forbid"``) is what the owner proposes: grantee, datasets and columns,
purposes, job kinds, validity window, (ε, δ) budget, minimum group size, quotas, approval mode, exit clause, an
optional price schedule and optional ``holders``: the principals, besides the owner, who may contribute to the
secure-aggregation rounds the grantee opens under it (`policies.agreements.record.secagg_parties`; a round's
participants must be parties, never the grantee). ``holders`` is additive: a document without it (or with an
empty list) has the same canonical JSON and hash as before the field existed. Holder names are checked for form
only — no principal lookup — so naming them reveals nothing about which principals exist; the round opening
refuses, with one answer, a name that is not a usable participant. An agreement that allows ``code`` cannot grant
a ``join_key`` column (``POLICY_DENIED``, `join_keys_for_code`). Revenue (收益分成, docs/revenue.md): the price
schedule also prices scores and checks (``per_score``, ``per_check``), ``revenue`` (`RevenueTerms`) says whether
the agreement is commercial or public-welfare and how charges are split among the data-source owners (fixed
``shares`` summing exactly to 1, or measured by rows or ε), and ``co_owners`` names the other owners whose
datasets a multi-owner agreement lists (each signs its part, `policies.agreements.signing`); all three are left
out of the canonical JSON at their defaults, so existing documents keep their hash. The document is normalised
(lists sorted, datetimes in UTC, numbers exact) so equal documents have equal canonical JSON and the same
``document_hash`` (`AgreementDocument.digest`).

The stored agreement is `policies.agreements.record`; proposing, amending and the state transitions are
`policies.agreements.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
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

from catalog.columns import NAME_RE
from catalog.columns import Role as ColumnRole
from catalog.errors import invalid
from catalog.fingerprint import HashAlg
from catalog.registry import Dataset
from policies import negative_list as neg
from policies._canonical import canonical_json, text_digest
from policies._exact import exact_str, parse_storable
from policies.agreements.sections import (
    DOCUMENT_VERSION,
    DerivedOwnership,
    FeedbackDuty,
    Responsibilities,
    section_texts,
)
from policies.budget import Budget

GRANTEE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_HOLDERS = 1000
JOB_KINDS = ("code", "psi_members", "psi_size", "query", "score", "secagg", "train", "verify", "verify_anonymous")
JobKindName = Literal["query", "train", "code", "verify", "score", "secagg", "psi_size", "psi_members",
                      "verify_anonymous"]



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
        """The allowance as an exact `Budget`."""
        return Budget(self.epsilon, self.delta)


class Quotas(_Model):
    """Per-agreement metering limits (calls, checks per subject, jobs, scores, distinct check parameters)."""

    model_config = ConfigDict(strict=True)  # counts are JSON integers: true, "5" and 5.0 are refused

    calls_per_day: int = Field(10_000, ge=0, le=10**9)
    verify_per_subject_per_day: int = Field(3, ge=0, le=10**6)
    jobs_per_day: int = Field(100, ge=0, le=10**6)
    scores_per_day: int = Field(10_000, ge=0, le=10**9)
    # Cap on distinct verification parameter values per subject within the window (stops threshold search).
    distinct_params_per_subject: int = Field(3, ge=1, le=10**4)
    distinct_params_window_days: int = Field(30, ge=1, le=3660)


ExitCase = Literal["revoked", "expired"]


class ExitClause(_Model):
    """What happens when the agreement ends (协议期满后数据的处置, docs/agreements.md "Disposal").

    ``cases``: the ends the clause applies to (``revoked``, ``expired``; both by default). ``outputs``: the
    disposal of released outputs — ``seal`` (kept, never downloadable again), ``delete`` (the stored result and any
    output awaiting release erased; their fingerprints stay in the signed disposal record) or ``keep``; absent, it
    follows the older ``on_expiry`` (``seal_outputs`` → ``seal``, ``keep_outputs`` → ``keep``). There is no
    ``anonymise``: released outputs are already aggregates, models or verdicts without records of persons, and the
    link to the grantee is the agreement itself, which the audit log must keep. ``models``: ``revoke`` (the
    certificates of models trained under the agreement are revoked: no scoring with them) or ``retain``.
    ``outputs``, ``models`` and ``cases`` are left out of the canonical JSON at their defaults, so documents
    written before they existed keep their hash."""

    on_expiry: Literal["seal_outputs", "keep_outputs"] = "seal_outputs"
    outputs: Literal["seal", "delete", "keep"] | None = None
    models: Literal["revoke", "retain"] = "revoke"
    cases: tuple[ExitCase, ...] = ("revoked", "expired")

    @field_validator("cases")
    @classmethod
    def _cases(cls, v: tuple[ExitCase, ...]) -> tuple[ExitCase, ...]:
        if len(set(v)) != len(v):
            raise ValueError("exit cases must not repeat")
        return tuple(c for c in ("revoked", "expired") if c in v)

    @property
    def output_disposal(self) -> Literal["seal", "delete", "keep"]:
        """How released outputs are disposed of (``outputs``, else what ``on_expiry`` says)."""
        if self.outputs is not None:
            return self.outputs
        return "seal" if self.on_expiry == "seal_outputs" else "keep"

    def applies_to(self, case: str) -> bool:
        """Whether the clause disposes of outputs and models when the agreement ends this way."""
        return case in self.cases


#: Exit-clause keys added after the first documents, with their defaults: omitted from the canonical JSON then.
EXIT_ADDED_DEFAULTS: dict[str, Any] = {"outputs": None, "models": "revoke", "cases": ["revoked", "expired"]}


class PriceSchedule(_Model):
    """Optional prices per call, per job, per unit of ε, per encrypted score and per check, in one ISO 4217
    currency (docs/revenue.md). ``per_score`` and ``per_check`` are left out of the canonical JSON when zero, so
    schedules written before they existed keep their hash."""

    per_call: Exact = Fraction(0)
    per_job: Exact = Fraction(0)
    per_epsilon: Exact = Fraction(0)
    per_score: Exact = Fraction(0)
    per_check: Exact = Fraction(0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


#: Price keys added after the first schedules: omitted from the canonical JSON when zero.
PRICE_ADDED_KEYS = ("per_score", "per_check")


class RevenueTerms(_Model):
    """How the agreement's charges are split among its data-source owners (收益分成, docs/revenue.md).

    ``category``: ``commercial`` charges by the price schedule; ``public_welfare`` (公益) charges nothing, usage
    is still metered and stated. ``split``: ``shares`` (fixed fractions per owner principal, summing exactly to 1),
    ``rows`` (in proportion to the rows of each owner's datasets read by the month's jobs) or ``epsilon`` (in
    proportion to the ε drawn from each owner's datasets)."""

    category: Literal["commercial", "public_welfare"] = "commercial"
    split: Literal["shares", "rows", "epsilon"] = "shares"
    shares: dict[str, Exact] = Field(default_factory=dict, max_length=32)

    @field_validator("shares")
    @classmethod
    def _share_names(cls, v: dict[str, Fraction]) -> dict[str, Fraction]:
        if not all(GRANTEE_RE.match(k) for k in v):
            raise ValueError("shares must be keyed by owner principal names")
        return dict(sorted(v.items()))

    @model_validator(mode="after")
    def _shares_sum(self) -> RevenueTerms:
        if self.split == "shares":
            if not self.shares or sum(self.shares.values(), Fraction(0)) != 1:
                raise ValueError("shares must sum exactly to 1 when split is shares")
        elif self.shares:
            raise ValueError("shares are given only when split is shares")
        return self


def _sorted_unique(values: Iterable[str], what: str) -> tuple[str, ...]:
    items = tuple(values)
    if len(set(items)) != len(items):
        raise ValueError(f"{what} must not repeat")
    return tuple(sorted(items))


#: The contractual sections' unset values (policies.agreements.sections): left out of the canonical JSON.
SECTION_DEFAULTS: dict[str, object] = {"document_version": 1, "conditions": [], "responsibilities": None,
                                       "exit_cases": [], "derived": None, "feedback": None}

#: The scoring grant's defaults: decisions only, any layout (left out of the canonical JSON when unchanged).
SCORING_GRANT_DEFAULTS: dict[str, object] = {"score_logits": False, "score_layout": "any"}


class AgreementDocument(_Model):
    """An agreement as proposed by the data owner (docs/api.md, "Agreements": ``POST /agreements``)."""

    title: str = Field(min_length=1, max_length=200)
    grantee: str = Field(min_length=1, max_length=64)
    holders: tuple[str, ...] = Field(default=(), max_length=MAX_HOLDERS,
                                     description="principals besides the owner who may contribute to the grantee's "
                                                 "secure-aggregation rounds under this agreement")
    # Multi-owner agreements: the owners, besides the proposer, whose datasets are listed; each signs its part
    # before the grantee may accept (`policies.agreements.signing`). Left out of the canonical JSON when empty.
    co_owners: tuple[str, ...] = Field(default=(), max_length=31)
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
    # Revenue split among the data-source owners (收益分成); left out of the canonical JSON when unset.
    revenue: RevenueTerms | None = None
    # Encrypted scoring (job kind "score"): banks get decisions (the sign of score − their encrypted cut-off);
    # logits only where granted, and only in the granted layout(s).
    score_logits: bool = False
    score_layout: Literal["row", "columns", "any"] = "any"
    # Anonymous checks (job kind "verify_anonymous"): the fewest subjects a bucket may hold, when the agreement asks
    # for more than the service's setting (VEILBOX_ANON_MIN_BUCKET). Left out of the canonical JSON when unset.
    anon_min_bucket: int | None = Field(None, ge=2, le=1 << 20, strict=True)
    # The contractual sections (policies.agreements.sections, docs/agreements.md): each left out of the canonical
    # JSON while unset, so documents written before them keep their hash; filing (备案) requires them.
    document_version: int = Field(1, ge=1, le=DOCUMENT_VERSION, strict=True,
                                  description="the document schema version (1 when absent)")
    conditions: tuple[str, ...] = Field(default=(), max_length=32, description="授权条件: the grant's conditions")
    responsibilities: Responsibilities | None = Field(
        None, description="谁授权谁负责、谁运营谁负责、谁使用谁负责: each party's responsibility and security measures")
    exit_cases: tuple[str, ...] = Field(default=(), max_length=32,
                                        description="退出情形: the cases in which the grant ends early")
    derived: DerivedOwnership | None = Field(None, description="衍生数据和模型的归属: who owns derived data and models")
    feedback: FeedbackDuty | None = Field(None, description="使用反馈义务: the grantee's usage-feedback duty")

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

    @field_validator("co_owners")
    @classmethod
    def _co_owners(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not all(GRANTEE_RE.match(h) for h in v):
            raise ValueError("co_owners must be principal names")
        return _sorted_unique(v, "co_owners")

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

    @field_validator("conditions", "exit_cases")
    @classmethod
    def _section_texts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return section_texts(v, "the listed items")

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
        if self.grantee in self.co_owners:
            raise ValueError("co_owners must not include the grantee")
        if self.grantee in self.holders:
            raise ValueError("holders must not include the grantee (who opens rounds and never contributes)")
        return self

    @property
    def budget_total(self) -> Budget:
        """The (ε, δ) allowance per dataset as an exact `Budget`."""
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
        for key, unset in SECTION_DEFAULTS.items():
            if out.get(key) == unset:
                out.pop(key, None)
        if isinstance(out.get("price"), dict):
            for key in PRICE_ADDED_KEYS:
                if Fraction(out["price"].get(key, "0")) == 0:
                    out["price"].pop(key, None)
        if out.get("revenue") is None:
            out.pop("revenue", None)
        if not out.get("co_owners"):
            out.pop("co_owners", None)
        for key, default in EXIT_ADDED_DEFAULTS.items():
            if out["exit"].get(key) == default:
                out["exit"].pop(key, None)
        return out

    def canonical_json(self) -> str:
        """The canonical JSON text of `as_json` (what the hash covers and the store keeps)."""
        return canonical_json(self.as_json())

    def digest(self, hash_alg: HashAlg = "sha256") -> str:
        """``"<alg>:<hex>"`` of the canonical JSON with the home suite's hash (``sha256:`` intl, ``sm3:`` sm): what
        an acceptance is bound to."""
        return text_digest(self.canonical_json(), hash_alg)


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
