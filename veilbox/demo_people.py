"""`veilbox demo`, the people chapters: registered consent (同意登记) and a revenue statement (收益分成).

Consent: the home starts enforcing the consent registry on personal data; the tax bureau records three
applicants' consents for the bank (one subject, one grantee, one product, a window each, never bundled); the
bank's checks name a consent id as ``consent_ref``; another person's consent is refused (``CONSENT_INVALID``,
``consent.subject``), and so is a revoked one (``consent.revoked``); the tax bureau answers the person's
subject-access request with every recorded use of their data (never a value).

Revenue: a second owner, the human-resources bureau, registers its own dataset; the tax bureau proposes a
multi-owner agreement over both datasets with a price schedule and revenue shares (3/4 : 1/4); the co-owner signs
its part before the operator may accept; the operator runs two DP queries and the month's statement splits the
charges among the owners to the cent (docs/revenue.md).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from catalog.datagen import DISTRICTS
from veilbox.client import ApiError

console = Console()

__all__ = ["CO_OWNER", "chapter_consent", "chapter_revenue"]

CO_OWNER = "hr-bureau"  # the second owner of the revenue chapter
SCENARIO = "income verification for a consumer loan application at ICBC Wuxi"


def _iso(delta_days: int) -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (now + dt.timedelta(days=delta_days)).isoformat().replace("+00:00", "Z")


def chapter_consent(story: Any, engine: Any) -> None:
    """Consents recorded, checked, refused for another person, revoked, and a subject-access report."""
    from gateway.services.consent import set_enforced

    owner, bank = story.clients["owner"], story.clients["bank"]
    agreement = story.state["agreement:bank"]
    set_enforced(engine, True)  # from here on every check on personal data names a registered consent
    subjects = ["P0000021", "P0000022", "P0000023"]
    made = owner.record_consents("icbc-wuxi", SCENARIO, ["income_at_least"], _iso(180), subjects=subjects)
    ids = {s: c["id"] for s, c in zip(subjects, made, strict=True)}
    t = Table("subject", "consent", "check", "outcome", title="the bank's checks under registered consents")
    for s in subjects:
        r = bank.check("income_at_least", agreement, s, {"threshold": 6000}, consent_ref=ids[s])
        t.add_row(s, ids[s], "income_at_least(threshold=6000)", "yes" if r["result"] else "no")
    refusals: list[str] = []
    try:  # P0000022's consent does not cover P0000021
        bank.check("income_at_least", agreement, subjects[0], {"threshold": 6000}, consent_ref=ids[subjects[1]])
    except ApiError as e:
        reason = ", ".join(str(d.get("reason")) for d in e.details)
        refusals.append(f"another person's consent: {e.code} ({reason})")
        t.add_row(subjects[0], ids[subjects[1]], "income_at_least(threshold=6000)", f"{e.code} ({reason})")
    owner.revoke_consent(ids[subjects[2]], "the applicant withdrew the loan application")
    try:
        bank.check("income_at_least", agreement, subjects[2], {"threshold": 6000}, consent_ref=ids[subjects[2]])
    except ApiError as e:
        reason = ", ".join(str(d.get("reason")) for d in e.details)
        refusals.append(f"a revoked consent: {e.code} ({reason})")
        t.add_row(subjects[2], ids[subjects[2]], "income_at_least(threshold=6000)", f"{e.code} ({reason})")
    console.print(t)
    story.facts.append(f"the tax bureau recorded {len(made)} consents (同意登记, one person, one grantee, one product "
                       f"each) and the bank's checks named them; refused: {'; '.join(refusals) or 'nothing'}")
    report = owner.subject_access(subjects[2])
    uses = report.get("uses", [])
    a = Table("seq", "action", "actor", "product", "decision", "code",
              title=f"subject-access report for {subjects[2]} (what the tax bureau tells the person)")
    for u in uses:
        a.add_row(str(u.get("seq")), str(u.get("action")), str(u.get("actor")), str(u.get("product") or ""),
                  str(u.get("decision")), str(u.get("code") or ""))
    console.print(a)
    story.facts.append(f"subject-access report for {subjects[2]}: {len(report.get('consents', []))} consent "
                       f"(revoked) and {len(uses)} recorded uses of their data, matched by the keyed hash; no "
                       "value, verdict or parameter")


def chapter_revenue(story: Any, import_dir: Path) -> None:
    """A second owner, a multi-owner agreement with price and shares, its co-signature and the month's statement."""
    admin, owner, operator = story.admin, story.clients["owner"], story.clients["operator"]
    hr = admin.with_token(admin.create_principal(CO_OWNER, "owner")["token"])
    story.clients[CO_OWNER] = hr
    import_dir.mkdir(parents=True, exist_ok=True)
    path = import_dir / "social_months.parquet"
    n = 2000
    pq.write_table(pa.table({"pid": [f"P{i:07d}" for i in range(1, n + 1)],
                             "district": [DISTRICTS[i % len(DISTRICTS)] for i in range(n)],
                             "months": [(i * 37) % 360 for i in range(n)]}), path)
    hr.register_dataset({"name": "social_months", "source": str(path.resolve()), "grade": "general",
                         "description": "Months of social insurance paid, one row per person (synthetic).",
                         "personal": True, "max_rows_per_unit": 1,
                         "columns": {"pid": {"role": "id"},
                                     "district": {"role": "dimension", "domain": list(DISTRICTS)},
                                     "months": {"role": "measure", "bounds": [0, 480]}}})
    start, end = _window()
    ag = owner.propose_agreement({
        "title": "Labour-market statistics (two bureaus)", "grantee": "risk-lab", "co_owners": [CO_OWNER],
        "datasets": ["tax_income", "social_months"],
        "columns": {"tax_income": ["district", "monthly_income"], "social_months": ["district", "months"]},
        "purposes": ["statistics"], "job_kinds": ["query"], "valid_from": start, "valid_until": end,
        "budget": {"epsilon": 3}, "min_group_units": 20, "approval": "auto_within_budget",
        "exit": {"on_expiry": "seal_outputs"},
        "price": {"per_call": "0.10", "per_job": 3, "per_epsilon": 2, "currency": "CNY"},
        "revenue": {"category": "commercial", "split": "shares",
                    "shares": {"city-tax-bureau": "3/4", CO_OWNER: "1/4"}}})
    try:
        operator.accept_agreement(ag["id"], document_hash=ag["document_hash"])
        unsigned = "accepted before the co-owner signed (check the signing rule)"
    except ApiError as e:
        unsigned = f"{e.code} ({', '.join(str(d.get('reason')) for d in e.details)})"
    hr.sign_agreement(ag["id"], ag["document_hash"])
    operator.accept_agreement(ag["id"], document_hash=ag["document_hash"])
    story.state["agreement:revenue"] = ag["id"]
    operator.query(ag["id"], "SELECT district, AVG(monthly_income) AS avg_income FROM tax_income "
                             "GROUP BY district ORDER BY district", "0.5")
    operator.query(ag["id"], "SELECT district, COUNT(*) AS people FROM social_months "
                             "GROUP BY district ORDER BY district", "0.25")
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    s = hr.statement(ag["id"], month)
    cur = s["currency"]
    t = Table("line", "quantity", "exact", f"amount ({cur})", title=f"statement {month}: {ag['title']}",
              caption=f"total {s['total']['amount']} {cur} (exact {s['total']['exact']}), rounded once to the cent "
                      "and allocated by largest remainder: lines and owners each add up to it")
    for line in s["lines"]:
        t.add_row(str(line["line"]), str(line["quantity"]), str(line["exact"]), str(line["amount"]))
    for o in s["owners"]:
        t.add_row(f"→ {o['owner']}", f"share {o['weight']}", "", str(o["amount"]), style="bold")
    console.print(t)
    parts = ", ".join(f"{o['owner']} {o['amount']}" for o in s["owners"])
    story.facts.append(f"a two-owner agreement (收益分成) waited for the co-owner's signature (the operator's early "
                       f"acceptance: {unsigned}); the month's statement charges {s['total']['amount']} {cur}, split "
                       f"3/4 : 1/4 to the cent: {parts}")


def _window() -> tuple[str, str]:
    return _iso(-1), _iso(365)
