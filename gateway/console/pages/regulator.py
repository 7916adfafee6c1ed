"""Oversight pages: the audit log (regulators, and owners in their scope: newest first, the count of every entry
the filters match, date pickers, agreement titles beside ids, the filtered view exported as CSV or Parquet), the
chain verification, lineage, charts (regulators), the monthly, quarterly and annual reports and the incident reports
(regulators and the data authority), read through `gateway.services.audit`, `gateway.lineage`, `gateway.reports`
and `gateway.incidents`."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from fastapi.responses import Response

from catalog.errors import INVALID_REQUEST, DomainError, not_found
from gateway import incidents, lineage, reports
from gateway.console import charts
from gateway.console._web import (
    PAGE,
    audit_event,
    ctx_of,
    guarded,
    in_thread,
    render,
    signed_in,
)
from gateway.services import audit as audit_service
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


AUDIT_FILTERS = ("agreement_id", "dataset", "actor", "action", "decision")
DATES = ("date_from", "date_to")  # the date pickers (UTC days, both inclusive)


def _filters(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    """The form's filters as typed (to fill the form again) and as the service reads them (the days become
    ``ts_from`` inclusive and ``ts_to`` exclusive, the day after the last one)."""
    form = {k: request.query_params.get(k, "").strip()[:100] for k in (*AUDIT_FILTERS, *DATES)}
    service: dict[str, str] = {k: form[k] for k in AUDIT_FILTERS}
    for key, target, shift in (("date_from", "ts_from", 0), ("date_to", "ts_to", 1)):
        if form[key]:
            try:
                day = dt.date.fromisoformat(form[key])
            except ValueError:
                raise DomainError(INVALID_REQUEST, _("Pick the dates with the date fields (YYYY-MM-DD)."),
                                  [{"field": key}]) from None
            service[target] = (day + dt.timedelta(days=shift)).isoformat()
    return form, service


@router.get("/audit", name="console.audit")
@guarded
async def audit(request: Request, before: int | None = None) -> Response:
    """The log newest first, a page of `PAGE` at a time (``before``: the oldest ``seq`` of the page above), with
    the count of every entry the filters match and agreement titles beside their ids."""
    session = await signed_in(request, Role.REGULATOR, Role.OWNER, Role.AUTHORITY)
    ctx = ctx_of(request)
    form, filters = _filters(request)

    def load() -> dict[str, Any]:
        rows = audit_service.newest_page(ctx, session.principal, before, PAGE + 1, filters)
        more = len(rows) > PAGE  # one entry past the page says whether an older page exists
        rows = rows[:PAGE]
        return {"entries": rows, "next": rows[-1]["seq"] if more else None,
                "totals": audit_service.totals(ctx, session.principal, filters),
                "titles": audit_service.agreement_titles(ctx, (r["agreement_id"] for r in rows))}

    data = await in_thread(load)
    query = urlencode({k: v for k, v in form.items() if v})
    return render(request, "audit.html", session, filters=form, before=before, query=query, **data)


EXPORT_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
                 "delta", "output_digest", "subject_hash", "details", "prev_hash", "hash")


def _export(ctx: Any, principal: Any, filters: dict[str, str], fmt: str) -> bytes:
    """The filtered view (the reader's scope and filters), oldest first, as CSV or Parquet, with agreement titles."""
    rows = list(audit_service.filtered(ctx, principal, filters))
    titles = audit_service.agreement_titles(ctx, (r["agreement_id"] for r in rows))
    cols = (*EXPORT_FIELDS, "agreement_title")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in EXPORT_FIELDS] + [_cell(titles.get(r["agreement_id"] or ""))])
        return buf.getvalue().encode()
    table = pa.table({c: [r[c] for r in rows] for c in EXPORT_FIELDS}
                     | {"agreement_title": [titles.get(r["agreement_id"] or "") for r in rows]})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


@router.get("/audit/export.{fmt}", name="console.audit.export")
@guarded
async def audit_export(request: Request, fmt: str) -> Response:
    session = await signed_in(request, Role.REGULATOR, Role.OWNER, Role.AUTHORITY)
    if fmt not in ("csv", "parquet"):
        raise not_found("format")
    _, filters = _filters(request)
    audit_event(request).details.update(format=fmt, filters={k: v for k, v in filters.items() if v})
    data = await in_thread(_export, ctx_of(request), session.principal, filters, fmt)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="veilbox-audit.{fmt}"'})


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
                  eps_chart=charts.line_chart(_("ε spent per agreement, cumulative, last %(days)s days", days=days),
                                              data["days"], cumulative),
                  calls_chart=charts.line_chart(_("calls per agreement per day, last %(days)s days", days=days),
                                                data["days"], data["calls"]))


def _month(value: str | None) -> str:
    return value or dt.datetime.now(dt.UTC).strftime("%Y-%m")


#: Who reads the reports and the incident reports in the console: regulators and the data authority.
OVERSEERS = (Role.REGULATOR, Role.AUTHORITY)


@router.get("/reports", name="console.report")
@guarded
async def report(request: Request, month: str | None = None, period: str | None = None) -> Response:
    """The report of a month (``month``, or ``period=YYYY-MM``), a quarter (``period=YYYY-Qn``) or a year
    (``period=YYYY``)."""
    session = await signed_in(request, *OVERSEERS)
    label = (period or "").strip()[:10] or _month(month)
    rep = await in_thread(reports.period_report, ctx_of(request), label)
    if rep.kind == "month":
        title = _("Monthly report %(month)s", month=rep.month)
    elif rep.kind == "quarter":
        title = _("Quarterly report %(period)s", period=rep.month)
    else:
        title = _("Annual report %(period)s", period=rep.month)
    return render(request, "report.html", session, report=rep, page_title=title)


@router.get("/reports/incidents", name="console.incidents")
@guarded
async def incident_list(request: Request, kind: str | None = None) -> Response:
    """The incident reports, newest first, each with its PDF."""
    session = await signed_in(request, *OVERSEERS)
    items = await in_thread(incidents.incidents, ctx_of(request), kind or None)
    return render(request, "incidents.html", session, incidents=list(reversed(items)), kind=kind or "",
                  kinds=incidents.KINDS, kind_label=incidents.kind_label, state_label=incidents.state_label)


@router.get("/reports/incidents/{incident_id}.pdf", name="console.incident.download")
@guarded
async def incident_download(request: Request, incident_id: str) -> Response:
    await signed_in(request, *OVERSEERS)
    f = await in_thread(audit_service.incident_file, ctx_of(request), incident_id[:40])
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})


@router.get("/reports/{month}.{fmt}", name="console.report.download")
@guarded
async def report_download(request: Request, month: str, fmt: str) -> Response:
    await signed_in(request, *OVERSEERS)
    if fmt not in ("pdf", "parquet"):
        raise not_found("report")
    f = await in_thread(audit_service.report_file, ctx_of(request), month, fmt)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})
