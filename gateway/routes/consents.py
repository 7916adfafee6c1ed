"""The consent registry (同意登记, docs/consent.md): record (one or a batch), list, show, revoke, trustees, and the
owner's subject-access report.

Thin: `gateway.services.consent` hashes raw subjects and journals each change; `policies.consent` decides who
records, reads and revokes what.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status

from gateway.contract import OUT, ErrorCode
from gateway.contract import doc as describe
from gateway.contract.consents import Consent, SubjectAccess
from gateway.deps import Audit, Ctx, CurrentPrincipal
from gateway.services import consent as service
from gateway.services.consent import RecordBody, RevokeBody, SubjectBody, TrusteeBody
from gateway.services.jobs import actor_of
from policies import consent as policy

router = APIRouter(tags=["consents"])

RECORD_EXAMPLE = {
    "subjects": ["P0000001"],
    "grantee": "bank",
    "scenario": "income verification for a consumer loan application",
    "products": ["income_at_least"],
    "valid_until": "2027-03-03T00:00:00Z",
}


@router.post(
    "/consents",
    name="consent.record",
    status_code=status.HTTP_201_CREATED,
    response_model=list[Consent],
    **OUT,
    **describe(
        "Record consents: one per subject (raw ids hashed by the gateway, or hashes), up to 1000 per call",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
        ErrorCode.INVALID_REQUEST,
        status=201,
        request_example=RECORD_EXAMPLE,
    ),
)
def record_consents(p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: RecordBody) -> list[dict[str, Any]]:
    """The data owner, or a trustee it named, records one consent per subject for one grantee, scenario, set of
    products and validity window. Raw ids are hashed with the products' subject key and never stored."""
    return service.record(ctx, p, body, ev)


@router.get(
    "/consents",
    name="consent.list",
    response_model=list[Consent],
    **OUT,
    **describe("The consents you recorded, own or were granted, newest first", ErrorCode.INVALID_REQUEST),
)
def list_consents(
    p: CurrentPrincipal,
    ctx: Ctx,
    ev: Audit,
    subject_hash: str | None = Query(None, max_length=64),
    grantee: str | None = Query(None, max_length=64),
    product: str | None = Query(None, max_length=160),
) -> list[dict[str, Any]]:
    return [
        c.public()
        for c in policy.list_consents(
            ctx.engine, actor_of(p), subject_hash=subject_hash, grantee=grantee, product=product
        )
    ]


@router.get(
    "/consents/subject-access",
    name="consent.subject_access",
    response_model=SubjectAccess,
    **OUT,
    **describe(
        "The subject-access report (owners): a person's consents and every recorded use of their data",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
    ),
)
def subject_access(
    p: CurrentPrincipal,
    ctx: Ctx,
    ev: Audit,
    subject: str | None = Query(None, min_length=1, max_length=200, description="the raw id (hashed, never kept)"),
    subject_hash: str | None = Query(None, max_length=64),
) -> dict[str, Any]:
    """Uses are matched by the keyed subject hash, under the owner's datasets and agreements; each states what
    was asked, when, by whom and the outcome, never a value."""
    return service.subject_access(ctx, p, subject, subject_hash, ev)


@router.post(
    "/consents/subject-access",
    name="consent.subject_access",
    response_model=SubjectAccess,
    **OUT,
    **describe(
        "The subject-access report, the person named in the body (owners): nothing of the id in any URL or log line",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
        request_example={"subject": "P0000001"},
    ),
)
def subject_access_posted(p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: SubjectBody) -> dict[str, Any]:
    """As ``GET /consents/subject-access``, with the raw id (or hash) in the body rather than the query string."""
    return service.subject_access(ctx, p, body.subject, body.subject_hash, ev)


@router.post(
    "/consents/trustees",
    name="consent.trustee",
    response_model=list[str],
    **OUT,
    **describe(
        "Name or withdraw a trustee allowed to record your consents (owners)",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
        request_example={"trustee": "bank"},
        response_example=["bank"],
    ),
)
def set_trustee(p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: TrusteeBody) -> list[str]:
    return service.trustee(ctx, p, body, ev)


@router.get(
    "/consents/{consent_id}",
    name="consent.show",
    response_model=Consent,
    **OUT,
    **describe("One consent", ErrorCode.NOT_FOUND_OR_FORBIDDEN),
)
def show_consent(consent_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.details["consent_id"] = consent_id
    return policy.show_consent(ctx.engine, actor_of(p), consent_id).public()


@router.post(
    "/consents/{consent_id}/revoke",
    name="consent.revoke",
    response_model=Consent,
    **OUT,
    **describe(
        "Revoke a consent, with a reason (its owner or a trustee); the next call naming it is refused",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
        ErrorCode.INVALID_REQUEST,
        request_example={"reason": "the person withdrew consent"},
    ),
)
def revoke_consent(consent_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: RevokeBody) -> dict[str, Any]:
    return service.revoke(ctx, p, consent_id, body.reason, ev)
