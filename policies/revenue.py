"""Revenue statements (收益分成): a month's metered usage of an agreement, its charges and their split.

The usage of a month comes from the metering tables (`policies.quotas.usage`: calls, jobs, checks, scores and ε net
of refunds), never from a counter of its own, so a statement reconciles with the meters by construction. Charges
are the agreement's price schedule (`policies.agreements.document.PriceSchedule`) times that usage, exact
(`Fraction`); a ``public_welfare`` agreement (公益) charges zero and its usage is still stated. The charges are
split among the data-source owners (the owners of the agreement's datasets) by its `RevenueTerms`:

- ``shares``: the fixed fractions of the document (summing exactly to 1);
- ``rows``: in proportion to the rows of each owner's datasets read by the month's completed jobs (a job reading a
  dataset counts its registered rows once);
- ``epsilon``: in proportion to the ε drawn from each owner's datasets (the ledger journal, net of refunds).

An agreement without revenue terms gives everything to its proposing owner. When a measured split has nothing to
measure in a month (no job ran), the charges are split equally among the owners.

Rounding (docs/revenue.md, "Rounding"): the total is the exact sum of the lines rounded once to the cent, half up.
That cent total is then *allocated* — among the lines and, separately, among the owners — by the largest-remainder
rule: every part gets the floor of its exact share of the cents, and the cents left over go one each to the parts
with the largest fractional remainders, ties to the earlier line or the owner name first in sort order. The parts
therefore always sum exactly to the total, and no part is ever off its exact share by a cent or more.

A statement holds only counts and amounts per agreement and owner: nothing about any person, subject or row.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Engine, select

from catalog import registry
from catalog.errors import NOT_FOUND_OR_FORBIDDEN, DomainError, invalid
from policies import _tables as t
from policies import quotas
from policies._exact import exact_str, from_db
from policies.access import authorize
from policies.actor import Actor, Role
from policies.agreements.document import AgreementDocument
from policies.agreements.record import Agreement, agreement_from_row
from policies.decision import Action
from vocab.states import JobState

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: The lines of a statement, in order: (line, the usage it counts, the price field).
LINES: tuple[tuple[str, str, str], ...] = (
    ("calls", "calls", "per_call"),
    ("jobs", "jobs", "per_job"),
    ("epsilon", "epsilon", "per_epsilon"),
    ("scores", "scores", "per_score"),
    ("checks", "checks", "per_check"),
)
_COUNTED_JOBS = (JobState.SUCCEEDED.value, JobState.RELEASED.value)


def parse_month(text: str) -> tuple[dt.date, dt.date]:
    """``YYYY-MM`` (years 2000–2999) as its first and last day; ``INVALID_REQUEST`` otherwise."""
    m = MONTH_RE.match(text or "")
    if not m:
        raise invalid("month must be YYYY-MM", [{"reason": "month.invalid"}])
    year, month = int(m.group(1)), int(m.group(2))
    if not 2000 <= year <= 2999:
        raise invalid("month must be YYYY-MM", [{"reason": "month.invalid"}])
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def to_cents(amount: Fraction) -> int:
    """``amount`` rounded to the cent, half up (amounts are never negative)."""
    whole, rest = divmod(amount.numerator * 100, amount.denominator)  # exact: the rational itself, no float
    return whole + (1 if 2 * rest >= amount.denominator else 0)


def cents_text(cents: int) -> str:
    """Cents as a decimal amount with two places (``1234`` → ``"12.34"``)."""
    return str((Decimal(cents) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def allocate(total_cents: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Split ``total_cents`` in proportion to ``weights`` by the largest-remainder rule (module docstring): parts
    sum exactly to the total. Keys keep their given order for ties; all-zero weights split equally."""
    keys = list(weights)
    if not keys:
        return {}
    total_w = sum(weights.values(), Fraction(0))
    ws = {k: Fraction(weights[k]) for k in keys} if total_w else {k: Fraction(1) for k in keys}
    total_w = total_w or Fraction(len(keys))
    exact = {k: total_cents * ws[k] / total_w for k in keys}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = total_cents - sum(out.values())
    order = sorted(range(len(keys)), key=lambda i: (-(exact[keys[i]] - out[keys[i]]), i))
    for i in order[:left]:
        out[keys[i]] += 1
    return out


@dataclass(frozen=True)
class Metered:
    """One month of an agreement's metered usage (from `policies.quotas.usage`)."""

    calls: int = 0
    jobs: int = 0
    epsilon: Fraction = Fraction(0)
    scores: int = 0
    checks: int = 0

    def as_json(self) -> dict[str, Any]:
        """The usage as JSON (ε exact)."""
        return {
            "calls": self.calls,
            "jobs": self.jobs,
            "epsilon": exact_str(self.epsilon),
            "scores": self.scores,
            "checks": self.checks,
        }


def exact_charges(doc: AgreementDocument, used: Metered) -> dict[str, Fraction]:
    """Each line's exact charge: price × usage; zero for a public-welfare agreement or one without prices."""
    price = doc.price
    free = doc.revenue is not None and doc.revenue.category == "public_welfare"
    out: dict[str, Fraction] = {}
    for line, usage_field, price_field in LINES:
        rate = Fraction(0) if price is None or free else Fraction(getattr(price, price_field))
        out[line] = rate * Fraction(getattr(used, usage_field))
    return out


@dataclass(frozen=True)
class Statement:
    """One agreement's statement for one month: usage, charges per line and each owner's part."""

    agreement_id: str
    title: str
    grantee: str
    month: str
    currency: str | None
    category: str
    split: str
    usage: Metered
    lines: dict[str, Fraction]
    line_cents: dict[str, int]
    total_exact: Fraction
    total_cents: int
    weights: dict[str, Fraction]
    owner_cents: dict[str, int]
    owner_datasets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The statement as JSON: amounts as two-decimal text and exact text, weights exact."""
        return {
            "agreement_id": self.agreement_id,
            "title": self.title,
            "grantee": self.grantee,
            "month": self.month,
            "currency": self.currency,
            "category": self.category,
            "split": self.split,
            "usage": self.usage.as_json(),
            "lines": [
                {
                    "line": line,
                    "quantity": self.usage.as_json()[line],
                    "exact": exact_str(self.lines[line]),
                    "amount": cents_text(self.line_cents[line]),
                }
                for line, _, _ in LINES
            ],
            "total": {"amount": cents_text(self.total_cents), "exact": exact_str(self.total_exact)},
            "owners": [
                {
                    "owner": o,
                    "datasets": list(self.owner_datasets.get(o, ())),
                    "weight": exact_str(self.weights[o]),
                    "amount": cents_text(c),
                }
                for o, c in self.owner_cents.items()
            ],
        }


def build_statement(
    ag: Agreement,
    month: str,
    used: Metered,
    owner_datasets: Mapping[str, tuple[str, ...]],
    measured: Mapping[str, Fraction],
) -> Statement:
    """The statement from its inputs (pure): ``owner_datasets`` names the data-source owners and ``measured``
    their contribution for a ``rows``/``epsilon`` split (ignored for ``shares``)."""
    doc = ag.document
    lines = exact_charges(doc, used)
    total_exact = sum(lines.values(), Fraction(0))
    total_cents = to_cents(total_exact)
    line_cents = allocate(total_cents, lines)
    terms = doc.revenue
    split = terms.split if terms else "shares"
    owners = sorted(owner_datasets)
    if terms is None:
        weights = {o: Fraction(1 if o == ag.owner else 0) for o in owners}
    elif split == "shares":
        weights = {o: Fraction(terms.shares.get(o, 0)) for o in sorted({*owners, *terms.shares})}
    else:
        weights = {o: Fraction(measured.get(o, 0)) for o in owners}
    return Statement(
        agreement_id=ag.id,
        title=doc.title,
        grantee=ag.grantee,
        month=month,
        currency=doc.price.currency if doc.price else None,
        category=terms.category if terms else "commercial",
        split=split,
        usage=used,
        lines=lines,
        line_cents=line_cents,
        total_exact=total_exact,
        total_cents=total_cents,
        weights=weights,
        owner_cents=allocate(total_cents, weights),
        owner_datasets=dict(owner_datasets),
    )


def _metered(engine: Engine, agreement_id: str, first: dt.date, last: dt.date) -> Metered:
    u = quotas.usage(engine, agreement_id, first, last)
    return Metered(
        calls=u.calls,
        jobs=u.jobs,
        epsilon=u.epsilon,
        scores=sum(d.scores for d in u.days),
        checks=sum(d.verifications for d in u.days),
    )


def _owner_datasets(engine: Engine, ag: Agreement) -> dict[str, tuple[str, ...]]:
    with engine.connect() as conn:
        records = registry.get_many_in(conn, ag.document.datasets)
    out: dict[str, list[str]] = defaultdict(list)
    for ds in ag.document.datasets:
        rec = records.get(ds)
        out[rec.owner if rec is not None else ag.owner].append(ds)
    return {o: tuple(sorted(v)) for o, v in sorted(out.items())}


def _measured(
    engine: Engine, ag: Agreement, split: str, first: dt.date, last: dt.date, owner_of: Mapping[str, str]
) -> dict[str, Fraction]:
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    out: dict[str, Fraction] = defaultdict(Fraction)
    with engine.connect() as conn:
        if split == "epsilon":
            e = t.budget_entries.c
            for ds, kind, eps in conn.execute(
                select(e.dataset, e.kind, e.epsilon).where(e.agreement_id == ag.id, e.ts >= start, e.ts < end)
            ).all():
                owner = owner_of.get(ds)
                if owner is not None:
                    out[owner] += (1 if kind == "debit" else -1) * from_db(eps)
        elif split == "rows":
            j = t.jobs.c
            rows = {d: r.rows for d, r in registry.get_many_in(conn, ag.document.datasets).items() if r}
            for (cols,) in conn.execute(
                select(j.columns_json).where(
                    j.agreement_id == ag.id, j.state.in_(_COUNTED_JOBS), j.created_at >= start, j.created_at < end
                )
            ).all():
                for ds in json.loads(cols):
                    if ds in owner_of and ds in rows:
                        out[owner_of[ds]] += rows[ds]
    return {o: max(v, Fraction(0)) for o, v in out.items()}


def statement_for(engine: Engine, ag: Agreement, month: str) -> Statement:
    """The month's statement of ``ag`` (no authorization: `agreement_statement` and `owner_statement` decide)."""
    first, last = parse_month(month)
    used = _metered(engine, ag.id, first, last)
    owner_datasets = _owner_datasets(engine, ag)
    split = ag.document.revenue.split if ag.document.revenue else "shares"
    measured: dict[str, Fraction] = {}
    if split in ("rows", "epsilon"):
        owner_of = {ds: o for o, dss in owner_datasets.items() for ds in dss}
        measured = _measured(engine, ag, split, first, last, owner_of)
    return build_statement(ag, month, used, owner_datasets, measured)


def agreement_statement(
    engine: Engine, actor: Actor, agreement_id: str, month: str, *, now: dt.datetime | None = None
) -> Statement:
    """``GET /statements?agreement=&month=``: the agreement's parties, the data authority and regulators
    (anyone else: ``NOT_FOUND_OR_FORBIDDEN``, as for its usage)."""
    parse_month(month)
    ag = authorize(engine, actor, Action.USAGE_READ, agreement_id, now=now)
    return statement_for(engine, ag, month)


@dataclass(frozen=True)
class OwnerStatement:
    """One owner's month: its part of every agreement that reads its datasets."""

    owner: str
    month: str
    entries: tuple[Statement, ...]

    def totals(self) -> dict[str, int]:
        """The owner's cents per currency (an agreement without prices counts under ``"-"``)."""
        out: dict[str, int] = defaultdict(int)
        for s in self.entries:
            out[s.currency or "-"] += s.owner_cents.get(self.owner, 0)
        return dict(sorted(out.items()))

    def as_json(self) -> dict[str, Any]:
        """The owner's statement as JSON."""
        return {
            "owner": self.owner,
            "month": self.month,
            "agreements": [
                {
                    "agreement_id": s.agreement_id,
                    "title": s.title,
                    "grantee": s.grantee,
                    "currency": s.currency,
                    "category": s.category,
                    "split": s.split,
                    "usage": s.usage.as_json(),
                    "agreement_total": cents_text(s.total_cents),
                    "weight": exact_str(s.weights.get(self.owner, Fraction(0))),
                    "amount": cents_text(s.owner_cents.get(self.owner, 0)),
                }
                for s in self.entries
            ],
            "totals": [{"currency": c, "amount": cents_text(v)} for c, v in self.totals().items()],
        }


def _agreements_of_owner(engine: Engine, owner: str) -> list[Agreement]:
    a = t.agreements.c
    mine = {d.name for d in registry.list_all(engine) if d.owner == owner}
    with engine.connect() as conn:
        rows = conn.execute(select(t.agreements).order_by(a.created_at, a.id)).all()
    out = []
    for r in rows:
        ag = agreement_from_row(r)
        if (
            ag.owner == owner
            or mine & set(ag.document.datasets)
            or (ag.document.revenue is not None and owner in ag.document.revenue.shares)
        ):
            out.append(ag)
    return out


def owner_statement(engine: Engine, actor: Actor, month: str, *, owner: str | None = None) -> OwnerStatement:
    """``GET /statements/owner?month=``: an owner reads its own; the data authority and regulators name any
    ``owner``; anyone else (an owner naming another owner included) gets ``NOT_FOUND_OR_FORBIDDEN``."""
    parse_month(month)
    who = owner or actor.name
    if actor.role in (Role.REGULATOR, Role.AUTHORITY):
        if owner is None:
            raise invalid("name the owner", [{"reason": "owner.missing"}])
    elif actor.role is not Role.OWNER or who != actor.name:
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "statement not found")
    entries = tuple(statement_for(engine, ag, month) for ag in _agreements_of_owner(engine, who))
    return OwnerStatement(who, month, tuple(s for s in entries if who in s.owner_cents))


def statement_csv(rows: Iterable[Iterable[Any]]) -> str:
    """CSV text (RFC 4180, CRLF line ends) of ``rows``; a cell starting with ``=+-@`` is prefixed with ``'``."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    for row in rows:
        w.writerow([("'" + c) if isinstance(c, str) and c[:1] in "=+-@" else c for c in row])
    return buf.getvalue()


def agreement_csv(s: Statement) -> str:
    """The agreement statement as CSV: one row per line, then one per owner."""
    rows: list[list[Any]] = [["agreement", "month", "currency", "kind", "name", "quantity", "exact", "amount"]]
    q = s.usage.as_json()
    for line, _, _ in LINES:
        rows.append(
            [
                s.agreement_id,
                s.month,
                s.currency or "",
                "line",
                line,
                q[line],
                exact_str(s.lines[line]),
                cents_text(s.line_cents[line]),
            ]
        )
    rows.append(
        [
            s.agreement_id,
            s.month,
            s.currency or "",
            "total",
            "",
            "",
            exact_str(s.total_exact),
            cents_text(s.total_cents),
        ]
    )
    for o, c in s.owner_cents.items():
        rows.append([s.agreement_id, s.month, s.currency or "", "owner", o, exact_str(s.weights[o]), "", cents_text(c)])
    return statement_csv(rows)


def owner_csv(st: OwnerStatement) -> str:
    """The owner statement as CSV: one row per agreement."""
    rows: list[list[Any]] = [
        ["owner", "month", "agreement", "currency", "category", "split", "weight", "agreement_total", "amount"]
    ]
    for e in st.as_json()["agreements"]:
        rows.append(
            [
                st.owner,
                st.month,
                e["agreement_id"],
                e["currency"] or "",
                e["category"],
                e["split"],
                e["weight"],
                e["agreement_total"],
                e["amount"],
            ]
        )
    return statement_csv(rows)


__all__ = [
    "LINES",
    "Metered",
    "OwnerStatement",
    "Statement",
    "agreement_csv",
    "agreement_statement",
    "allocate",
    "build_statement",
    "cents_text",
    "exact_charges",
    "owner_csv",
    "owner_statement",
    "parse_month",
    "statement_for",
    "to_cents",
]
