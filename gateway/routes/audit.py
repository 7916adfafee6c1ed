"""Audit log: scoped listing, chain verification and export (docs/api.md, "Audit")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import and_, select

from catalog import _tables as ct
from catalog.errors import invalid
from gateway import _tables as t
from gateway.audit import scope_for
from gateway.context import AppContext
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.audit import PARQUET, PDF, AuditPage, ChainReport, Lineage, MonthlyReport, PublicKey
from gateway.deps import Audit, Ctx, CurrentPrincipal, Regulator
from gateway.identities import Principal
from gateway.lineage import trace
from gateway.reports import entries_parquet, month_bounds, monthly, render_pdf
from policies import _tables as pt

router = APIRouter(tags=["audit"])

PUBLIC_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code",
                 "epsilon", "delta", "output_digest", "subject_hash", "details", "prev_hash", "hash")


def _owned(ctx: AppContext, p: Principal) -> tuple[list[str], list[str]]:
    if p.role.value != "owner":
        return [], []
    with ctx.engine.connect() as conn:
        ds = [r[0] for r in conn.execute(select(ct.datasets.c.name).where(ct.datasets.c.owner == p.name))]
        ags = [r[0] for r in conn.execute(select(pt.agreements.c.id).where(pt.agreements.c.owner == p.name))]
    return ds, ags


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
    return page(ctx, p, since, limit, filters)


def page(ctx: AppContext, p: Principal, since: int, limit: int, filters: Mapping[str, str | None]
         ) -> dict[str, Any]:
    """One page of the entries ``p`` may read (their scope), matching ``filters`` (equality on agreement_id,
    dataset, actor, action, decision; ``ts_from`` inclusive, ``ts_to`` exclusive), after ``since``."""
    e = t.audit_entries.c
    conds: list[Any] = []
    scope = scope_for(p.role.value, p.name, *_owned(ctx, p))
    if scope is not None:
        conds.append(scope)
    for col in (e.agreement_id, e.dataset, e.actor, e.action, e.decision):
        if filters.get(col.name):
            conds.append(col == filters[col.name])
    if filters.get("ts_from"):
        conds.append(e.ts >= filters["ts_from"])
    if filters.get("ts_to"):
        conds.append(e.ts < filters["ts_to"])
    rows, nxt = ctx.audit.entries(since, limit, and_(*conds) if conds else None)
    return {"entries": [{k: r[k] for k in PUBLIC_FIELDS} for r in rows], "next": nxt}


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
async def monthly_report(_: Regulator, ctx: Ctx, month: str = Query(..., description="YYYY-MM (UTC)"),
                         format: str = Query("json", description="json | pdf | parquet (the month's entries)"),
                         ) -> Response:
    """The regulator's monthly report: counts per agreement, dataset and product, ε debited, chain status."""
    if format not in ("json", "pdf", "parquet"):
        raise invalid("format must be json, pdf or parquet", [{"field": "format"}])
    if format == "json":
        rep = await run_in_threadpool(monthly, ctx, month)
        return JSONResponse(rep.as_json())
    return await report_download(ctx, month, format)


async def report_download(ctx: AppContext, month: str, format: str) -> Response:
    """The month's report as a PDF, or its entries as Parquet, as an attachment (API and console)."""
    month_bounds(month)
    if format == "parquet":
        data = await run_in_threadpool(entries_parquet, ctx, month)
        return Response(data, media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": f'attachment; filename="veilbox-audit-{month}.parquet"'})
    rep = await run_in_threadpool(monthly, ctx, month)
    pdf = await run_in_threadpool(render_pdf, rep)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="veilbox-report-{month}.pdf"'})


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
            **doc("The service's Ed25519 public key (receipts and checkpoints)"))
def public_key(_: CurrentPrincipal, ctx: Ctx) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    pem = ctx.keys.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"key_id": ctx.keys.key_id, "algorithm": "ed25519", "hash_alg": ctx.audit.alg, "pem": pem.decode()}
