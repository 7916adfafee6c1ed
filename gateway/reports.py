"""Regulator and authority reports: the monthly, quarterly and annual reports (HTML, PDF, Parquet of the entries)
from one generator, and the time series behind the charts. Incident reports (one per disposal, suspension or
rectification order) are `gateway.incidents`.

`period_report(ctx, period)` takes a period label, ``YYYY-MM`` (a month), ``YYYY-Qn`` (a quarter) or ``YYYY`` (a
year, `period_bounds`), and builds the same `MonthlyReport` for it: a quarter's or a year's counts and ε are exactly
the sum of its months' (``months`` lists them, the charts use them). `monthly(ctx, "2026-11")` is the month's report:
it counts the month's audit entries per agreement, per dataset and per product (the kind
of output: private SQL, a job kind, a verification product, a scored model, secure aggregation), with allowed,
denied and failed calls, the outputs released (entries carrying an output digest) and the ε the ledger debited
net of refunds; each agreement row names its title and its parties (owner and grantee by name) and its budget
(granted, spent to date, left). It states the chain verification at the time of the report, the signed audit head
it checked (seq, hash, the signature named by the home suite's algorithm, Ed25519 or SM2, and the key id) and the
first and last ``seq`` of the month, so the figures can be checked against the signed log; ``daily`` holds the
month's party calls and net ε per day (the charts).

`render_pdf` lays the same figures out with fpdf2 in the current language (`vocab.i18n`): the bundled fonts
(`gateway.fonts`: DejaVu Sans, and Droid Sans Fallback for every CJK character) are embedded, so Chinese titles,
names and labels print; table cells wrap instead of being cut; every page is numbered "n of N"; ε is a decimal
(`decimal_text`: 2.1, never 21/10); a missing value prints as "—", never "None"; two bar charts (ε per agreement,
calls per day). `entries_parquet` exports exactly the month's entries.

The report of a quarter or a year uses its own titles ("quarterly report", "annual report", "this period"); the
monthly report's words are unchanged.

`series(ctx, days)` gives, per agreement and day, the calls (audit entries of the parties, not of the worker)
and the ε debited net of refunds (ledger), for the regulator's charts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, select

from catalog.errors import DomainError, invalid
from gateway import _tables as t
from gateway import fonts
from gateway.audit import FIELDS
from gateway.context import AppContext
from policies import _tables as pt
from vocab.i18n import _

__all__ = ["PERIOD_KINDS", "MonthlyReport", "decimal_text", "entries_parquet", "month_bounds", "monthly",
           "period_bounds", "period_kind", "period_report", "render_pdf", "series"]

NONE = "—"  # a value the store does not have: never printed as "None"


def decimal_text(value: Fraction | float | str | int | None, places: int = 9) -> str:
    """An exact amount as a decimal (``Fraction(21, 10)`` → ``2.1``; at most ``places`` decimals, no exponent)."""
    if value is None:
        return NONE
    fr = Fraction(value)
    with decimal.localcontext() as c:
        c.prec = 40
        q = (decimal.Decimal(fr.numerator) / decimal.Decimal(fr.denominator)).quantize(
            decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_EVEN)
    out = format(q.normalize(), "f")
    return "0" if out in ("-0", "0") else out


def text_of(value: Any) -> str:
    """A cell's text: None is "—"; exact amounts are decimals."""
    if value is None:
        return NONE
    if isinstance(value, Fraction):
        return decimal_text(value)
    return str(value)


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM`` → [first instant, first instant of the next month) in UTC; INVALID_REQUEST otherwise."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise invalid("month must be YYYY-MM", [{"field": "month"}]) from None
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


#: The periods a report covers: a month (``2026-11``), a quarter (``2026-Q3``), a year (``2026``).
PERIOD_KINDS = ("month", "quarter", "year")


def period_kind(period: str) -> str:
    """``month``, ``quarter`` or ``year`` by the label's form (INVALID_REQUEST for any other form)."""
    period_bounds(period)
    return "quarter" if "-Q" in period else "month" if "-" in period else "year"


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM``, ``YYYY-Qn`` (n = 1..4) or ``YYYY`` → [first instant, first instant after) in UTC;
    INVALID_REQUEST otherwise."""
    text = period if isinstance(period, str) else ""
    year_text, sep, rest = text.partition("-")
    if sep and rest.startswith("Q"):
        if len(year_text) != 4 or not year_text.isdigit() or rest not in ("Q1", "Q2", "Q3", "Q4"):
            raise invalid("period must be YYYY-MM, YYYY-Qn or YYYY", [{"field": "period"}])
        first = 3 * (int(rest[1]) - 1) + 1
        start = dt.datetime(int(year_text), first, 1, tzinfo=dt.UTC)
        end = dt.datetime(int(year_text) + 1, 1, 1, tzinfo=dt.UTC) if first == 10 else \
            dt.datetime(int(year_text), first + 3, 1, tzinfo=dt.UTC)
        return start, end
    if sep:
        try:
            return month_bounds(text)
        except DomainError:
            raise invalid("period must be YYYY-MM, YYYY-Qn or YYYY", [{"field": "period"}]) from None
    if len(text) != 4 or not text.isdigit() or int(text) < 1:
        raise invalid("period must be YYYY-MM, YYYY-Qn or YYYY", [{"field": "period"}])
    return dt.datetime(int(text), 1, 1, tzinfo=dt.UTC), dt.datetime(int(text) + 1, 1, 1, tzinfo=dt.UTC)


def months_of(period: str) -> list[str]:
    """The ``YYYY-MM`` months a period covers, in order."""
    start, end = period_bounds(period)
    out, cur = [], start
    while cur < end:
        out.append(cur.strftime("%Y-%m"))
        cur = (cur + dt.timedelta(days=32)).replace(day=1)
    return out


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
    head: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, str] = field(default_factory=dict)
    daily: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "month"  # month | quarter | year; ``month`` holds the period's label (2026-11, 2026-Q3, 2026)
    months: list[dict[str, Any]] = field(default_factory=list)  # a quarter's or year's months: calls, entries, ε

    @property
    def period(self) -> str:
        return self.month

    def as_json(self) -> dict[str, Any]:
        def rows(xs: list[Row]) -> list[dict[str, Any]]:
            return [x.__dict__ for x in xs]

        return {"month": self.month if self.kind == "month" else None, "period": self.month, "kind": self.kind,
                "generated_at": self.generated_at, "entries": self.entries,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "chain": self.chain,
                "agreements": self.agreements, "datasets": rows(self.datasets), "products": rows(self.products),
                "actions": [{"action": a, "count": n} for a, n in self.actions], "head": self.head,
                "budget": self.budget, "daily": self.daily, "months": self.months}


def _month_entries(ctx: AppContext, month: str) -> list[dict[str, Any]]:
    """The period's audit entries (a month, a quarter or a year), oldest first."""
    start, end = period_bounds(month)
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


def _epsilon_by_day(ctx: AppContext, start: dt.datetime, end: dt.datetime) -> dict[str, Fraction]:
    b = pt.budget_entries.c
    out: dict[str, Fraction] = defaultdict(Fraction)
    with ctx.engine.connect() as conn:
        for r in conn.execute(select(b.kind, b.epsilon, b.ts).where(and_(b.ts >= start, b.ts < end))):
            ts = r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=dt.UTC)
            out[ts.date().isoformat()] += (1 if r.kind == "debit" else -1) * Fraction(r.epsilon)
    return out


def _budgets(ctx: AppContext) -> dict[str, tuple[Fraction, Fraction]]:
    """Per agreement: (ε granted, ε spent to date), summed over its datasets' accounts."""
    a = pt.budget_accounts.c
    out: dict[str, tuple[Fraction, Fraction]] = {}
    with ctx.engine.connect() as conn:
        for r in conn.execute(select(a.agreement_id, a.epsilon_total, a.epsilon_spent)):
            total, spent = out.get(r.agreement_id, (Fraction(0), Fraction(0)))
            out[r.agreement_id] = (total + Fraction(r.epsilon_total), spent + Fraction(r.epsilon_spent))
    return out


def _signed_head(ctx: AppContext) -> dict[str, Any]:
    """The signed audit head as stored: seq, hash, signature, the signing key's id and its algorithm (the home
    suite's: ``ed25519`` in ``intl``, ``sm2`` in ``sm``)."""
    with ctx.engine.connect() as conn:
        h = conn.execute(select(t.audit_head).where(t.audit_head.c.id == 1)).first()
    if h is None:
        return {}
    return {"seq": h.seq, "hash": h.hash, "signature": h.signature, "key_id": ctx.audit.keys.key_id,
            "algorithm": ctx.audit.keys.public.algorithm}


def monthly(ctx: AppContext, month: str) -> MonthlyReport:
    """The month's report (``YYYY-MM``; INVALID_REQUEST for any other form)."""
    month_bounds(month)
    return period_report(ctx, month)


def period_report(ctx: AppContext, period: str) -> MonthlyReport:
    """The report of a month (``YYYY-MM``), a quarter (``YYYY-Qn``) or a year (``YYYY``): one generator."""
    month = period
    kind = period_kind(period)
    start, end = period_bounds(period)
    entries = _month_entries(ctx, month)
    head = _signed_head(ctx)
    chain = ctx.audit.verify().as_dict()
    per_agreement: dict[str, Row] = {}
    per_dataset: dict[str, Row] = {}
    per_product: dict[str, Row] = {}
    actions: Counter[str] = Counter()
    days = [(start + dt.timedelta(days=i)).date().isoformat() for i in range((end - start).days)]
    day_calls: Counter[str] = Counter()
    for x in entries:
        details = json.loads(x["details"]) if x["details"] else {}
        actions[x["action"]] += 1
        if x["agreement_id"]:
            per_agreement.setdefault(x["agreement_id"], Row(x["agreement_id"])).add(x["decision"], x["output_digest"])
            if x["role"] != "system":
                day_calls[x["ts"][:10]] += 1
        for ds in (x["dataset"] or "").split(","):
            if ds:
                per_dataset.setdefault(ds, Row(ds)).add(x["decision"], x["output_digest"])
        product = product_of(x["action"], details if isinstance(details, dict) else {})
        per_product.setdefault(product, Row(product)).add(x["decision"], x["output_digest"])
    eps = _epsilon_by_agreement(ctx, start, end)
    day_eps = _epsilon_by_day(ctx, start, end)
    budgets = _budgets(ctx)
    with ctx.engine.connect() as conn:
        parties = {r.id: (r.owner, r.grantee, r.title) for r in
                   conn.execute(select(pt.agreements.c.id, pt.agreements.c.owner, pt.agreements.c.grantee,
                                       pt.agreements.c.title))}
    agreements = []
    totals = {"granted": Fraction(0), "spent": Fraction(0), "debited": Fraction(0)}
    for aid in sorted(set(per_agreement) | set(eps)):
        row = per_agreement.get(aid, Row(aid))
        owner, grantee, title = parties.get(aid, (None, None, None))
        granted, spent = budgets.get(aid, (Fraction(0), Fraction(0)))
        debited = eps.get(aid, Fraction(0))
        totals["granted"] += granted
        totals["spent"] += spent
        totals["debited"] += debited
        agreements.append({**row.__dict__, "owner": owner, "grantee": grantee, "title": title,
                           "epsilon_debited": float(debited), "epsilon_exact": str(debited),
                           "epsilon": decimal_text(debited), "epsilon_granted": decimal_text(granted),
                           "epsilon_spent": decimal_text(spent), "epsilon_left": decimal_text(granted - spent)})
    budget = {"epsilon_granted": decimal_text(totals["granted"]), "epsilon_spent": decimal_text(totals["spent"]),
              "epsilon_left": decimal_text(totals["granted"] - totals["spent"]),
              "epsilon_debited": decimal_text(totals["debited"])}
    daily = [{"day": d, "calls": day_calls.get(d, 0), "epsilon": float(day_eps.get(d, Fraction(0)))} for d in days]
    months: list[dict[str, Any]] = []
    if kind != "month":
        month_entries = Counter(x["ts"][:7] for x in entries)
        for m in months_of(period):
            m_eps = sum((v for d, v in day_eps.items() if d.startswith(m)), Fraction(0))
            months.append({"month": m, "entries": month_entries.get(m, 0),
                           "calls": sum(c for d, c in day_calls.items() if d.startswith(m)),
                           "epsilon": decimal_text(m_eps), "epsilon_debited": float(m_eps)})
    return MonthlyReport(
        month=month, generated_at=_iso(dt.datetime.now(dt.UTC)), entries=len(entries),
        first_seq=entries[0]["seq"] if entries else None, last_seq=entries[-1]["seq"] if entries else None,
        chain=chain, agreements=agreements, datasets=sorted(per_dataset.values(), key=lambda r: r.name),
        products=sorted(per_product.values(), key=lambda r: (-r.calls, r.name)), actions=actions.most_common(),
        head=head, budget=budget, daily=daily, kind=kind, months=months)


def entries_parquet(ctx: AppContext, month: str) -> bytes:
    """The period's audit entries, every field and its hash, as Parquet (zstd)."""
    rows = _month_entries(ctx, month)
    cols = {k: [r[k] for r in rows] for k in (*FIELDS, "hash")}
    schema = pa.schema([(k, pa.int64() if k == "seq" else pa.string()) for k in cols])
    buf = io.BytesIO()
    pq.write_table(pa.table(cols, schema=schema), buf, compression="zstd")
    return buf.getvalue()


def signature_label(head: dict[str, Any]) -> str:
    """The signed head's signature label naming the home suite's algorithm: Ed25519 in ``intl``, SM2 in ``sm``
    (the algorithm's name is not translated: the one message serves both)."""
    label = _("Ed25519 signature (key %(key)s):", key=head["key_id"])
    return label.replace("Ed25519", "SM2") if head.get("algorithm") == "sm2" else label


def product_label(name: str) -> str:
    """A product's name in the current language (the JSON keeps the English one)."""
    labels = {"private SQL": _("private SQL"), "jobs": _("jobs"), "verification": _("verification"),
              "model": _("model"), "models": _("models"), "secure aggregation": _("secure aggregation"),
              "agreements": _("agreements"), "catalog": _("catalog"), "audit": _("audit"),
              "identities and sessions": _("identities and sessions"), "console": _("console"), "other": _("other")}
    head, sep, rest = name.partition(": ")
    if sep:
        return f"{labels.get(head, head)}: {rest}"
    if name.endswith(" job") and name != "jobs":
        return _("%(kind)s job", kind=name.removesuffix(" job"))
    return labels.get(name, name)


def chain_status(chain: dict[str, Any]) -> str:
    """The verification result in words."""
    if chain.get("ok"):
        return _("Audit chain verified: %(n)s entries, every checkpoint and the signed head check.",
                 n=chain.get("entries"))
    return _("Audit chain BROKEN at seq %(seq)s: %(reason)s.", seq=text_of(chain.get("first_bad_seq")),
             reason=text_of(chain.get("reason")))


COUNTS = ("calls", "allowed", "denied", "failed", "outputs")


def count_label(name: str) -> str:
    return {"calls": _("calls"), "allowed": _("allowed"), "denied": _("denied"), "failed": _("failed"),
            "outputs": _("outputs")}[name]


def report_words(report: MonthlyReport) -> dict[str, str]:
    """The words that name the report's period in the current language: its title, the page footer (``{page}``
    and fpdf2's ``{nb}`` filled in when printed), the entries line, the ε column and the ε chart. The monthly
    report's words are unchanged; a quarter's and a year's have their own."""
    first, last = text_of(report.first_seq), text_of(report.last_seq)
    if report.kind == "month":
        return {"title": _("Veilbox monthly report %(month)s", month=report.month),
                "footer": _("Veilbox monthly report %(month)s · page %(page)s of %(pages)s", month=report.month,
                            page="{page}", pages="{nb}"),
                "entries": _("This month: %(n)s audit entries, seq %(first)s to %(last)s.", n=report.entries,
                             first=first, last=last),
                "debited": _("ε debited this month"), "chart": _("Chart: ε debited this month per agreement")}
    if report.kind == "quarter":
        title = _("Veilbox quarterly report %(period)s", period=report.month)
        footer = _("Veilbox quarterly report %(period)s · page %(page)s of %(pages)s", period=report.month,
                   page="{page}", pages="{nb}")
    else:
        title = _("Veilbox annual report %(period)s", period=report.month)
        footer = _("Veilbox annual report %(period)s · page %(page)s of %(pages)s", period=report.month,
                   page="{page}", pages="{nb}")
    return {"title": title, "footer": footer,
            "entries": _("This period: %(n)s audit entries, seq %(first)s to %(last)s.", n=report.entries,
                         first=first, last=last),
            "debited": _("ε debited this period"), "chart": _("Chart: ε debited this period per agreement")}


class PdfWriter:
    """An A4 document with the bundled fonts embedded (Chinese prints), its title set, a footer line per page and a
    first page: the layout the reports, the incident reports and the revenue statements share. ``footer`` gives a
    page's footer from its number (``{nb}`` in it stands for the page count)."""

    def __init__(self, title: str, footer: Callable[[int], str]) -> None:
        from fpdf import FPDF

        class Doc(FPDF):
            def footer(self) -> None:
                self.set_y(-12)
                self.set_font("sans", "", 8)
                self.cell(0, 8, footer(self.page_no()), align="C")

        pdf = Doc(orientation="P", unit="mm", format="A4")
        pdf.add_font("sans", "", str(fonts.path(fonts.SANS)))
        pdf.add_font("sans", "B", str(fonts.path(fonts.SANS_BOLD)))
        pdf.add_font("cjk", "", str(fonts.path(fonts.CJK)))
        pdf.set_fallback_fonts(["cjk"], exact_match=False)
        pdf.set_title(title)
        pdf.set_author("Veilbox")
        pdf.set_auto_page_break(True, margin=16)
        pdf.add_page()
        self.pdf: Any = pdf
        self.width: float = pdf.epw

    def para(self, line: str, size: float = 10, style: str = "", height: float = 5.5) -> None:
        """A paragraph across the page's width."""
        self.pdf.set_font("sans", style, size)
        self.pdf.multi_cell(self.width, height, line, align="L", new_x="LMARGIN", new_y="NEXT")

    def heading(self, line: str) -> None:
        """A section heading: a little space, then bold 12 pt."""
        self.pdf.ln(3)
        self.para(line, 12, "B", 7)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def render_pdf(report: MonthlyReport) -> bytes:
    """The report as a PDF in the current language, with the bundled fonts embedded (Chinese prints)."""
    from fpdf.fonts import FontFace

    words = report_words(report)
    doc = PdfWriter(words["title"], lambda page: words["footer"].replace("{page}", str(page)))
    pdf, width, para, heading = doc.pdf, doc.width, doc.para, doc.heading
    para(words["title"], 16, "B", 9)
    para(_("Generated %(ts)s UTC.", ts=report.generated_at[:19].replace("T", " ")))
    para(words["entries"])

    heading(_("Audit chain and signed head (全程留痕)"))
    para(chain_status(report.chain), style="B")
    head = report.head
    if head:
        para(_("Signed head: seq %(seq)s, hash %(hash)s", seq=head["seq"], hash=head["hash"]), 9)
        para(signature_label(head), 9)
        para(head["signature"], 8)
    else:
        para(_("No signed head yet: the audit log is empty."), 9)

    def table(title: str, header: list[str], rows: list[list[Any]], widths: tuple[float, ...],
              numeric_from: int) -> None:
        heading(title)
        pdf.set_font("sans", "", 8)
        align = tuple("LEFT" if i < numeric_from else "RIGHT" for i in range(len(widths)))
        with pdf.table(col_widths=widths, text_align=align, line_height=4.5, padding=1, repeat_headings=1,
                       headings_style=FontFace(fill_color=(235, 238, 242))) as tbl:
            tbl.row([text_of(h) for h in header])
            if not rows:
                tbl.row([_("none")] + [""] * (len(header) - 1))
            for row in rows:
                tbl.row([text_of(v) for v in row])

    counts = [count_label(c) for c in COUNTS]

    def named(a: dict[str, Any]) -> str:
        return f"{a['title']}\n{a['name']}" if a["title"] else a["name"]

    table(_("Per agreement (授权运营协议)"),
          [_("agreement"), _("parties: owner → grantee"), *counts, _("ε debited")],
          [[named(a), f"{text_of(a['owner'])}\n→ {text_of(a['grantee'])}", *(a[c] for c in COUNTS), a["epsilon"]]
           for a in report.agreements], (52, 48, 15, 15, 15, 15, 15, 15), 2)
    table(_("Privacy budget per agreement"),
          [_("agreement"), _("ε granted"), _("ε spent to date"), _("ε left"), words["debited"]],
          [[named(a), a["epsilon_granted"], a["epsilon_spent"], a["epsilon_left"], a["epsilon"]]
           for a in report.agreements]
          + [[_("total"), report.budget.get("epsilon_granted"), report.budget.get("epsilon_spent"),
              report.budget.get("epsilon_left"), report.budget.get("epsilon_debited")]],
          (70, 30, 30, 30, 30), 1)
    table(_("Per dataset"), [_("dataset"), *counts], [[r.name, *(getattr(r, c) for c in COUNTS)]
                                                     for r in report.datasets], (90, 20, 20, 20, 20, 20), 1)
    table(_("Per product"), [_("product"), *counts], [[product_label(r.name), *(getattr(r, c) for c in COUNTS)]
                                                     for r in report.products], (90, 20, 20, 20, 20, 20), 1)

    def bars(title: str, items: list[tuple[str, float, str]]) -> None:
        """A horizontal bar chart: one labelled bar per item (label wraps, value printed after the bar)."""
        heading(title)
        if not items:
            para(_("No activity."), 9)
            return
        top = max(v for _l, v, _t in items) or 1.0
        label_w, bar_w = 60.0, width - 60.0 - 22.0
        pdf.set_font("sans", "", 8)
        for label, value, shown in items:
            measured = pdf.multi_cell(label_w, 4.5, label, align="L", dry_run=True, output="HEIGHT")
            h = max(5.0, float(measured) if isinstance(measured, (int, float)) else 5.0)
            if pdf.will_page_break(h):
                pdf.add_page()
            x, y = pdf.get_x(), pdf.get_y()
            pdf.multi_cell(label_w, 4.5, label, align="L", new_x="RIGHT", new_y="TOP")
            pdf.set_fill_color(31, 119, 180)
            pdf.rect(x + label_w + 1, y + 0.8, max(0.3, bar_w * value / top), 3.4, style="F")
            pdf.set_xy(x + label_w + 2 + bar_w, y)
            pdf.cell(20, 4.5, shown, align="R")
            pdf.set_xy(x, y + h + 0.5)

    bars(words["chart"],
         [(f"{a['title'] or a['name']} ({a['name']})", a["epsilon_debited"], a["epsilon"])
          for a in report.agreements])
    if report.kind == "month":
        bars(_("Chart: calls by the agreements' parties per day"),
             [(d["day"], float(d["calls"]), str(d["calls"])) for d in report.daily if d["calls"]])
    else:
        bars(_("Chart: calls by the agreements' parties per month"),
             [(m["month"], float(m["calls"]), str(m["calls"])) for m in report.months])
    return doc.output()


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
