"""Private set intersection and anonymous verification (匿踪查询) over HTTP (docs/mechanisms/psi.md).

Every endpoint is for a bank (the agreement's grantee) under an active agreement whose job kinds grant it:

- ``POST /psi/setup`` (``psi_size`` or ``psi_members``): the dataset version's blinded set ``T`` (psi_size) or
  its tag filter (psi_members), computed once per dataset version and cached (`sandbox.psi.SetupStore`).
  Checked (`policies.check`), not metered: it carries no answer about any list.
- ``POST /psi/size/setup``: the bank's double-blinded ``T`` → a ``setup_id`` (stored per bank, tags only).
- ``POST /psi/size``: the bank's blinded list → the intersection size plus discrete Laplace noise (sensitivity
  1: each person of the dataset is one element of ``T``), ε charged on the ledger like a query, a call and a
  job metered, a signed receipt, an audit entry with ε, the list's size and the receipt's digest.
- ``POST /psi/members``: the bank's blinded list (one consent reference per id on personal datasets: registered
  consent ids where the home enforces the consent registry, docs/consent.md) → the elements re-keyed by the
  service; the bank finds its present ids against the filter. Metered (a call and a job), receipt, audit.
- ``GET /verifications/{name}/anonymous``: the product's bucket layout (bits, minimum bucket size ``k``).
- ``POST /verifications/{name}/check-anonymous``: one blinded subject and its bucket → labels the bank alone
  can open for its subject (`mpc.psi.anon_answer`); k is ``VEILBOX_ANON_MIN_BUCKET`` or the agreement's
  ``anon_min_bucket`` when larger. Metered per bucket (calls per day, checks per bucket per
  day, distinct parameter values per bucket), padded to the latency bucket like plain checks, a receipt without
  a result (the service does not know it), an audit entry with the product, the bucket's keyed hash and size and
  the parameters' digest — never a subject.

Hostile messages: elements that are not P-256 x-coordinates, wrong lengths, repeats, a double-blinded set of
the wrong size are ``CIPHERTEXT_INVALID`` or ``INVALID_REQUEST`` before anything is metered or charged.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from gateway.contract import ErrorCode, doc
from gateway.contract import psi as examples
from gateway.deps import Audit, Ctx, CurrentPrincipal, Heavy
from gateway.routes._common import PaddedRoute
from gateway.services import psi as psi_service
from gateway.services.idempotency import Idempotent
from gateway.services.psi import (
    AnonCheckBody,
    AnonCheckOut,
    AnonInfo,
    MembersBody,
    MembersOut,
    PsiSetupBody,
    PsiSetupOut,
    SizeBody,
    SizeOut,
    SizeSetupBody,
    SizeSetupOut,
)

router = APIRouter(tags=["psi"])
anonymous = APIRouter(tags=["verification"], route_class=PaddedRoute)
#: What every PSI operation can be refused with: the dataset or agreement, and the agreement's decision.
_SCOPE = (ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE)


@router.post("/psi/setup", name="psi.setup", response_model=PsiSetupOut,
             **doc("The dataset version's blinded set or tag filter (bank)", *_SCOPE, response_example=examples.SETUP,
                   request_example=examples.SETUP_REQUEST))
async def setup(body: PsiSetupBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> PsiSetupOut:
    """The dataset version's blinded set (psi_size) or tag filter (psi_members); computed once per version."""
    ev.agreement_id = body.agreement_id
    out: PsiSetupOut = await run_in_threadpool(psi_service.setup, ctx, p, body, ev)
    return out


@router.post("/psi/size/setup", name="psi.size_setup", response_model=SizeSetupOut,
             **doc("Store your double-blinded set: a setup_id for psi_size (bank)", *_SCOPE,
                   ErrorCode.CIPHERTEXT_INVALID, response_example=examples.SIZE_SETUP,
                   request_example=examples.SIZE_SETUP_REQUEST))
async def size_setup(body: SizeSetupBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> SizeSetupOut:
    """Store the bank's double-blinded T (once per bank key and dataset version): a setup_id for psi_size."""
    ev.agreement_id = body.agreement_id
    out: SizeSetupOut = await run_in_threadpool(psi_service.size_setup, ctx, p, body, ev)
    return out


@router.post("/psi/size", name="psi.size", response_model=SizeOut,
             **doc("How many of your ids the dataset holds, with DP noise (bank; ε charged)", *_SCOPE,
                   ErrorCode.BUDGET_EXHAUSTED, ErrorCode.QUOTA_EXCEEDED, ErrorCode.CIPHERTEXT_INVALID,
                   response_example=examples.SIZE, request_example=examples.SIZE_REQUEST))
async def size(body: SizeBody, p: Heavy, ctx: Ctx, ev: Audit) -> SizeOut:
    """How many of the bank's ids the dataset holds, released with discrete Laplace noise (ε charged)."""
    ev.agreement_id = body.agreement_id
    out: SizeOut = await run_in_threadpool(psi_service.size, ctx, p, body, ev)
    return out


@router.post("/psi/members", name="psi.members", response_model=MembersOut,
             **doc("Re-key your blinded ids so you can find which are present (bank)", *_SCOPE,
                   ErrorCode.QUOTA_EXCEEDED, ErrorCode.CIPHERTEXT_INVALID, ErrorCode.CONSENT_REQUIRED,
                   ErrorCode.CONSENT_INVALID, response_example=examples.MEMBERS,
                   request_example=examples.MEMBERS_REQUEST))
async def members(body: MembersBody, p: Heavy, ctx: Ctx, ev: Audit) -> MembersOut:
    """Re-key the bank's blinded ids so it can find which are present (agreement job kind psi_members)."""
    ev.agreement_id = body.agreement_id
    out: MembersOut = await run_in_threadpool(psi_service.members, ctx, p, body, ev)
    return out


# --- anonymous verification ------------------------------------------------------------------------------------


@router.get("/verifications/{name}/anonymous", name="verify.anonymous_info", response_model=AnonInfo,
            **doc("A product's bucket layout for anonymous checks", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                  ErrorCode.POLICY_DENIED, ErrorCode.QUERY_REJECTED, response_example=examples.ANON_INFO))
async def anonymous_info(name: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
                         agreement_id: Annotated[str | None, Query(max_length=64)] = None) -> AnonInfo:
    """The product's bucket layout for anonymous checks: the same for every bank whose agreement asks for no
    more than the service's minimum bucket; pass your agreement if it sets ``anon_min_bucket``."""
    out: AnonInfo = await run_in_threadpool(psi_service.anonymous_info, ctx, p, name, agreement_id, ev)
    return out


@anonymous.post("/verifications/{name}/check-anonymous", name="verify.check_anonymous", response_model=AnonCheckOut,
                **doc("Ask a product's question without naming the subject (bank)", *_SCOPE,
                      ErrorCode.QUOTA_EXCEEDED, ErrorCode.CIPHERTEXT_INVALID, ErrorCode.QUERY_REJECTED,
                      ErrorCode.CONSENT_REQUIRED, ErrorCode.CONSENT_INVALID, response_example=examples.ANON_CHECK,
                      request_example=examples.ANON_CHECK_REQUEST))
async def check_anonymous(name: str, body: AnonCheckBody, p: Heavy, ctx: Ctx, ev: Audit,
                          _idem: Idempotent) -> AnonCheckOut:
    """Ask the product's question without naming the subject: the service sees a bucket of at least k subjects;
    the answer opens only for the bank's own subject (docs/mechanisms/psi.md)."""
    ev.agreement_id = body.agreement_id
    out: AnonCheckOut = await run_in_threadpool(psi_service.check_anonymous, ctx, p, name, body, ev)
    return out


router.include_router(anonymous)

