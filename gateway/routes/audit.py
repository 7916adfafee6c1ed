"""Audit log: scoped listing, chain verification and export; the monthly, quarterly and annual reports and the
incident reports (docs/api.md, "Audit")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from catalog.errors import invalid
from gateway import incidents
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.audit import (
    PARQUET,
    PDF,
    AuditPage,
    ChainReport,
    IncidentReport,
    Lineage,
    MonthlyReport,
    PublicKey,
)
from gateway.deps import Audit, Ctx, CurrentPrincipal, Regulator, require_role
from gateway.identities import Principal, RoleName
from gateway.lineage import trace
from gateway.reports import month_bounds, period_report
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


#: Who reads the reports and the incident reports: regulators and the data authority.
Overseer = Annotated[Principal, require_role(RoleName.REGULATOR, RoleName.AUTHORITY)]


@router.get("/audit/report", name="audit.report",
            **doc("The monthly, quarterly or annual report as JSON or PDF, or the period's entries as Parquet "
                  "(regulator, data authority)",
                  ErrorCode.POLICY_DENIED, ErrorCode.INVALID_REQUEST, model=MonthlyReport,
                  media={"application/json": {}, **PDF, **PARQUET}))
async def monthly_report(_: Overseer, ctx: Ctx, request: Request,
                         month: str | None = Query(None, description="YYYY-MM (UTC): a monthly report"),
                         period: str | None = Query(None, description="YYYY-MM, YYYY-Qn or YYYY (UTC): a month, "
                                                                      "a quarter or a year (instead of month)"),
                         format: str = Query("json", description="json | pdf | parquet (the period's entries)"),
                         ) -> Response:
    """The report of a month, a quarter or a year: counts per agreement, dataset and product, ε debited, chain
    status; a quarter's or a year's figures are the sum of its months'."""
    # The PDF is in the language of Accept-Language (zh-CN or en), else the server's (VEILBOX_LANG).
    set_language(language_of(request.headers.get("accept-language")))
    if (month is None) == (period is None):
        raise invalid("give month or period", [{"field": "period"}])
    label = month if month is not None else str(period)
    if month is not None:
        month_bounds(month)
    if format not in ("json", "pdf", "parquet"):
        raise invalid("format must be json, pdf or parquet", [{"field": "format"}])
    if format == "json":
        rep = await run_in_threadpool(period_report, ctx, label)
        return JSONResponse(rep.as_json())
    f = await run_in_threadpool(audit_service.report_file, ctx, label, format)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})


@router.get("/reports/incidents", name="report.incidents", response_model=list[IncidentReport], **OUT,
            **doc("The incident reports: suspensions, rectification orders (整改), withdrawals and disposals, oldest "
                  "first (regulator, data authority)", ErrorCode.POLICY_DENIED, ErrorCode.INVALID_REQUEST))
async def incident_list(_: Overseer, ctx: Ctx,
                        kind: str | None = Query(None, description="suspension | principal_suspension | "
                                                                   "rectification | withdrawal | disposal | "
                                                                   "agreement_disposal"),
                        ) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await run_in_threadpool(incidents.incidents, ctx, kind)
    return result


@router.get("/reports/incidents/{incident_id}", name="report.incident",
            **doc("One incident report as JSON or PDF (regulator, data authority)", ErrorCode.POLICY_DENIED,
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.INVALID_REQUEST, model=IncidentReport,
                  media={"application/json": {}, **PDF}))
async def incident_report(incident_id: str, _: Overseer, ctx: Ctx, request: Request,
                          format: str = Query("json", description="json | pdf")) -> Response:
    """What happened, to which agreement, dataset or principal, when, by whom, the reasons, the follow-up and the
    audit entries it is built from."""
    set_language(language_of(request.headers.get("accept-language")))
    if format not in ("json", "pdf"):
        raise invalid("format must be json or pdf", [{"field": "format"}])
    if format == "json":
        return JSONResponse(await run_in_threadpool(incidents.incident, ctx, incident_id[:40]))
    f = await run_in_threadpool(audit_service.incident_file, ctx, incident_id[:40])
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
