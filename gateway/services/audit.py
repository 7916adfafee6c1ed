"""Reading the audit log as the API and the console show it: one page of the entries a principal may read
(`page`, oldest first after a ``seq``; `newest_page`, newest first before one; both scoped by
`gateway.audit.scope_for`), the counts of a filtered view (`totals`), every entry of one for an export
(`filtered`), agreement titles to show beside ids, and the report files: the monthly, quarterly and annual
reports (`report_file`) and the incident reports (`incident_file`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, true

from catalog import _tables as ct
from gateway import _tables as t
from gateway import incidents
from gateway.audit import scope_for
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.reports import entries_parquet, period_bounds, period_report, render_pdf
from policies import _tables as pt
from vocab.roles import Role

__all__ = ["PUBLIC_FIELDS", "ReportFile", "agreement_titles", "filtered", "incident_file", "newest_page", "page",
           "report_file", "totals"]

PUBLIC_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code",
                 "epsilon", "delta", "output_digest", "subject_hash", "details", "prev_hash", "hash")


def _owned(ctx: AppContext, p: Principal) -> tuple[list[str], list[str]]:
    if p.role != Role.OWNER:
        return [], []
    with ctx.engine.connect() as conn:
        ds = [r[0] for r in conn.execute(select(ct.datasets.c.name).where(ct.datasets.c.owner == p.name))]
        ags = [r[0] for r in conn.execute(select(pt.agreements.c.id).where(pt.agreements.c.owner == p.name))]
    return ds, ags


def _conditions(ctx: AppContext, p: Principal, filters: Mapping[str, str | None]) -> list[Any]:
    """``p``'s scope and ``filters`` (equality on agreement_id, dataset, actor, action, decision; ``ts_from``
    inclusive, ``ts_to`` exclusive) as conditions on the entries."""
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
    return conds


def page(ctx: AppContext, p: Principal, since: int, limit: int, filters: Mapping[str, str | None]
         ) -> dict[str, Any]:
    """One page of the entries ``p`` may read (their scope), matching ``filters`` (equality on agreement_id,
    dataset, actor, action, decision; ``ts_from`` inclusive, ``ts_to`` exclusive), after ``since``."""
    conds = _conditions(ctx, p, filters)
    rows, nxt = ctx.audit.entries(since, limit, and_(*conds) if conds else None)
    return {"entries": [{k: r[k] for k in PUBLIC_FIELDS} for r in rows], "next": nxt}


def newest_page(ctx: AppContext, p: Principal, before: int | None, limit: int, filters: Mapping[str, str | None]
                ) -> list[dict[str, Any]]:
    """One page of the entries ``p`` may read matching ``filters``, newest first, with ``seq`` below ``before``
    (``None``: from the newest)."""
    e = t.audit_entries.c
    conds = _conditions(ctx, p, filters)
    if before is not None:
        conds.append(e.seq < before)
    q = select(t.audit_entries).where(and_(*conds) if conds else true()).order_by(e.seq.desc()).limit(limit)
    with ctx.engine.connect() as conn:
        return [{k: r._mapping[k] for k in PUBLIC_FIELDS} for r in conn.execute(q)]


def totals(ctx: AppContext, p: Principal, filters: Mapping[str, str | None]) -> dict[str, int]:
    """How many entries ``p`` may read match ``filters``: in all and per decision (allow, deny, error)."""
    e = t.audit_entries.c
    conds = _conditions(ctx, p, filters)
    q = select(e.decision, func.count()).where(and_(*conds) if conds else true()).group_by(e.decision)
    with ctx.engine.connect() as conn:
        by = {d: int(n) for d, n in conn.execute(q)}
    return {"all": sum(by.values()), **{d: by.get(d, 0) for d in ("allow", "deny", "error")}}


def filtered(ctx: AppContext, p: Principal, filters: Mapping[str, str | None], batch: int = 5000
             ) -> Iterator[dict[str, Any]]:
    """Every entry ``p`` may read matching ``filters``, oldest first, read in keyset batches (exports)."""
    since = 0
    while True:
        out = page(ctx, p, since, batch, filters)
        if not out["entries"]:
            return
        yield from out["entries"]
        since = out["next"]


def agreement_titles(ctx: AppContext, ids: Iterable[str]) -> dict[str, str]:
    """Agreement id → title, for the ids given (to show names beside ids)."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    a = pt.agreements.c
    with ctx.engine.connect() as conn:
        return {r.id: r.title for r in conn.execute(select(a.id, a.title).where(a.id.in_(wanted)))}


@dataclass(frozen=True)
class ReportFile:
    """A download: its bytes, media type and attachment file name."""

    data: bytes
    media_type: str
    filename: str


def report_file(ctx: AppContext, month: str, format: str) -> ReportFile:
    """The report of a month, a quarter or a year (``YYYY-MM``, ``YYYY-Qn``, ``YYYY``) as a PDF (``pdf``), or
    the period's entries as Parquet (``parquet``): API and console."""
    period_bounds(month)
    if format == "parquet":
        return ReportFile(entries_parquet(ctx, month), "application/vnd.apache.parquet",
                          f"veilbox-audit-{month}.parquet")
    return ReportFile(render_pdf(period_report(ctx, month)), "application/pdf", f"veilbox-report-{month}.pdf")


def incident_file(ctx: AppContext, incident_id: str) -> ReportFile:
    """One incident report as a PDF: API and console."""
    inc = incidents.incident(ctx, incident_id)
    return ReportFile(incidents.render_incident_pdf(inc), "application/pdf", f"veilbox-incident-{inc['id']}.pdf")
