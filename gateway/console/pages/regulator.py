"""Oversight pages: the audit log (regulators, and owners in their scope), the chain verification, lineage, charts
and the monthly reports (regulators), read through `gateway.services.audit`, `gateway.lineage` and
`gateway.reports`."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from catalog.errors import not_found
from gateway import lineage, reports
from gateway.console import charts
from gateway.console._web import (
    PAGE,
    ctx_of,
    guarded,
    in_thread,
    render,
    signed_in,
)
from gateway.services import audit as audit_service
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


AUDIT_FILTERS = ("agreement_id", "dataset", "actor", "action", "decision", "ts_from", "ts_to")


@router.get("/audit", name="console.audit")
@guarded
async def audit(request: Request, since: int = 0) -> Response:
    session = await signed_in(request, Role.REGULATOR, Role.OWNER)
    ctx = ctx_of(request)
    filters = {k: request.query_params.get(k, "").strip()[:100] for k in AUDIT_FILTERS}

    def load() -> tuple[list[dict[str, Any]], int | None]:
        rows = audit_service.page(ctx, session.principal, max(0, since), PAGE + 1, filters)["entries"]
        more = len(rows) > PAGE  # one entry past the page says whether a next page exists
        return rows[:PAGE], (rows[PAGE - 1]["seq"] if more else None)

    rows, nxt = await in_thread(load)
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(request, "audit.html", session, entries=rows, filters=filters, since=since, next=nxt,
                  query=query)


@router.get("/audit/verify", name="console.audit.verify")
@guarded
async def audit_verify(request: Request) -> Response:
    session = await signed_in(request, Role.REGULATOR)
    report = await in_thread(ctx_of(request).audit.verify)
    return render(request, "verify.html", session, report=report.as_dict())


@router.get("/lineage", name="console.lineage")
@guarded
async def lineage_page(request: Request, key: str = "") -> Response:
    session = await signed_in(request, Role.REGULATOR)
    trace = await in_thread(lineage.trace, ctx_of(request), key) if key.strip() else None
    return render(request, "lineage.html", session, key=key, trace=trace)


@router.get("/charts", name="console.charts")
@guarded
async def charts_page(request: Request, days: int = 30) -> Response:
    session = await signed_in(request, Role.REGULATOR)
    days = min(max(days, 2), 366)
    data = await in_thread(reports.series, ctx_of(request), days)
    cumulative = {a: [sum(v[: i + 1]) for i in range(len(v))] for a, v in data["epsilon"].items()}
    return render(request, "charts.html", session, days=days, data=data,
                  eps_chart=charts.line_chart(f"ε spent per agreement, cumulative, last {days} days",
                                              data["days"], cumulative),
                  calls_chart=charts.line_chart(f"calls per agreement per day, last {days} days",
                                                data["days"], data["calls"]))


def _month(value: str | None) -> str:
    return value or dt.datetime.now(dt.UTC).strftime("%Y-%m")


@router.get("/reports", name="console.report")
@guarded
async def report(request: Request, month: str | None = None) -> Response:
    session = await signed_in(request, Role.REGULATOR)
    rep = await in_thread(reports.monthly, ctx_of(request), _month(month))
    return render(request, "report.html", session, report=rep)


@router.get("/reports/{month}.{fmt}", name="console.report.download")
@guarded
async def report_download(request: Request, month: str, fmt: str) -> Response:
    await signed_in(request, Role.REGULATOR)
    if fmt not in ("pdf", "parquet"):
        raise not_found("report")
    f = await in_thread(audit_service.report_file, ctx_of(request), month, fmt)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})
