"""Quarterly and annual reports come from the monthly report's generator: a quarter's and a year's counts and ε are
exactly the sum of their months'; the period labels parse (``2026-07``, ``2026-Q3``, ``2026``) and anything else is
refused; the PDFs carry their own titles. Incident reports: each kind (suspension, disabled principal, rectification
order, withdrawal, disposal) gives one report built from the right audit entries, with its follow-up."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pypdf
import pytest

from catalog.errors import DomainError
from gateway import audit as audit_module
from gateway import incidents
from gateway.audit import AuditEvent
from gateway.context import AppContext, init_home, open_context
from gateway.reports import period_bounds, period_kind, period_report, render_pdf, report_words
from gateway.settings import Settings
from policies import _tables as pt

UTC = dt.UTC
COUNTS = ("calls", "allowed", "denied", "failed", "outputs")
#: (timestamp, agreement, dataset, decision, output digest) of the party calls written at fixed times
CALLS = [
    ("2026-06-30T23:59:59", "agr_a", "tax", "allow", None),  # before the quarter
    ("2026-07-01T00:00:00", "agr_a", "tax", "allow", "sha256:1"),
    ("2026-07-15T10:00:00", "agr_b", "tax,social", "deny", None),
    ("2026-08-02T08:00:00", "agr_a", "social", "error", None),
    ("2026-08-31T23:59:59", "agr_b", "tax", "allow", "sha256:2"),
    ("2026-09-10T12:00:00", "agr_a", "tax", "allow", "sha256:3"),
    ("2026-10-01T00:00:00", "agr_a", "tax", "allow", None),  # after the quarter
]
#: (timestamp, agreement, kind, ε) of the ledger's entries
LEDGER = [("2026-07-01T01:00:00", "agr_a", "debit", "1/3"), ("2026-08-05T00:00:00", "agr_a", "debit", "1/2"),
          ("2026-08-06T00:00:00", "agr_a", "refund", "1/10"), ("2026-09-30T23:00:00", "agr_b", "debit", "2/7"),
          ("2026-12-01T00:00:00", "agr_b", "debit", "5")]


def _append_at(ctx: AppContext, ts: str, ev: AuditEvent) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(audit_module, "_now", lambda: ts + ".000000+00:00")
        return ctx.audit.append(ev)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    home: Path = tmp_path_factory.mktemp("reports") / "home"
    settings = Settings(home=home, latency_bucket_ms=0, checkpoint_every=5, env="test")
    init_home(settings)
    c = open_context(settings)
    for ts, aid, ds, decision, digest in CALLS:
        _append_at(c, ts, AuditEvent(actor="risk-lab", role="operator", action="query.run", agreement_id=aid,
                                     dataset=ds, decision=decision, output_digest=digest))
    with c.engine.begin() as conn:
        for i, (ts, aid, kind, eps) in enumerate(LEDGER):
            conn.execute(pt.budget_entries.insert().values(
                agreement_id=aid, dataset="tax", job_id=f"job{i}", kind=kind, epsilon=eps, delta="0",
                ts=dt.datetime.fromisoformat(ts).replace(tzinfo=UTC)))
    yield c
    c.close()


def _rows(rows: list[Any]) -> dict[str, tuple[int, ...]]:
    return {(r["name"] if isinstance(r, dict) else r.name): tuple(
        (r[c] if isinstance(r, dict) else getattr(r, c)) for c in COUNTS) for r in rows}


def _summed(parts: list[dict[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for part in parts:
        for name, counts in part.items():
            prev = out.get(name, (0,) * len(COUNTS))
            out[name] = tuple(a + b for a, b in zip(prev, counts, strict=True))
    return out


def test_a_quarter_is_the_sum_of_its_months_and_a_year_of_its_quarters(ctx: AppContext) -> None:
    months = [period_report(ctx, m) for m in ("2026-07", "2026-08", "2026-09")]
    quarter = period_report(ctx, "2026-Q3")
    assert quarter.kind == "quarter" and quarter.as_json()["period"] == "2026-Q3" and quarter.as_json()["month"] is None
    assert quarter.entries == sum(m.entries for m in months) == 5
    assert (quarter.first_seq, quarter.last_seq) == (months[0].first_seq, months[-1].last_seq)
    assert _rows(quarter.agreements) == _summed([_rows(m.agreements) for m in months])
    assert _rows(quarter.datasets) == _summed([_rows(m.datasets) for m in months])
    assert _rows(quarter.products) == _summed([_rows(m.products) for m in months])
    eps = {a["name"]: Fraction(a["epsilon_exact"]) for a in quarter.agreements}
    by_month: dict[str, Fraction] = {}
    for m in months:
        for a in m.agreements:
            by_month[a["name"]] = by_month.get(a["name"], Fraction(0)) + Fraction(a["epsilon_exact"])
    assert eps == by_month == {"agr_a": Fraction(1, 3) + Fraction(1, 2) - Fraction(1, 10), "agr_b": Fraction(2, 7)}
    assert [m["month"] for m in quarter.months] == ["2026-07", "2026-08", "2026-09"]
    assert [m["entries"] for m in quarter.months] == [m.entries for m in months]
    assert [m["calls"] for m in quarter.months] == [sum(d["calls"] for d in m.daily) for m in months]
    assert len(quarter.daily) == 92

    year = period_report(ctx, "2026")
    quarters = [period_report(ctx, f"2026-Q{q}") for q in range(1, 5)]
    assert year.kind == "year" and len(year.months) == 12 and len(year.daily) == 365
    assert year.entries == sum(q.entries for q in quarters)
    assert _rows(year.agreements) == _summed([_rows(q.agreements) for q in quarters])
    assert _rows(year.products) == _summed([_rows(q.products) for q in quarters])
    assert {a["name"]: a["epsilon"] for a in year.agreements}["agr_b"] == "5.285714286"  # 2/7 + 5


def test_period_labels() -> None:
    assert period_bounds("2026-Q4") == (dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds("2026") == (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds("2026-02") == (dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 3, 1, tzinfo=UTC))
    assert [period_kind(p) for p in ("2026-02", "2026-Q1", "2026")] == ["month", "quarter", "year"]
    for bad in ("2026-Q5", "2026-Q0", "26", "2026-13", "Q3-2026", "", "2026-q3", "20261"):
        with pytest.raises(DomainError) as e:
            period_bounds(bad)
        assert e.value.code == "INVALID_REQUEST", bad


def test_the_quarterly_and_annual_pdfs_carry_their_titles(ctx: AppContext) -> None:
    title = "Veilbox quarterly report 2026-Q3"
    reader = pypdf.PdfReader(io.BytesIO(render_pdf(period_report(ctx, "2026-Q3"))))
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert title in text and "This period: " in text and "per month" in text and "None" not in text
    assert f"{title} · page 1 of {len(reader.pages)}" in text
    words = report_words(period_report(ctx, "2026"))  # the annual PDF itself: tests/system/http/gateway
    assert words["title"] == "Veilbox annual report 2026" and words["debited"] == "ε debited this period"
    assert report_words(period_report(ctx, "2026-07"))["title"] == "Veilbox monthly report 2026-07"


# -- incident reports -----------------------------------------------------------------------------------------


def test_each_incident_kind_is_one_report_built_from_its_entries(ctx: AppContext) -> None:
    def at(ts: str, **kw: Any) -> int:
        return int(_append_at(ctx, ts, AuditEvent(**kw))["seq"])

    auth = {"actor": "data-bureau", "role": "authority"}
    suspended = at("2026-11-02T09:00:00", action="authority.suspend", agreement_id="agr_a",
                   details={"reason": "the consent notice is missing"}, **auth)
    refused = at("2026-11-02T09:01:00", action="agreement.suspend", agreement_id="agr_b", decision="deny",
                 actor="risk-lab", role="operator")  # a refused attempt changed nothing: no incident
    ordered = at("2026-11-02T09:05:00", action="order.issue", agreement_id="agr_a",
                 details={"order_id": "ord_1", "deadline": "2026-11-30T23:59:59+00:00", "text": "publish it"},
                 **auth)
    other_order = at("2026-11-02T09:06:00", action="console.authority.order.issue", agreement_id="agr_b",
                     details={"order_id": "ord_2", "deadline": "2026-12-31T23:59:59+00:00", "text": "fix it"},
                     **auth)
    closed = at("2026-11-20T10:00:00", action="order.close", agreement_id="agr_a",
                details={"order_id": "ord_1", "note": "notice published"}, **auth)
    resumed = at("2026-11-21T10:00:00", action="authority.resume", agreement_id="agr_a",
                 details={"reason": "rectified"}, **auth)
    owner_paused = at("2026-11-22T10:00:00", action="console.agreement.suspend", agreement_id="agr_b",
                      details={"reason": "audit of the grantee"}, actor="tax-bureau", role="owner")
    disabled = at("2026-11-23T10:00:00", action="authority.principal.disable", details={"name": "risk-lab"},
                  **auth)
    withdrawn = at("2026-11-24T10:00:00", action="dataset.withdraw", dataset="social",
                   details={"reason": "decommissioned"}, actor="tax-bureau", role="owner")
    disposed = at("2026-11-30T10:00:00", action="dataset.dispose", dataset="social", actor="system", role="system")
    sysrole = {"actor": "system", "role": "system", "action": "agreement.dispose", "agreement_id": "agr_b"}
    ended = [at("2026-11-30T11:00:00", details={"step": "jobs", "case": "revoked"}, **sysrole),
             at("2026-11-30T11:00:01", details={"step": "outputs", "case": "revoked"}, **sysrole),
             at("2026-11-30T11:00:02", details={"step": "record", "case": "revoked", "signature": "ab"}, **sysrole)]
    assert refused

    found = {i["id"]: i for i in incidents.incidents(ctx)}
    assert set(found) == {f"inc-{s}" for s in (suspended, ordered, other_order, owner_paused, disabled, withdrawn,
                                               disposed, ended[0])}
    kinds = {i["id"]: i["kind"] for i in found.values()}
    assert kinds[f"inc-{suspended}"] == kinds[f"inc-{owner_paused}"] == "suspension"
    assert kinds[f"inc-{ordered}"] == kinds[f"inc-{other_order}"] == "rectification"
    assert (kinds[f"inc-{disabled}"], kinds[f"inc-{withdrawn}"], kinds[f"inc-{disposed}"]) == (
        "principal_suspension", "withdrawal", "disposal")

    def seqs(inc_seq: int) -> list[int]:
        return [e["seq"] for e in found[f"inc-{inc_seq}"]["entries"]]

    assert seqs(suspended) == [suspended, resumed] and seqs(ordered) == [ordered, closed]
    assert seqs(other_order) == [other_order] and seqs(owner_paused) == [owner_paused]
    assert seqs(withdrawn) == [withdrawn, disposed] and seqs(disposed) == [disposed] and seqs(disabled) == [disabled]

    s = incidents.incident(ctx, f"inc-{suspended}")
    assert (s["actor"], s["role"], s["agreement_id"], s["reasons"]) == (
        "data-bureau", "authority", "agr_a", ["the consent notice is missing"])
    assert s["follow_up"]["state"] == "resolved" and s["follow_up"]["resolution"] == "resumed"
    o = found[f"inc-{ordered}"]
    assert o["reasons"] == ["publish it"] and o["order_id"] == "ord_1"
    assert o["follow_up"] == {"state": "resolved", "deadline": "2026-11-30T23:59:59+00:00", "resolution": "closed",
                              "resolved_at": "2026-11-20T10:00:00.000000+00:00", "resolved_by": "data-bureau",
                              "note": "notice published"}
    assert found[f"inc-{other_order}"]["follow_up"]["state"] == "open"
    assert found[f"inc-{disabled}"]["principal"] == "risk-lab"
    assert found[f"inc-{withdrawn}"]["follow_up"]["resolution"] == "disposed"
    assert found[f"inc-{disposed}"]["follow_up"]["state"] == "final"
    d = found[f"inc-{ended[0]}"]  # one disposal: its steps and its signed record
    assert d["kind"] == "agreement_disposal" and seqs(ended[0]) == ended and d["reasons"] == ["revoked"]
    assert d["follow_up"]["state"] == "resolved" and d["follow_up"]["resolution"] == "record signed"
    assert [i["id"] for i in incidents.incidents(ctx, "rectification")] == [f"inc-{ordered}", f"inc-{other_order}"]
    every = {e["seq"]: e for inc in found.values() for e in inc["entries"]}
    with ctx.engine.connect() as conn:
        stored = {r.seq: r.hash for r in conn.execute(audit_module.t.audit_entries.select())}
    assert all(stored[seq] == e["hash"] for seq, e in every.items())  # each names the stored entry's hash

    for bad in (f"inc-{refused}", f"inc-{resumed}", "inc-x", "nope"):
        with pytest.raises(DomainError) as e:
            incidents.incident(ctx, bad)
        assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"
    with pytest.raises(DomainError):
        incidents.incidents(ctx, "meteor")

    pdf = pypdf.PdfReader(io.BytesIO(incidents.render_incident_pdf(o)))
    text = "\n".join(p.extract_text() for p in pdf.pages).replace("\n", " ")
    assert f"Veilbox incident report inc-{ordered}" in text and "rectification order (整改)" in text
    assert "publish it" in text and "notice published" in text and "2026-11-30" in text and "None" not in text
