"""Revenue statements (收益分成) as files: JSON, CSV and PDF (docs/revenue.md).

The figures are `policies.revenue`'s (usage from the meters, exact charges, the split to the cent); this module only
lays them out. The PDF reuses the reports' layout and bundled fonts (`gateway.reports.PdfWriter`, `gateway.fonts`),
in the current language (`vocab.i18n`). A statement holds counts and amounts per agreement and owner only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.context import AppContext
from gateway.reports import PdfWriter
from policies import revenue
from policies.actor import Actor
from vocab.i18n import _

FORMATS = ("json", "csv", "pdf")
_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@dataclass(frozen=True)
class StatementFile:
    """A rendered statement: its bytes, media type and file name."""

    data: bytes
    media_type: str
    filename: str


def agreement_statement(ctx: AppContext, actor: Actor, agreement_id: str, month: str) -> revenue.Statement:
    """The agreement's statement for ``month`` (its parties, the data authority, regulators)."""
    return revenue.agreement_statement(ctx.engine, actor, agreement_id, month)


def owner_statement(ctx: AppContext, actor: Actor, month: str, owner: str | None) -> revenue.OwnerStatement:
    """An owner's statement for ``month`` (the owner itself; the data authority and regulators name ``owner``)."""
    return revenue.owner_statement(ctx.engine, actor, month, owner=owner)


def _line_label(line: str) -> str:
    return {"calls": _("Calls"), "jobs": _("Jobs"), "epsilon": _("ε drawn"), "scores": _("Encrypted scores"),
            "checks": _("Checks")}.get(line, line)


def _pdf(title: str, subtitle: list[str], header: list[str], rows: list[list[str]]) -> bytes:
    doc = PdfWriter(title, lambda page: _("Page %(page)s", page=page))
    doc.para(title, 15, "B", 8)
    for line in subtitle:
        doc.para(line)
    doc.pdf.ln(3)
    doc.pdf.set_font("sans", "", 9)
    with doc.pdf.table(text_align="LEFT") as table:
        for r in [header, *rows]:
            row = table.row()
            for cell in r:
                row.cell(str(cell))
    return doc.output()


def _agreement_pdf(s: revenue.Statement) -> bytes:
    body = s.as_json()
    cur = s.currency or "-"
    rows = [[_line_label(x["line"]), str(x["quantity"]), x["exact"], x["amount"]] for x in body["lines"]]
    rows.append([_("Total"), "", body["total"]["exact"], body["total"]["amount"]])
    rows += [[_("Owner %(owner)s", owner=o["owner"]), o["weight"], "", o["amount"]] for o in body["owners"]]
    subtitle = [
        _("Agreement %(id)s, grantee %(grantee)s", id=s.agreement_id, grantee=s.grantee),
        _("Currency: %(cur)s. Category: %(cat)s. Split: %(split)s.", cur=cur, cat=s.category, split=s.split),
        _("Amounts are rounded once to the cent, half up; lines and owners are allocated by the largest "
          "remainder, so they sum exactly to the total."),
    ]
    title = _("Revenue statement (收益分成) %(month)s: %(title)s", month=s.month, title=s.title)
    return _pdf(title, subtitle, [_("Line"), _("Quantity"), _("Exact"), _("Amount")], rows)


def _owner_pdf(st: revenue.OwnerStatement) -> bytes:
    body = st.as_json()
    rows = [[e["agreement_id"], e["currency"] or "-", e["weight"], e["agreement_total"], e["amount"]]
            for e in body["agreements"]]
    rows += [[_("Total"), t["currency"], "", "", t["amount"]] for t in body["totals"]]
    title = _("Owner statement (收益分成) %(month)s: %(owner)s", month=st.month, owner=st.owner)
    return _pdf(title, [], [_("Agreement"), _("Currency"), _("Share"), _("Agreement total"), _("Amount")], rows)


def render(statement: revenue.Statement | revenue.OwnerStatement, fmt: str) -> StatementFile:
    """``statement`` as ``fmt`` (``json``, ``csv`` or ``pdf``)."""
    if isinstance(statement, revenue.Statement):
        stem = f"statement-{statement.agreement_id}-{statement.month}"
        body: dict[str, Any] = statement.as_json()
        csv_text = revenue.agreement_csv(statement)
        make_pdf = _agreement_pdf
    else:
        stem = f"statement-{statement.owner}-{statement.month}"
        body = statement.as_json()
        csv_text = revenue.owner_csv(statement)
        make_pdf = _owner_pdf  # type: ignore[assignment]
    if fmt == "csv":
        data = csv_text.encode()
    elif fmt == "pdf":
        data = make_pdf(statement)  # type: ignore[arg-type]
    else:
        data = json.dumps(body, ensure_ascii=False).encode()
    return StatementFile(data, _MEDIA[fmt], f"{stem}.{fmt}")
