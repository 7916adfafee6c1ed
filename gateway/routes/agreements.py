"""Agreements (授权运营协议), budgets, usage and the negative list (docs/api.md, "Agreements" and "Usage and budget").

Every route that names an agreement first records its expiry once (`gateway.services.agreements.note_expiry`)
so the audit log shows when an agreement lapsed even though no scheduler runs.

Filing (备案, docs/agreements.md): the owner submits an accepted agreement and activates a filed one; the data
authority (role ``authority``) files or refuses it with a sign-off on the document hash it read, suspends and
resumes any agreement, issues and closes rectification orders (整改), and disables or enables any principal (the
admin's service, `gateway.identities`). Regulators read all of it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

import policies
from catalog.errors import invalid
from gateway import identities
from gateway.contract import OUT, ErrorCode
from gateway.contract import doc as describe
from gateway.contract.agreements import (
    NEGATIVE_EXAMPLE,
    ORDER_EXAMPLE,
    Agreement,
    Budget,
    NegativeEntry,
    PrincipalStatus,
    RectificationOrder,
    SignOff,
    Usage,
    document_body,
)
from gateway.contract.disposal import DISPOSAL_EXAMPLE, Disposal
from gateway.deps import Admin, Audit, Ctx, CurrentPrincipal, Owner, require_role
from gateway.identities import Principal, RoleName
from gateway.journal import request_entry
from gateway.services import disposal
from gateway.services.agreements import (
    agreement_entry,
    check_grantee,
    filing_required,
    name_reviewers,
    note_expiry,
    note_migrations,
)
from gateway.services.jobs import actor_of
from policies.agreements import filing as filing_policy

router = APIRouter(tags=["agreements"])

#: The data authority (数据主管部门).
Authority = Annotated[Principal, require_role(RoleName.AUTHORITY)]

AGREEMENT_EXAMPLE = {
    "title": "SME credit model", "grantee": "risk-lab", "datasets": ["tax_income"],
    "columns": {"tax_income": ["district", "age", "monthly_income"]},
    "purposes": ["credit_risk"], "job_kinds": ["query", "train"],
    "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
    "budget": {"epsilon": 5.0, "delta": 1e-6}, "min_group_units": 20,
    "quotas": {"calls_per_day": 10000, "verify_per_subject_per_day": 3},
    "approval": "owner_each_job", "exit": {"on_expiry": "seal_outputs"},
}


@router.post("/agreements", name="agreement.create", status_code=status.HTTP_201_CREATED, response_model=Agreement,
             **OUT, **describe("Propose an agreement over your datasets (owner)", ErrorCode.POLICY_DENIED,
                               ErrorCode.NOT_FOUND_OR_FORBIDDEN, status=201, openapi_extra=document_body()))
def create(owner: Owner, ctx: Ctx, ev: Audit,
           doc: dict[str, Any] = Body(..., examples=[AGREEMENT_EXAMPLE])) -> dict[str, Any]:
    """Propose an agreement over the owner's datasets (state ``proposed`` until the grantee accepts)."""
    check_grantee(ctx, doc)
    new_id = policies.new_agreement_id()  # named first: its entry commits with the proposal
    ag = policies.create_agreement(ctx.engine, actor_of(owner), doc, agreement_id=new_id,
                                   filing_required=filing_required(ctx.engine), hash_alg=ctx.settings.hash_alg,
                                   grade_ceilings=ctx.settings.grade_ceilings,
                                   journal=agreement_entry(ctx, ev, new_id, "grantee", "document_hash", datasets=True))
    ev.agreement_id = ag.id
    ev.dataset = ",".join(ag.document.datasets)
    ev.details.update(grantee=ag.grantee, document_hash=ag.document_hash)
    return ag.public()


@router.get("/agreements", name="agreement.list", response_model=list[Agreement], **OUT,
            **describe("The agreements you own or hold (regulators and the authority: all)"))
def list_agreements(p: CurrentPrincipal, ctx: Ctx, state: str | None = Query(
        None, description="filter on the effective state")) -> list[dict[str, Any]]:
    """Agreements the caller owns or holds (regulators and the data authority: all)."""
    note_migrations(ctx)
    return [ag.public() for ag in policies.list_agreements(ctx.engine, actor_of(p), state=state)]


@router.get("/agreements/{agreement_id}", name="agreement.show", response_model=Agreement, **OUT,
            **describe("One agreement, its state and its document", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                       ErrorCode.POLICY_DENIED))
def show(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    return policies.get_agreement(ctx.engine, actor_of(p), agreement_id).public()


@router.get("/agreements/{agreement_id}/disposal", name="agreement.disposal", response_model=Disposal, **OUT,
            **describe("An ended agreement's disposal and its signed record (owner, authority, regulators)",
                       ErrorCode.NOT_FOUND_OR_FORBIDDEN, response_example=DISPOSAL_EXAMPLE))
def show_disposal(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """What the exit clause disposed of when the agreement was revoked or expired: jobs cancelled and refunded,
    outputs sealed or deleted, model certificates revoked, each with its fingerprint; signed by the service."""
    ev.agreement_id = agreement_id
    return disposal.read(ctx, p, agreement_id)


class AcceptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_hash: str | None = Field(None, description="bind the acceptance to the version you read")


@router.post("/agreements/{agreement_id}/accept", name="agreement.accept", response_model=Agreement, **OUT,
             **describe("Accept a proposed agreement (its grantee)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                        ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        request_example={"document_hash": "sha256:ecc1841d66a0a8306b606200a00a6d2ce16c39be93e09bb5"
                                                          "bd647fc58caede3c"}))
def accept(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
           body: AcceptBody | None = None) -> dict[str, Any]:
    """The grantee accepts: ``proposed`` → ``active`` (only inside the validity window); ``accepted`` when the
    agreement needs filing (备案)."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    ag = policies.accept(ctx.engine, actor_of(p), agreement_id, document_hash=body.document_hash if body else None,
                         journal=agreement_entry(ctx, ev, agreement_id, "document_hash"))
    ev.details["document_hash"] = ag.document_hash
    return ag.public()


def _owner_transition(name: str, fn: Any, doc: str) -> None:
    def route(agreement_id: str, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
        ev.agreement_id = agreement_id
        note_expiry(ctx, agreement_id)
        result: dict[str, Any] = fn(ctx.engine, actor_of(owner), agreement_id,
                                    journal=agreement_entry(ctx, ev, agreement_id)).public()
        if name == "revoke":  # the exit clause is carried out at once (an interrupted one: the worker's sweep)
            disposal.after_revocation(ctx, agreement_id)
        return result

    route.__doc__ = doc
    router.add_api_route(f"/agreements/{{agreement_id}}/{name}", route, methods=["POST"],
                         name=f"agreement.{name}", response_model=Agreement, **OUT,
                         **describe(f"{name.capitalize()} the agreement (owner)", ErrorCode.POLICY_DENIED,
                                    ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.AGREEMENT_INACTIVE))


_owner_transition("suspend", policies.suspend, "The owner pauses an active agreement (every call is refused).")
_owner_transition("resume", policies.resume, "The owner resumes a suspended agreement.")
_owner_transition("revoke", policies.revoke, "The owner ends the agreement for good; released outputs are sealed.")
_owner_transition("submit", policies.submit_for_filing,
                  "The owner submits an accepted (or returned) agreement to the data authority for filing (备案).")
_owner_transition("activate", policies.activate, "The owner activates a filed agreement.")


# --- filing (备案) and the data authority ----------------------------------------------------------------------


class SignOffBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_hash: str = Field(description="the hash of the document version reviewed (GET /agreements/{id})")
    reasons: list[str] = Field(default_factory=list, max_length=20,
                               description="why (required to refuse): each at most 2000 characters")


_HASH = "sha256:ecc1841d66a0a8306b606200a00a6d2ce16c39be93e09bb5bd647fc58caede3c"


@router.post("/agreements/{agreement_id}/file", name="agreement.file", response_model=Agreement, **OUT,
             **describe("File an agreement under review and issue its number (备案, data authority)",
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        request_example={"document_hash": _HASH, "reasons": ["scope and purposes checked"]}))
def file_agreement(agreement_id: str, authority: Authority, ctx: Ctx, ev: Audit, body: SignOffBody) -> dict[str, Any]:
    """The authority's approving sign-off on the version it read: ``under_review`` → ``filed``, with a number."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    ev.details.update(document_hash=body.document_hash, reasons=body.reasons)
    ag = policies.file_agreement(ctx.engine, actor_of(authority), agreement_id, document_hash=body.document_hash,
                                 reasons=body.reasons,
                                 journal=agreement_entry(ctx, ev, agreement_id, "filing_number"))
    ev.details["filing_number"] = ag.filing_number
    return ag.public()


@router.post("/agreements/{agreement_id}/refuse", name="agreement.refuse", response_model=Agreement, **OUT,
             **describe("Refuse an agreement under review: back to its owner with the reasons (data authority)",
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        request_example={"document_hash": _HASH,
                                         "reasons": ["the purpose does not name the lending product"]}))
def refuse_agreement(agreement_id: str, authority: Authority, ctx: Ctx, ev: Audit,
                     body: SignOffBody) -> dict[str, Any]:
    """The authority's refusing sign-off: ``under_review`` → ``returned``; the owner amends or submits again."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    ev.details.update(document_hash=body.document_hash, reasons=body.reasons)
    return policies.refuse(ctx.engine, actor_of(authority), agreement_id, document_hash=body.document_hash,
                           reasons=body.reasons, journal=agreement_entry(ctx, ev, agreement_id)).public()


class ReviewersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewers: list[str] = Field(max_length=10, description="principals with role reviewer whose approval filing "
                                                            "requires (replaces the earlier list; empty: none)")


class ReviewBody(SignOffBody):
    verdict: Literal["approve", "refuse"] = Field(description="approve (recorded; the authority files) | refuse "
                                                            "(back to the owner with the reasons)")


@router.post("/agreements/{agreement_id}/reviewers", name="agreement.reviewers", response_model=Agreement, **OUT,
             **describe("Name the reviewers (专家委员会, 网信) whose approval filing requires (data authority)",
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        ErrorCode.INVALID_REQUEST, request_example={"reviewers": ["expert-panel", "cac-wuxi"]}))
def require_reviewers(agreement_id: str, authority: Authority, ctx: Ctx, ev: Audit,
                      body: ReviewersBody) -> dict[str, Any]:
    """The authority names the reviewers of an agreement under review; ``file`` waits for each one's approval."""
    return name_reviewers(ctx, ev, actor_of(authority), agreement_id, body.reviewers).public()


@router.post("/agreements/{agreement_id}/review", name="agreement.review", response_model=Agreement, **OUT,
             **describe("A named reviewer's sign-off on the version under review (approve, or refuse with reasons)",
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        ErrorCode.INVALID_REQUEST,
                        request_example={"verdict": "approve", "document_hash": _HASH,
                                         "reasons": ["the security measures are adequate"]}))
def review_agreement(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: ReviewBody) -> dict[str, Any]:
    """A named reviewer signs off on the document hash it read: an approval is recorded, a refusal returns the
    agreement to its owner with the reasons."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    ev.details.update(verdict=body.verdict, document_hash=body.document_hash, reasons=body.reasons)
    return filing_policy.review(ctx.engine, actor_of(p), agreement_id, verdict=body.verdict,
                                document_hash=body.document_hash, reasons=body.reasons,
                                journal=agreement_entry(ctx, ev, agreement_id)).public()


@router.get("/agreements/{agreement_id}/reviews", name="agreement.reviews", response_model=list[SignOff], **OUT,
            **describe("The sign-offs of an agreement's filing reviews", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def agreement_reviews(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> list[dict[str, Any]]:
    """Every sign-off, oldest first: reviewer, verdict, reasons, the document hash reviewed."""
    ev.agreement_id = agreement_id
    return [s.public() for s in policies.reviews(ctx.engine, actor_of(p), agreement_id)]


class SuspendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="why (in the audit log)")


def _authority_transition(name: str, fn: Any, doc: str, summary: str) -> None:
    def route(agreement_id: str, authority: Authority, ctx: Ctx, ev: Audit, body: SuspendBody) -> dict[str, Any]:
        ev.agreement_id = agreement_id
        ev.details["reason"] = body.reason
        note_expiry(ctx, agreement_id)
        result: dict[str, Any] = fn(ctx.engine, actor_of(authority), agreement_id,
                                    journal=agreement_entry(ctx, ev, agreement_id)).public()
        return result

    route.__doc__ = doc
    router.add_api_route(f"/authority/agreements/{{agreement_id}}/{name}", route, methods=["POST"],
                         name=f"authority.{name}", response_model=Agreement, **OUT,
                         **describe(summary, ErrorCode.POLICY_DENIED, ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                                    ErrorCode.AGREEMENT_INACTIVE,
                                    request_example={"reason": "the consent notice is missing"}))


_authority_transition("suspend", policies.authority_suspend,
                      "The authority suspends an agreement: every call is refused; only the authority resumes it.",
                      "Suspend any agreement (data authority)")
_authority_transition("resume", policies.authority_resume, "The authority lifts its own suspension.",
                      "Resume an agreement the authority suspended (data authority)")


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, description="what must be rectified")
    deadline: AwareDatetime = Field(description="by when (ISO-8601, with its zone; a naive time is an invalid request)")


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=2000)


@router.post("/agreements/{agreement_id}/orders", name="order.issue", status_code=status.HTTP_201_CREATED,
             response_model=RectificationOrder, **OUT,
             **describe("Issue a rectification order (整改) on an agreement (data authority)",
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                        status=201, request_example={k: ORDER_EXAMPLE[k] for k in ("text", "deadline")}))
def issue_order(agreement_id: str, authority: Authority, ctx: Ctx, ev: Audit, body: OrderBody) -> dict[str, Any]:
    """While open, every refusal a party of the agreement sees lists the order's deadline and text."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    order_id = policies.new_order_id()
    ev.details.update(order_id=order_id, deadline=body.deadline.isoformat(), text=body.text)
    return policies.issue_order(ctx.engine, actor_of(authority), agreement_id, body.text, body.deadline,
                                order_id=order_id, journal=request_entry(ctx.audit, ev)).public()


@router.get("/agreements/{agreement_id}/orders", name="order.list", response_model=list[RectificationOrder], **OUT,
            **describe("An agreement's rectification orders (整改), newest first", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def list_orders(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> list[dict[str, Any]]:
    """Open and closed orders (the parties, regulators and the authority)."""
    ev.agreement_id = agreement_id
    return [o.public() for o in policies.list_orders(ctx.engine, actor_of(p), agreement_id)]


@router.post("/orders/{order_id}/close", name="order.close", response_model=RectificationOrder, **OUT,
             **describe("Close a rectification order (data authority)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                        ErrorCode.POLICY_DENIED, ErrorCode.INVALID_REQUEST,
                        request_example={"note": "notice published on the bank's site"}))
def close_order(order_id: str, authority: Authority, ctx: Ctx, ev: Audit, body: CloseBody) -> dict[str, Any]:
    """The order stops being listed on refusals."""
    ev.details.update(order_id=order_id, note=body.note)
    ev.agreement_id = policies.load_order(ctx.engine, order_id).agreement_id
    return policies.close_order(ctx.engine, actor_of(authority), order_id, note=body.note,
                                journal=request_entry(ctx.audit, ev)).public()


def _principal_change(name: str, disabled: bool) -> None:
    def route(principal: str, authority: Authority, ctx: Ctx, ev: Audit) -> dict[str, Any]:
        ev.details["name"] = principal
        journal = request_entry(ctx.audit, ev)
        r = (identities.disable(ctx.engine, principal, journal, admin=authority.name) if disabled
             else identities.enable(ctx.engine, principal, journal))
        return {"name": r.name, "role": r.role.value if hasattr(r.role, "value") else str(r.role),
                "disabled": r.disabled}

    route.__doc__ = ("The authority disables a principal: its next call is refused and its console sessions end."
                     if disabled else "The authority enables a disabled principal again.")
    router.add_api_route(f"/authority/principals/{{principal}}/{name}", route, methods=["POST"],
                         name=f"authority.principal.{name}", response_model=PrincipalStatus, **OUT,
                         **describe(f"{name.capitalize()} any principal (data authority)", ErrorCode.POLICY_DENIED,
                                    ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.INVALID_REQUEST))


_principal_change("disable", True)
_principal_change("enable", False)


@router.post("/agreements/{agreement_id}/amend", name="agreement.amend", response_model=Agreement, **OUT,
             **describe("Replace a proposed agreement's document (owner)", ErrorCode.POLICY_DENIED,
                        ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.AGREEMENT_INACTIVE,
                        openapi_extra=document_body()))
def amend(agreement_id: str, owner: Owner, ctx: Ctx, ev: Audit,
          doc: dict[str, Any] = Body(..., examples=[AGREEMENT_EXAMPLE])) -> dict[str, Any]:
    """A new version of the document; it goes back to ``proposed`` until the grantee accepts it again."""
    ev.agreement_id = agreement_id
    check_grantee(ctx, doc)
    ag = policies.amend_agreement(ctx.engine, actor_of(owner), agreement_id, doc, hash_alg=ctx.settings.hash_alg,
                                  grade_ceilings=ctx.settings.grade_ceilings,
                                  journal=agreement_entry(ctx, ev, agreement_id, "version", "document_hash"))
    ev.details.update(version=ag.version, document_hash=ag.document_hash)
    return ag.public()


@router.get("/agreements/{agreement_id}/budget", name="agreement.budget", response_model=Budget, **OUT,
            **describe("The privacy budget: total and spent (ε, δ)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                       ErrorCode.POLICY_DENIED))
def budget(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Total and spent (ε, δ); per dataset account in ``accounts``."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    status_: dict[str, Any] = policies.read_budget(ctx.engine, actor_of(p), agreement_id).as_json()
    return status_


def _day(value: str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise invalid("dates are ISO-8601 days (YYYY-MM-DD)") from None


@router.get("/usage", name="usage.read", response_model=Usage, **OUT,
            **describe("Calls, jobs, verifications and ε per day, and the bill", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                       ErrorCode.POLICY_DENIED))
async def usage(p: CurrentPrincipal, ctx: Ctx, ev: Audit, agreement_id: str,
                since: str | None = Query(None, description="first day (default: 30 days ago)"),
                until: str | None = Query(None, description="last day, inclusive (default: today)")) -> dict[str, Any]:
    """Calls, jobs, verifications and ε per day for the parties and regulators, with the bill when the
    agreement carries a price schedule."""
    ev.agreement_id = agreement_id
    today = dt.datetime.now(dt.UTC).date()
    end = _day(until, today)
    start = _day(since, end - dt.timedelta(days=30))
    if start > end or (end - start).days > 366:
        raise invalid("the usage window is at most a year and must not end before it starts")
    u = await run_in_threadpool(policies.read_usage, ctx.engine, actor_of(p), agreement_id, start, end)
    out: dict[str, Any] = u.as_json()
    return out


# --- negative list (负面清单) ----------------------------------------------------------------------------------


class NegativeEntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="dataset | column | purpose", examples=["column"])
    value: str = Field(description="a dataset name, `dataset.column`, or a purpose", examples=["tax_income.id_number"])
    note: str = Field("", max_length=500)


@router.get("/negative-list", name="negative_list.list", response_model=list[NegativeEntry], **OUT,
            **describe("The negative list (负面清单): what no agreement can grant"))
def negative_list(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, str]]:
    """What no agreement can grant (public to every principal)."""
    return [e.public() for e in policies.list_entries(ctx.engine)]


@router.post("/negative-list", name="negative_list.add", status_code=status.HTTP_201_CREATED,
             response_model=NegativeEntry, **OUT,
             **describe("Add a negative-list entry (admin)", ErrorCode.POLICY_DENIED, ErrorCode.ALREADY_EXISTS,
                        status=201, request_example={k: NEGATIVE_EXAMPLE[k] for k in ("kind", "value", "note")}))
def negative_add(body: NegativeEntryBody, admin: Admin, ctx: Ctx, ev: Audit) -> dict[str, str]:
    e = policies.add_entry(ctx.engine, actor_of(admin), body.kind, body.value, body.note)
    ev.details.update(kind=e.kind.value, value=e.value)
    return e.public()


@router.delete("/negative-list/{entry_id}", name="negative_list.remove", status_code=status.HTTP_204_NO_CONTENT,
               **describe("Remove a negative-list entry (admin)", ErrorCode.POLICY_DENIED,
                          ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def negative_remove(entry_id: str, admin: Admin, ctx: Ctx, ev: Audit) -> None:
    ev.details["entry_id"] = entry_id
    policies.remove_entry(ctx.engine, actor_of(admin), entry_id)
