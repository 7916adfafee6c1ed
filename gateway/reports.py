"""Regulator reports: the monthly report (HTML, PDF, Parquet of the entries) and the time series behind the charts.

`monthly(ctx, "2026-11")` counts the month's audit entries per agreement, per dataset and per product (the kind
of output: private SQL, a job kind, a verification product, a scored model, secure aggregation), with allowed,
denied and failed calls, the outputs released (entries carrying an output digest) and the ε the ledger debited
net of refunds; it states the chain verification at the time of the report and the first and last ``seq`` of
the month, so the figures can be checked against the signed log. `render_pdf` lays the same figures out with
fpdf2 (pure Python); `entries_parquet` exports exactly the month's entries.

`series(ctx, days)` gives, per agreement and day, the calls (audit entries of the parties, not of the worker)
and the ε debited net of refunds (ledger), for the regulator's charts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, select

from catalog.errors import invalid
from gateway import _tables as t
from gateway.audit import FIELDS
from gateway.context import AppContext
from policies import _tables as pt

__all__ = ["MonthlyReport", "entries_parquet", "month_bounds", "monthly", "render_pdf", "series"]


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM`` → [first instant, first instant of the next month) in UTC; INVALID_REQUEST otherwise."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise invalid("month must be YYYY-MM", [{"field": "month"}]) from None
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def _iso(x: dt.datetime) -> str:
    return x.isoformat(timespec="microseconds")


def product_of(action: str, details: dict[str, Any]) -> str:
    """The product an entry belongs to, for the report's third table (console actions count with the API's)."""
    if action.startswith("console."):
        inner = product_of(action.removeprefix("console."), details)
        return inner if inner != "other" else "console"
    if action.startswith("query."):
        return "private SQL"
    if action.startswith("job"):
        kind = details.get("kind")
        return f"{kind} job" if kind else "jobs"
    if action.startswith(("verify", "verification")):
        return f"verification: {details['product']}" if details.get("product") else "verification"
    if action.startswith("model"):
        return f"model: {details['model_id']}" if details.get("model_id") else "models"
    if action.startswith("secagg."):
        return "secure aggregation"
    if action.startswith(("agreement", "usage", "negative_list")):
        return "agreements"
    if action.startswith("dataset"):
        return "catalog"
    if action.startswith(("audit", "report", "lineage", "charts")):
        return "audit"
    if action.startswith(("principal", "login", "logout", "home", "request.", "unmatched")):
        return "identities and sessions"
    return "other"


@dataclass
class Row:
    name: str
    calls: int = 0
    allowed: int = 0
    denied: int = 0
    failed: int = 0
    outputs: int = 0

    def add(self, decision: str, digest: str | None) -> None:
        self.calls += 1
        if decision == "allow":
            self.allowed += 1
        elif decision == "deny":
            self.denied += 1
        else:
            self.failed += 1
        if digest:
            self.outputs += 1


@dataclass
class MonthlyReport:
    month: str
    generated_at: str
    entries: int
    first_seq: int | None
    last_seq: int | None
    chain: dict[str, Any]
    agreements: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[Row] = field(default_factory=list)
    products: list[Row] = field(default_factory=list)
    actions: list[tuple[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def rows(xs: list[Row]) -> list[dict[str, Any]]:
            return [x.__dict__ for x in xs]

        return {"month": self.month, "generated_at": self.generated_at, "entries": self.entries,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "chain": self.chain,
                "agreements": self.agreements, "datasets": rows(self.datasets), "products": rows(self.products),
                "actions": [{"action": a, "count": n} for a, n in self.actions]}


def _month_entries(ctx: AppContext, month: str) -> list[dict[str, Any]]:
    start, end = month_bounds(month)
    e = t.audit_entries.c
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(t.audit_entries).where(and_(e.ts >= _iso(start), e.ts < _iso(end)))
                            .order_by(e.seq)).all()
    return [dict(r._mapping) for r in rows]


def _epsilon_by_agreement(ctx: AppContext, start: dt.datetime, end: dt.datetime) -> dict[str, Fraction]:
    b = pt.budget_entries.c
    out: dict[str, Fraction] = defaultdict(Fraction)
    with ctx.engine.connect() as conn:
        for r in conn.execute(select(b.agreement_id, b.kind, b.epsilon).where(and_(b.ts >= start, b.ts < end))):
            sign = 1 if r.kind == "debit" else -1
            out[r.agreement_id] += sign * Fraction(r.epsilon)
    return out


def monthly(ctx: AppContext, month: str) -> MonthlyReport:
    start, end = month_bounds(month)
    entries = _month_entries(ctx, month)
    chain = ctx.audit.verify().as_dict()
    per_agreement: dict[str, Row] = {}
    per_dataset: dict[str, Row] = {}
    per_product: dict[str, Row] = {}
    actions: Counter[str] = Counter()
    for x in entries:
        details = json.loads(x["details"]) if x["details"] else {}
        actions[x["action"]] += 1
        if x["agreement_id"]:
            per_agreement.setdefault(x["agreement_id"], Row(x["agreement_id"])).add(x["decision"], x["output_digest"])
        for ds in (x["dataset"] or "").split(","):
            if ds:
                per_dataset.setdefault(ds, Row(ds)).add(x["decision"], x["output_digest"])
        product = product_of(x["action"], details if isinstance(details, dict) else {})
        per_product.setdefault(product, Row(product)).add(x["decision"], x["output_digest"])
    eps = _epsilon_by_agreement(ctx, start, end)
    with ctx.engine.connect() as conn:
        parties = {r.id: (r.owner, r.grantee, r.title) for r in
                   conn.execute(select(pt.agreements.c.id, pt.agreements.c.owner, pt.agreements.c.grantee,
                                       pt.agreements.c.title))}
    agreements = []
    for aid in sorted(set(per_agreement) | set(eps)):
        row = per_agreement.get(aid, Row(aid))
        owner, grantee, title = parties.get(aid, (None, None, None))
        agreements.append({**row.__dict__, "owner": owner, "grantee": grantee, "title": title,
                           "epsilon_debited": float(eps.get(aid, Fraction(0))),
                           "epsilon_exact": str(eps.get(aid, Fraction(0)))})
    return MonthlyReport(
        month=month, generated_at=_iso(dt.datetime.now(dt.UTC)), entries=len(entries),
        first_seq=entries[0]["seq"] if entries else None, last_seq=entries[-1]["seq"] if entries else None,
        chain=chain, agreements=agreements, datasets=sorted(per_dataset.values(), key=lambda r: r.name),
        products=sorted(per_product.values(), key=lambda r: (-r.calls, r.name)), actions=actions.most_common())


def entries_parquet(ctx: AppContext, month: str) -> bytes:
    """The month's audit entries, every field and its hash, as Parquet (zstd)."""
    rows = _month_entries(ctx, month)
    cols = {k: [r[k] for r in rows] for k in (*FIELDS, "hash")}
    schema = pa.schema([(k, pa.int64() if k == "seq" else pa.string()) for k in cols])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols, schema=schema), buf, compression="zstd")
    return buf.getvalue()


def render_pdf(report: MonthlyReport) -> bytes:
    """The report as a PDF (fpdf2, core fonts: text is kept to Latin-1)."""
    from fpdf import FPDF

    def text(value: Any) -> str:
        return str(value).encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(f"Veilbox monthly report {report.month}")
    pdf.set_author("Veilbox")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, text(f"Veilbox monthly report - {report.month}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    chain = report.chain
    status = "verified" if chain.get("ok") else f"BROKEN at seq {chain.get('first_bad_seq')} ({chain.get('reason')})"
    for line in (f"Generated {report.generated_at}",
                 f"Audit chain: {status}; {chain.get('entries')} entries, head {str(chain.get('head'))[:32]}",
                 f"This month: {report.entries} entries, seq {report.first_seq} to {report.last_seq}"):
        pdf.cell(0, 6, text(line), new_x="LMARGIN", new_y="NEXT")

    def table(title: str, header: list[str], rows: list[list[Any]], widths: list[int]) -> None:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 8)
        for h, w in zip(header, widths, strict=True):
            pdf.cell(w, 6, text(h), border=1)
        pdf.ln()
        pdf.set_font("Helvetica", "", 8)
        if not rows:
            pdf.cell(sum(widths), 6, "none", border=1, new_x="LMARGIN", new_y="NEXT")
        for row in rows:
            for v, w in zip(row, widths, strict=True):
                pdf.cell(w, 6, text(v)[: max(4, w // 2)], border=1)
            pdf.ln()

    counts = ["calls", "allowed", "denied", "failed", "outputs"]
    table("Per agreement", ["agreement", "owner", "grantee", *counts, "epsilon"],
          [[a["name"], a["owner"], a["grantee"], *(a[c] for c in counts), f"{a['epsilon_debited']:.4g}"]
           for a in report.agreements], [40, 25, 25, 14, 14, 14, 14, 14, 18])
    table("Per dataset", ["dataset", *counts], [[r.name, *(getattr(r, c) for c in counts)] for r in report.datasets],
          [60, 20, 20, 20, 20, 20])
    table("Per product", ["product", *counts], [[r.name, *(getattr(r, c) for c in counts)] for r in report.products],
          [60, 20, 20, 20, 20, 20])
    return bytes(pdf.output())


def series(ctx: AppContext, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per agreement and day over the last ``days`` days: party calls and net ε debited."""
    now = now or dt.datetime.now(dt.UTC)
    first = (now - dt.timedelta(days=days - 1)).date()
    labels = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    e, b = t.audit_entries.c, pt.budget_entries.c
    calls: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    eps: dict[str, list[float]] = defaultdict(lambda: [0.0] * days)
    index = {d: i for i, d in enumerate(labels)}
    with ctx.engine.connect() as conn:
        for r in conn.execute(select(e.agreement_id, e.ts).where(
                and_(e.ts >= _iso(start), e.agreement_id.is_not(None), e.role != "system"))):
            i = index.get(r.ts[:10])
            if i is not None:
                calls[r.agreement_id][i] += 1
        for d in conn.execute(select(b.agreement_id, b.kind, b.epsilon, b.ts).where(b.ts >= start)):
            ts = d.ts if d.ts.tzinfo else d.ts.replace(tzinfo=dt.UTC)
            i = index.get(ts.date().isoformat())
            if i is not None:
                eps[d.agreement_id][i] += (1 if d.kind == "debit" else -1) * float(Fraction(d.epsilon))
    names = sorted(set(calls) | set(eps))
    return {"days": labels, "agreements": names, "calls": {a: calls[a] for a in names},
            "epsilon": {a: eps[a] for a in names}}
