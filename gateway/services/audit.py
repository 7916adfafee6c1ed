"""Reading the audit log as the API and the console show it: one page of the entries a principal may read
(`page`, scoped by `gateway.audit.scope_for`), and the regulator's monthly report files (`report_file`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select

from catalog import _tables as ct
from gateway import _tables as t
from gateway.audit import scope_for
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.reports import entries_parquet, month_bounds, monthly, render_pdf
from policies import _tables as pt
from vocab.roles import Role

__all__ = ["PUBLIC_FIELDS", "ReportFile", "page", "report_file"]

PUBLIC_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code",
                 "epsilon", "delta", "output_digest", "subject_hash", "details", "prev_hash", "hash")


def _owned(ctx: AppContext, p: Principal) -> tuple[list[str], list[str]]:
    if p.role != Role.OWNER:
        return [], []
    with ctx.engine.connect() as conn:
        ds = [r[0] for r in conn.execute(select(ct.datasets.c.name).where(ct.datasets.c.owner == p.name))]
        ags = [r[0] for r in conn.execute(select(pt.agreements.c.id).where(pt.agreements.c.owner == p.name))]
    return ds, ags


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


@dataclass(frozen=True)
class ReportFile:
    """A download: its bytes, media type and attachment file name."""

    data: bytes
    media_type: str
    filename: str


def report_file(ctx: AppContext, month: str, format: str) -> ReportFile:
    """The month's report as a PDF (``pdf``), or its entries as Parquet (``parquet``): API and console."""
    month_bounds(month)
    if format == "parquet":
        return ReportFile(entries_parquet(ctx, month), "application/vnd.apache.parquet",
                          f"veilbox-audit-{month}.parquet")
    return ReportFile(render_pdf(monthly(ctx, month)), "application/pdf", f"veilbox-report-{month}.pdf")
