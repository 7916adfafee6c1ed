"""Audit log: scoped listing, chain verification and export (docs/api.md, "Audit")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from catalog.errors import invalid
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.audit import PARQUET, PDF, AuditPage, ChainReport, Lineage, MonthlyReport, PublicKey
from gateway.deps import Audit, Ctx, CurrentPrincipal, Regulator
from gateway.lineage import trace
from gateway.reports import monthly
from gateway.services import audit as audit_service
from vocab.i18n import language_of, set_language

router = APIRouter(tags=["audit"])

@router.get("/audit", name="audit.list", response_model=AuditPage, **OUT,
            **doc("The audit entries in your scope, one page at a time"))
def list_entries(
    p: CurrentPrincipal,
    ctx: Ctx,
    since: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    agreement_id: str | None = None,
    dataset: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    ts_from: str | None = Query(None, description="ISO-8601 lower bound (inclusive)"),
    ts_to: str | None = Query(None, description="ISO-8601 upper bound (exclusive)"),
) -> dict[str, Any]:
    filters = {"agreement_id": agreement_id, "dataset": dataset, "actor": actor, "action": action,
               "decision": decision, "ts_from": ts_from, "ts_to": ts_to}
    return audit_service.page(ctx, p, since, limit, filters)


@router.get("/audit/verify", name="audit.verify", response_model=ChainReport, **OUT,
            **doc("Verify the whole hash chain and its signed checkpoints (regulator)", ErrorCode.POLICY_DENIED))
async def verify(_: Regulator, ctx: Ctx) -> dict[str, Any]:
    report = await run_in_threadpool(ctx.audit.verify)
    return report.as_dict()


@router.get("/audit/export", name="audit.export", response_class=Response,
            **doc("Every audit entry as Parquet (regulator)", ErrorCode.POLICY_DENIED, media=PARQUET))
async def export(_: Regulator, ctx: Ctx, format: str = Query("parquet")) -> Response:
    if format != "parquet":
        raise invalid("only format=parquet is supported")
    data = await run_in_threadpool(ctx.audit.export_parquet)
    return Response(data, media_type="application/vnd.apache.parquet",
                    headers={"Content-Disposition": 'attachment; filename="veilbox-audit.parquet"'})


@router.get("/audit/report", name="audit.report",
            **doc("The monthly report as JSON or PDF, or the month's entries as Parquet (regulator)",
                  ErrorCode.POLICY_DENIED, model=MonthlyReport, media={"application/json": {}, **PDF, **PARQUET}))
async def monthly_report(_: Regulator, ctx: Ctx, request: Request,
                         month: str = Query(..., description="YYYY-MM (UTC)"),
                         format: str = Query("json", description="json | pdf | parquet (the month's entries)"),
                         ) -> Response:
    """The regulator's monthly report: counts per agreement, dataset and product, ε debited, chain status."""
    # The PDF is in the language of Accept-Language (zh-CN or en), else the server's (VEILBOX_LANG).
    set_language(language_of(request.headers.get("accept-language")))
    if format not in ("json", "pdf", "parquet"):
        raise invalid("format must be json, pdf or parquet", [{"field": "format"}])
    if format == "json":
        rep = await run_in_threadpool(monthly, ctx, month)
        return JSONResponse(rep.as_json())
    f = await run_in_threadpool(audit_service.report_file, ctx, month, format)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})


@router.get("/lineage/{key:path}", name="audit.lineage", response_model=Lineage, **OUT,
            **doc("Where a released output came from (regulator)", ErrorCode.POLICY_DENIED,
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def output_lineage(key: str, _: Regulator, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Where a released output came from: output digest (or job id) → job → agreement → dataset fingerprints,
    the model record and every audit entry carrying it."""
    out = trace(ctx, key)
    ev.agreement_id = (out.get("agreement") or {}).get("id")
    ev.details["key"] = key[:100]
    return out


@router.get("/audit/public-key", name="audit.public_key", response_model=PublicKey, **OUT,
            **doc("The service's signing public key (receipts and checkpoints): Ed25519 or SM2, the home's suite"))
def public_key(_: CurrentPrincipal, ctx: Ctx) -> dict[str, str]:
    pub = ctx.keys.public  # the home's suite (cryptosuite): Ed25519 or SM2, the algorithm named in the PEM too
    return {"key_id": ctx.keys.key_id, "algorithm": pub.algorithm, "hash_alg": ctx.audit.alg, "pem": pub.pem}
