"""Multi-owner signing and revenue statements (收益分成, docs/revenue.md; docs/api.md, "Revenue").

A co-owner of a multi-owner agreement signs its part bound to the document hash it read; the parties, the data
authority and regulators read the signatures. Monthly statements — per agreement and per owner — are JSON, CSV or
PDF; who may read them: the agreement's parties (proposer, co-owners, grantee), the data authority and regulators;
an owner's statement: that owner, or the authority and regulators naming it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

import policies
from catalog.errors import invalid
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.audit import PDF
from gateway.contract.revenue import CSV, HASH_EXAMPLE, AgreementSignature, OwnerStatement, Statement
from gateway.deps import Audit, Ctx, CurrentPrincipal, Owner
from gateway.services import statements
from gateway.services.agreements import agreement_entry, note_expiry
from gateway.services.jobs import actor_of
from vocab.i18n import language_of, set_language

router = APIRouter(tags=["agreements"])  # the fuzzing and the guide group them with the agreements


class SignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_hash: str = Field(..., max_length=80, description="the document hash of the version you read and sign")


@router.post("/agreements/{agreement_id}/sign", name="agreement.sign", response_model=AgreementSignature, **OUT,
             **doc("Sign your part of a multi-owner agreement (a co-owner)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                   ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE, ErrorCode.INVALID_REQUEST,
                   request_example={"document_hash": HASH_EXAMPLE}))
def sign(agreement_id: str, owner: Owner, ctx: Ctx, ev: Audit, body: SignBody) -> dict[str, Any]:
    """A co-owner signs its part (its datasets) of the proposed version whose ``document_hash`` it read; the
    grantee may accept once every co-owner has signed the current version. An amendment voids older signatures."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    sig = policies.sign_agreement(ctx.engine, actor_of(owner), agreement_id, document_hash=body.document_hash,
                                  journal=agreement_entry(ctx, ev, agreement_id, "version", "document_hash"))
    ev.details["datasets"] = list(sig.datasets)
    return sig.as_json()


@router.get("/agreements/{agreement_id}/signatures", name="agreement.signatures",
            response_model=list[AgreementSignature], **OUT,
            **doc("The co-owners' signatures of a multi-owner agreement", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def signatures(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> list[dict[str, Any]]:
    """Every signature, oldest version first; ``current`` marks those on the current document hash."""
    ev.agreement_id = agreement_id
    return [s.as_json() for s in policies.agreement_signatures(ctx.engine, actor_of(p), agreement_id)]


def _format(fmt: str) -> str:
    if fmt not in statements.FORMATS:
        raise invalid("format must be json, csv or pdf", [{"field": "format"}])
    return fmt


def _answer(f: statements.StatementFile, fmt: str) -> Response:
    if fmt == "json":
        return Response(f.data, media_type=f.media_type)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})


@router.get("/statements", name="statement.agreement",
            **doc("An agreement's monthly revenue statement as JSON, CSV or PDF (its parties, authority, regulator)",
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.INVALID_REQUEST, model=Statement,
                  media={"application/json": {}, **CSV, **PDF}))
async def agreement_statement(p: CurrentPrincipal, ctx: Ctx, ev: Audit, request: Request,
                              agreement: str = Query(..., max_length=40, description="the agreement id"),
                              month: str = Query(..., max_length=7, description="YYYY-MM (UTC)"),
                              format: str = Query("json", description="json | csv | pdf")) -> Response:
    """Usage from the meters, charges by the price schedule and each data-source owner's part, to the cent."""
    set_language(language_of(request.headers.get("accept-language")))
    ev.agreement_id = agreement
    fmt = _format(format)
    st = await run_in_threadpool(statements.agreement_statement, ctx, actor_of(p), agreement, month)
    ev.details.update(month=month, format=fmt)
    f = await run_in_threadpool(statements.render, st, fmt)
    return _answer(f, fmt)


@router.get("/statements/owner", name="statement.owner",
            **doc("An owner's monthly revenue statement as JSON, CSV or PDF (the owner; authority and regulators "
                  "name it)", ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.INVALID_REQUEST, model=OwnerStatement,
                  media={"application/json": {}, **CSV, **PDF}))
async def owner_statement(p: CurrentPrincipal, ctx: Ctx, ev: Audit, request: Request,
                          month: str = Query(..., max_length=7, description="YYYY-MM (UTC)"),
                          owner: str | None = Query(None, max_length=64,
                                                    description="the owner (data authority and regulators only)"),
                          format: str = Query("json", description="json | csv | pdf")) -> Response:
    """The owner's part of every agreement that lists its datasets, and its totals per currency."""
    set_language(language_of(request.headers.get("accept-language")))
    fmt = _format(format)
    st = await run_in_threadpool(statements.owner_statement, ctx, actor_of(p), month, owner)
    ev.details.update(month=month, format=fmt, owner=st.owner)
    f = await run_in_threadpool(statements.render, st, fmt)
    return _answer(f, fmt)

