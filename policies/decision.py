"""Decisions: ``decide(ctx) -> Decision(allow, reasons)`` — pure, total, and it reports *every* reason.

`decide` reads nothing from storage: the caller (`policies.access.authorize`, the lifecycle and job functions)
loads the agreement, the catalog records, the negative list, a quota snapshot and the remaining budgets into a
`DecisionContext`. The table `RULES` says, for each `Action`, which parties may take it (the agreement's
owner, its co-owners — the other owners whose datasets it lists, who sign their parts and read it —, its grantee,
any regulator), with which roles, in which effective agreement states, and whether the
agreement's scope, the quotas and the budget are consulted.

A denied decision maps to one `DomainError` (`Decision.error`), by precedence:

1. ``NOT_FOUND_OR_FORBIDDEN`` when the agreement does not exist or the actor is no party to it (neither the
   owner, the grantee, a regulator nor the data authority) — such callers must not learn that it exists, so no details;
2. ``AGREEMENT_INACTIVE`` for any state reason (expired, revoked, suspended, not yet active, sealed outputs);
3. ``BUDGET_EXHAUSTED``; 4. ``QUOTA_EXCEEDED``; 5. ``POLICY_DENIED`` for everything else.

Details carry every reason as ``{"reason", "message", "dataset"?, "column"?, "purpose"?}``: names from the
declarations and the agreement, never data values; then one ``{"reason": "rectification.open", "message"}`` per
open rectification order (整改) of the agreement (its deadline and text), on every refusal a party sees.

Quota and budget reasons here come from snapshots; the authoritative checks are the atomic ones in
`policies.quotas` (conditional increments) and `policies.ledger` (check-then-debit in one transaction).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from catalog.errors import (
    AGREEMENT_INACTIVE,
    BUDGET_EXHAUSTED,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    QUOTA_EXCEEDED,
    DomainError,
)
from catalog.registry import Dataset
from policies import grades
from policies.actor import ANALYSTS, Actor, Role
from policies.agreements.document import Quotas
from policies.agreements.record import Agreement
from policies.budget import Budget
from policies.negative_list import PURPOSE_RE, NegativeList
from vocab.jobs import JOB_KINDS, JobKind
from vocab.roles import Party
from vocab.states import AgreementState


class Action(StrEnum):
    """Everything a party may ask to do under an agreement; `RULES` says who may, when, and what it meters."""

    AGREEMENT_READ = "agreement.read"
    AGREEMENT_ACCEPT = "agreement.accept"
    AGREEMENT_SUSPEND = "agreement.suspend"
    AGREEMENT_RESUME = "agreement.resume"
    AGREEMENT_REVOKE = "agreement.revoke"
    # a co-owner of a multi-owner agreement signs its part (`policies.agreements.signing`)
    AGREEMENT_SIGN = "agreement.sign"
    # filing (备案, docs/agreements.md): the owner submits, the authority files or refuses, the owner activates
    AGREEMENT_SUBMIT = "agreement.submit"
    AGREEMENT_FILE = "agreement.file"
    AGREEMENT_REFUSE = "agreement.refuse"
    AGREEMENT_ACTIVATE = "agreement.activate"
    # the data authority's own suspension (lifted only by the authority) and rectification orders (整改)
    AUTHORITY_SUSPEND = "authority.suspend"
    AUTHORITY_RESUME = "authority.resume"
    ORDER_ISSUE = "order.issue"
    ORDER_CLOSE = "order.close"
    # named reviewers (专家委员会, 网信): the authority names them, each signs off on the version under review
    AGREEMENT_REVIEWERS = "agreement.reviewers"
    AGREEMENT_REVIEW = "agreement.review"
    QUERY_PREVIEW = "query.preview"
    QUERY_RUN = "query.run"
    JOB_SUBMIT = "job.submit"
    JOB_READ = "job.read"
    JOB_APPROVE = "job.approve"
    JOB_REJECT = "job.reject"
    JOB_CANCEL = "job.cancel"
    JOB_RESULT = "job.result"
    VERIFY_CHECK = "verify.check"
    VERIFY_ANONYMOUS = "verify.anonymous"
    PSI_SIZE = "psi.size"
    PSI_MEMBERS = "psi.members"
    MODEL_SCORE = "model.score"
    SECAGG_AGGREGATE = "secagg.aggregate"
    USAGE_READ = "usage.read"
    BUDGET_READ = "budget.read"


# Effective agreement states (stored states plus the derived "expired").
_AS = AgreementState
PROPOSED, ACTIVE, SUSPENDED, REVOKED, EXPIRED = _AS.PROPOSED, _AS.ACTIVE, _AS.SUSPENDED, _AS.REVOKED, _AS.EXPIRED
ACCEPTED, UNDER_REVIEW, RETURNED, FILED = _AS.ACCEPTED, _AS.UNDER_REVIEW, _AS.RETURNED, _AS.FILED
ALL_STATES = frozenset(AgreementState)

OWNER, GRANTEE, REGULATOR, AUTHORITY = Party.OWNER, Party.GRANTEE, Party.REGULATOR, Party.AUTHORITY
CO_OWNER = Party.CO_OWNER
REVIEWER = Party.REVIEWER  # a named reviewer: a party only while the agreement it was assigned is under review
_READERS = frozenset({OWNER, CO_OWNER, GRANTEE, REGULATOR, AUTHORITY})

# Meters (see policies.quotas): "call" per data-plane request, "job" per job, "score" per HE scoring call,
# "verify" per (subject, day), "param" distinct parameter values per subject per window.
CALL, JOB, SCORE, VERIFY, PARAM = "call", "job", "score", "verify", "param"


@dataclass(frozen=True)
class Rule:
    """One action's row of `RULES`: parties, grantee roles and states allowed, and what `decide` consults."""

    parties: frozenset[str]
    states: frozenset[str]
    grantee_roles: frozenset[Role] = ANALYSTS
    scope: bool = False  # the agreement's scope and the request's datasets/columns/purpose are checked
    job_kind: str | None = None  # the job kind the action needs ("*" = the context's job_kind)
    meters: tuple[str, ...] = ()
    spends: bool = False


_ACTIVE = frozenset({ACTIVE})
_GRANTEE = frozenset({GRANTEE})
_OWNER = frozenset({OWNER})
_AUTHORITY = frozenset({AUTHORITY})
_BANK = frozenset({Role.BANK})


def _needs(kind: JobKind) -> JobKind:
    """The agreement permission (an entry of its ``job_kinds``) a kind of computation needs (`vocab.jobs`)."""
    return JOB_KINDS[kind].permission


RULES: Mapping[Action, Rule] = {
    Action.AGREEMENT_READ: Rule(_READERS | {REVIEWER}, ALL_STATES),
    Action.AGREEMENT_ACCEPT: Rule(_GRANTEE, frozenset({PROPOSED}), scope=True),
    Action.AGREEMENT_SIGN: Rule(frozenset({CO_OWNER}), frozenset({PROPOSED})),
    Action.AGREEMENT_SUSPEND: Rule(_OWNER, _ACTIVE),
    Action.AGREEMENT_RESUME: Rule(_OWNER, frozenset({SUSPENDED}), scope=True),
    Action.AGREEMENT_REVOKE: Rule(_OWNER, frozenset({PROPOSED, ACCEPTED, UNDER_REVIEW, RETURNED, FILED, ACTIVE,
                                                     SUSPENDED})),
    Action.AGREEMENT_SUBMIT: Rule(_OWNER, frozenset({ACCEPTED, RETURNED}), scope=True),
    Action.AGREEMENT_FILE: Rule(_AUTHORITY, frozenset({UNDER_REVIEW}), scope=True),
    Action.AGREEMENT_REFUSE: Rule(_AUTHORITY, frozenset({UNDER_REVIEW})),
    Action.AGREEMENT_ACTIVATE: Rule(_OWNER, frozenset({FILED}), scope=True),
    Action.AUTHORITY_SUSPEND: Rule(_AUTHORITY, frozenset({ACTIVE, SUSPENDED})),
    Action.AUTHORITY_RESUME: Rule(_AUTHORITY, frozenset({SUSPENDED}), scope=True),
    Action.ORDER_ISSUE: Rule(_AUTHORITY, ALL_STATES - {REVOKED, EXPIRED}),
    Action.ORDER_CLOSE: Rule(_AUTHORITY, ALL_STATES),
    Action.AGREEMENT_REVIEWERS: Rule(_AUTHORITY, frozenset({UNDER_REVIEW})),
    Action.AGREEMENT_REVIEW: Rule(frozenset({REVIEWER}), frozenset({UNDER_REVIEW})),
    Action.QUERY_PREVIEW: Rule(_GRANTEE, _ACTIVE, scope=True, job_kind=_needs(JobKind.QUERY), meters=(CALL,)),
    Action.QUERY_RUN: Rule(_GRANTEE, _ACTIVE, scope=True, job_kind=_needs(JobKind.QUERY), meters=(CALL, JOB),
                            spends=True),
    Action.JOB_SUBMIT: Rule(_GRANTEE, _ACTIVE, scope=True, job_kind="*", meters=(CALL, JOB), spends=True),
    Action.JOB_READ: Rule(_READERS, ALL_STATES),
    Action.JOB_APPROVE: Rule(_OWNER, _ACTIVE, scope=True, job_kind="*", spends=True),
    Action.JOB_REJECT: Rule(_OWNER, ALL_STATES),
    Action.JOB_CANCEL: Rule(frozenset({OWNER, GRANTEE}), ALL_STATES),
    # After revocation/expiry results stay downloadable only under exit.on_expiry = "keep_outputs".
    Action.JOB_RESULT: Rule(_GRANTEE, frozenset({ACTIVE, EXPIRED, REVOKED})),
    Action.VERIFY_CHECK: Rule(
        _GRANTEE, _ACTIVE, grantee_roles=_BANK, scope=True, job_kind=_needs(JobKind.VERIFY),
        meters=(CALL, VERIFY, PARAM),
    ),
    # Anonymous checks meter per bucket: the subject hash is the bucket's (gateway.routes.psi).
    Action.VERIFY_ANONYMOUS: Rule(_GRANTEE, _ACTIVE, grantee_roles=_BANK, scope=True,
                                  job_kind=_needs(JobKind.VERIFY_ANONYMOUS), meters=(CALL, VERIFY, PARAM)),
    Action.PSI_SIZE: Rule(_GRANTEE, _ACTIVE, grantee_roles=_BANK, scope=True,
                          job_kind=_needs(JobKind.PSI_SIZE), meters=(CALL, JOB), spends=True),
    Action.PSI_MEMBERS: Rule(_GRANTEE, _ACTIVE, grantee_roles=_BANK, scope=True,
                             job_kind=_needs(JobKind.PSI_MEMBERS), meters=(CALL, JOB)),
    Action.MODEL_SCORE: Rule(_GRANTEE, _ACTIVE, grantee_roles=_BANK, scope=True,
                             job_kind=_needs(JobKind.SCORE), meters=(CALL, SCORE)),
    # Opening a secure-aggregation round and releasing its sum (federated training rounds need "train").
    Action.SECAGG_AGGREGATE: Rule(_GRANTEE, _ACTIVE, grantee_roles=frozenset({Role.OPERATOR}), scope=True,
                                  job_kind=_needs(JobKind.SECAGG), meters=(CALL,)),
    Action.USAGE_READ: Rule(_READERS, ALL_STATES),
    Action.BUDGET_READ: Rule(_READERS, ALL_STATES),
}

MESSAGES: Mapping[str, str] = {
    "agreement.not_found": "the agreement does not exist or is not visible to you",
    "agreement.not_party": "the agreement does not exist or is not visible to you",
    "agreement.wrong_grantee": "only the agreement's grantee may do this",
    "agreement.not_owner": "only the agreement's owner may do this",
    "agreement.not_co_owner": "only an owner whose datasets the agreement lists, besides its proposer, signs a part",
    "agreement.unsigned": "an owner whose datasets the agreement lists has not signed this version yet",
    "co_owner.without_dataset": "a named co-owner owns none of the agreement's datasets",
    "co_owner.code": "an agreement over several owners' datasets cannot allow custom code",
    "revenue.share_not_owner": "revenue shares must name only the agreement's owners",
    "role.not_allowed": "your role may not take this action",
    "agreement.not_active": "the agreement has not been accepted (it is not active)",
    "agreement.already_active": "the agreement is already active",
    "agreement.suspended": "the agreement is suspended",
    "agreement.revoked": "the agreement has been revoked",
    "agreement.expired": "the agreement's validity period has ended",
    "agreement.not_yet_valid": "the agreement's validity period has not started",
    "agreement.outputs_sealed": "the agreement has ended and its exit clause seals all outputs",
    "agreement.not_submitted": "the agreement is accepted but not yet submitted for filing (备案)",
    "agreement.under_review": "the agreement is under review by the data authority",
    "agreement.returned": "the data authority returned the agreement to its owner",
    "agreement.not_activated": "the agreement is filed but its owner has not activated it",
    "agreement.suspended_by_authority": "the data authority suspended the agreement; only it can resume it",
    "dataset.missing": "a dataset of the agreement is no longer registered",
    "dataset.withdrawn": "the dataset has been withdrawn by its owner; nothing new runs on it",
    "dataset.core_grade": "core-grade datasets can never be placed under an agreement",
    "dataset.grade_requires_owner_approval": "the dataset's grade requires the owner to approve each job "
                                             "(approval: owner_each_job)",
    "dataset.grade_epsilon_ceiling": "the agreement's ε budget is above the ceiling of the dataset's grade",
    "dataset.negative_list": "the dataset is on the negative list",
    "dataset.outside_agreement": "the dataset is not covered by the agreement",
    "dataset.changed": "the dataset changed since the job was submitted; a new approval is needed",
    "column.outside_agreement": "the column is not covered by the agreement",
    "column.negative_list": "the column is on the negative list",
    "purpose.missing": "a personal dataset needs at least one declared purpose",
    "purpose.outside_agreement": "the purpose is not covered by the agreement",
    "purpose.negative_list": "the purpose is on the negative list",
    "job_kind.not_allowed": "the agreement does not allow this kind of job",
    "consent.missing": "verification on a personal dataset needs a consent reference",
    "quota.calls_per_day": "the daily call quota of the agreement is used up",
    "quota.jobs_per_day": "the daily job quota of the agreement is used up",
    "quota.scores_per_day": "the daily scoring quota of the agreement is used up",
    "quota.verify_per_subject_per_day": "the daily verification quota for this subject is used up",
    "quota.distinct_params_per_subject": "too many distinct parameter values were tried for this subject",
    "budget.insufficient": "the remaining privacy budget is smaller than the cost",
    # Raised when an agreement is proposed or amended.
    "dataset.not_found": "the dataset does not exist or is not yours",
    "column.unknown": "the dataset has no such column",
    "column.not_shareable": "columns with role 'id' or 'never_output' cannot be shared",
    "grantee.is_owner": "an owner cannot grant an agreement to themselves",
    "agreement.ends_in_past": "the validity period has already ended",
    "agreement.version_mismatch": "the agreement changed since you read it",
    # Job workflow.
    "job.wrong_state": "the job is not in a state that allows this",
    "job.spec_changed": "the approval does not name the job's current spec hash",
    "job.not_released": "the job has no released result",
}

_HIDING = frozenset({"agreement.not_found", "agreement.not_party"})
STATE_REASONS = frozenset(
    {
        "agreement.not_active",
        "agreement.already_active",
        "agreement.suspended",
        "agreement.revoked",
        "agreement.expired",
        "agreement.not_yet_valid",
        "agreement.outputs_sealed",
        "agreement.not_submitted",
        "agreement.under_review",
        "agreement.returned",
        "agreement.not_activated",
        "agreement.suspended_by_authority",
    }
)
_STATE_REASON_OF: dict[str, str] = {
    PROPOSED: "agreement.not_active",
    ACTIVE: "agreement.already_active",
    SUSPENDED: "agreement.suspended",
    REVOKED: "agreement.revoked",
    EXPIRED: "agreement.expired",
    ACCEPTED: "agreement.not_submitted",
    UNDER_REVIEW: "agreement.under_review",
    RETURNED: "agreement.returned",
    FILED: "agreement.not_activated",
}


@dataclass(frozen=True)
class Reason:
    """One reason for a denial. ``code`` is stable (``"column.outside_agreement"``); names are metadata."""

    code: str
    dataset: str | None = None
    column: str | None = None
    purpose: str | None = None

    def __post_init__(self) -> None:
        if self.code not in MESSAGES:
            raise ValueError(f"unknown reason code {self.code!r}")

    @property
    def message(self) -> str:
        """The fixed English text of ``code``."""
        return MESSAGES[self.code]

    def as_dict(self) -> dict[str, str]:
        """The reason as an error detail: code, message and the names it concerns."""
        out = {"reason": self.code, "message": self.message}
        for key in ("dataset", "column", "purpose"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`: allowed or not, with every reason for a denial."""

    allow: bool
    reasons: tuple[Reason, ...]
    action: Action
    orders: tuple[str, ...] = ()  # open rectification orders (整改), shown on every refusal a party sees

    @property
    def codes(self) -> tuple[str, ...]:
        """The reasons' codes, in order."""
        return tuple(r.code for r in self.reasons)

    def error(self) -> DomainError | None:
        """The one `DomainError` for this denial (``None`` when allowed)."""
        if self.allow:
            return None
        codes = set(self.codes)
        if codes & _HIDING:
            return DomainError(NOT_FOUND_OR_FORBIDDEN, "agreement not found")
        details: list[dict[str, Any]] = [r.as_dict() for r in self.reasons]
        details += [{"reason": "rectification.open", "message": text} for text in self.orders]
        if codes & STATE_REASONS:
            return DomainError(AGREEMENT_INACTIVE, "the agreement does not allow this in its current state",
                               details)
        if any(c.startswith("budget.") for c in codes):
            return DomainError(BUDGET_EXHAUSTED, "the privacy budget does not cover this request", details)
        if any(c.startswith("quota.") for c in codes):
            return DomainError(QUOTA_EXCEEDED, "a quota of the agreement is exhausted", details)
        return DomainError(POLICY_DENIED, "the request is outside what the agreement allows", details)

    def raise_if_denied(self) -> None:
        """Raise `error` when the decision is a denial."""
        err = self.error()
        if err is not None:
            raise err


@dataclass(frozen=True)
class QuotaUsage:
    """What has been used so far in the current window (a snapshot from `policies.quotas.snapshot`)."""

    calls_today: int = 0
    jobs_today: int = 0
    scores_today: int = 0
    verifies_subject_today: int = 0
    distinct_params: int = 0
    param_is_new: bool = False


@dataclass(frozen=True)
class DecisionContext:
    """Everything `decide` looks at. ``datasets`` holds catalog records for the agreement's datasets and any
    requested one (``None`` = not registered); ``requested``/``columns``/``purpose`` describe the request."""

    actor: Actor
    action: Action
    now: dt.datetime
    agreement: Agreement | None
    datasets: Mapping[str, Dataset | None] = field(default_factory=dict)
    requested: tuple[str, ...] = ()
    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    purpose: str | None = None
    job_kind: str | None = None
    consent_ref: str | None = None
    negative_list: NegativeList = field(default_factory=NegativeList)
    usage: QuotaUsage | None = None
    cost: Budget | None = None
    remaining: Mapping[str, Budget] = field(default_factory=dict)
    fingerprints: Mapping[str, str] | None = None
    orders: tuple[str, ...] = ()  # the agreement's open rectification orders (整改), as the grantee reads them

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        object.__setattr__(self, "action", Action(self.action))


def scope_reasons(
    datasets: tuple[str, ...] | list[str],
    columns: Mapping[str, tuple[str, ...] | list[str]],
    purposes: tuple[str, ...] | list[str],
    records: Mapping[str, Dataset | None],
    negative: NegativeList,
    *,
    approval: str | None = None,
    epsilon: Fraction | None = None,
    ceilings: Mapping[str, Fraction | None] | None = None,
) -> list[Reason]:
    """Rules no agreement overrides, on an agreement's scope: the grade controls (`policies.grades`: core never
    granted, the approval modes a grade allows — when ``approval`` is given — and, when ``epsilon`` is given, the
    grade's ε ceiling), negative list, purposes for personal data. Used at creation and at every scoped decision."""
    out: list[Reason] = []
    personal = False
    for ds in datasets:
        rec = records.get(ds)
        if rec is None:
            out.append(Reason("dataset.missing", dataset=ds))
            continue
        if rec.withdrawn:
            out.append(Reason("dataset.withdrawn", dataset=ds))
        for code, _ in grades.scope_violations((ds,), records, approval or grades.OWNER_EACH_JOB, epsilon,
                                               ceilings):
            out.append(Reason(code, dataset=ds))
        personal = personal or rec.personal
        if negative.blocks_dataset(ds):
            out.append(Reason("dataset.negative_list", dataset=ds))
    for ds in datasets:
        for col in columns.get(ds, ()):
            if negative.blocks_column(ds, col):
                out.append(Reason("column.negative_list", dataset=ds, column=col))
    for p in purposes:
        if negative.blocks_purpose(p):
            out.append(Reason("purpose.negative_list", purpose=p))
    if personal and not purposes:
        out.append(Reason("purpose.missing"))
    return out


def _party_reasons(ctx: DecisionContext, ag: Agreement, rule: Rule) -> list[Reason]:
    actor = ctx.actor
    party = set()
    if actor.name == ag.owner:
        party.add(OWNER)
    if actor.name in ag.document.co_owners:
        party.add(CO_OWNER)
    if actor.name == ag.grantee:
        party.add(GRANTEE)
    if actor.role is Role.REGULATOR:
        party.add(REGULATOR)
    if actor.role is Role.AUTHORITY:
        party.add(AUTHORITY)
    if actor.role is Role.REVIEWER and actor.name in ag.reviewers and ag.state is AgreementState.UNDER_REVIEW:
        party.add(REVIEWER)
    if not party:
        return [Reason("agreement.not_party")]
    as_allowed = party & rule.parties
    if not as_allowed:
        if GRANTEE in rule.parties and OWNER in party:
            return [Reason("agreement.wrong_grantee")]
        if OWNER in rule.parties and GRANTEE in party:
            return [Reason("agreement.not_owner")]
        if CO_OWNER in rule.parties and party & {OWNER, GRANTEE}:
            return [Reason("agreement.not_co_owner")]
        return [Reason("role.not_allowed")]

    def role_ok(p: str) -> bool:
        if p in (OWNER, CO_OWNER):
            return actor.role is Role.OWNER
        if p == GRANTEE:
            return actor.role in rule.grantee_roles
        if p == AUTHORITY:
            return actor.role is Role.AUTHORITY
        if p == REVIEWER:
            return actor.role is Role.REVIEWER
        return actor.role is Role.REGULATOR

    if not any(role_ok(p) for p in as_allowed):
        return [Reason("role.not_allowed")]
    return []


def _state_reasons(ctx: DecisionContext, ag: Agreement, rule: Rule) -> list[Reason]:
    state = str(ag.effective_state(ctx.now))
    if state not in rule.states:
        return [Reason(_STATE_REASON_OF[state])]
    out = []
    if ctx.action is Action.AGREEMENT_ACCEPT and ctx.now < ag.document.valid_from:
        out.append(Reason("agreement.not_yet_valid"))
    if ctx.action is Action.JOB_RESULT and ag.outputs_sealed(ctx.now):
        out.append(Reason("agreement.outputs_sealed"))
    # an owner's suspension is the owner's to lift, the authority's only the authority's
    if ctx.action is Action.AGREEMENT_RESUME and ag.suspended_by == "authority":
        out.append(Reason("agreement.suspended_by_authority"))
    if ctx.action is Action.AUTHORITY_RESUME and ag.suspended_by != "authority":
        out.append(Reason("agreement.suspended"))
    if ctx.action is Action.AUTHORITY_SUSPEND and ag.suspended_by == "authority":
        out.append(Reason("agreement.suspended"))
    return out


def _request_reasons(ctx: DecisionContext, ag: Agreement, rule: Rule) -> list[Reason]:
    doc = ag.document
    out: list[Reason] = []
    for ds in ctx.requested:
        if ds not in doc.datasets:
            out.append(Reason("dataset.outside_agreement", dataset=ds))
    for ds, cols in sorted(ctx.columns.items()):
        allowed = doc.columns.get(ds)
        if allowed is None:
            if ds not in ctx.requested:
                out.append(Reason("dataset.outside_agreement", dataset=ds))
            continue
        for col in sorted(cols):
            if col not in allowed:
                out.append(Reason("column.outside_agreement", dataset=ds, column=col))
            if ctx.negative_list.blocks_column(ds, col):
                out.append(Reason("column.negative_list", dataset=ds, column=col))
    if ctx.purpose is not None:
        if ctx.purpose not in doc.purposes:
            # echo the requested purpose only if it is a well-formed token (details may reach the audit log)
            shown = ctx.purpose if PURPOSE_RE.match(ctx.purpose) else None
            out.append(Reason("purpose.outside_agreement", purpose=shown))
        if ctx.negative_list.blocks_purpose(ctx.purpose):
            out.append(Reason("purpose.negative_list", purpose=ctx.purpose))
    kind = ctx.job_kind if rule.job_kind == "*" else rule.job_kind
    if rule.job_kind is not None and (kind is None or kind not in doc.job_kinds):
        out.append(Reason("job_kind.not_allowed"))
    targets = ctx.requested or doc.datasets
    personal = any((rec := ctx.datasets.get(ds)) is not None and rec.personal for ds in targets)
    consent_actions = (Action.VERIFY_CHECK, Action.VERIFY_ANONYMOUS, Action.PSI_MEMBERS)
    if ctx.action in consent_actions and personal and not (ctx.consent_ref or "").strip():
        out.append(Reason("consent.missing"))
    if ctx.fingerprints is not None:
        for ds, fp in sorted(ctx.fingerprints.items()):
            rec = ctx.datasets.get(ds)
            if rec is None or rec.fingerprint != fp:
                out.append(Reason("dataset.changed", dataset=ds))
    return out


def _quota_reasons(usage: QuotaUsage, quotas: Quotas, meters: tuple[str, ...]) -> list[Reason]:
    out = []
    if CALL in meters and usage.calls_today >= quotas.calls_per_day:
        out.append(Reason("quota.calls_per_day"))
    if JOB in meters and usage.jobs_today >= quotas.jobs_per_day:
        out.append(Reason("quota.jobs_per_day"))
    if SCORE in meters and usage.scores_today >= quotas.scores_per_day:
        out.append(Reason("quota.scores_per_day"))
    if VERIFY in meters and usage.verifies_subject_today >= quotas.verify_per_subject_per_day:
        out.append(Reason("quota.verify_per_subject_per_day"))
    if PARAM in meters and usage.param_is_new and usage.distinct_params >= quotas.distinct_params_per_subject:
        out.append(Reason("quota.distinct_params_per_subject"))
    return out


def _budget_reasons(ctx: DecisionContext, ag: Agreement) -> list[Reason]:
    assert ctx.cost is not None
    out = []
    for ds in ctx.requested or ag.document.datasets:
        if ds not in ag.document.datasets:
            continue
        rem = ctx.remaining.get(ds)
        if rem is None or not ctx.cost.fits_in(rem):
            out.append(Reason("budget.insufficient", dataset=ds))
    return out


def decide(ctx: DecisionContext) -> Decision:
    """Allow or deny ``ctx.action``, collecting every reason that applies."""
    ag = ctx.agreement
    if ag is None:
        return Decision(False, (Reason("agreement.not_found"),), ctx.action)
    rule = RULES[ctx.action]
    reasons = _party_reasons(ctx, ag, rule) + _state_reasons(ctx, ag, rule)
    if rule.scope:
        doc = ag.document
        reasons += scope_reasons(doc.datasets, doc.columns, doc.purposes, ctx.datasets, ctx.negative_list,
                                 approval=doc.approval)
        reasons += _request_reasons(ctx, ag, rule)
    if rule.meters and ctx.usage is not None:
        reasons += _quota_reasons(ctx.usage, ag.document.quotas, rule.meters)
    if rule.spends and ctx.cost is not None:
        reasons += _budget_reasons(ctx, ag)
    unique = tuple(dict.fromkeys(reasons))
    return Decision(not unique, unique, ctx.action, ctx.orders)


def meters_for(action: Action) -> tuple[str, ...]:
    """The usage meters an allowed ``action`` consumes (see `policies.quotas`)."""
    return RULES[action].meters
