"""Reports over real HTTP: the quarterly and annual reports and the incident reports (a suspension and a
rectification order by the data authority, the disposal that follows a revocation) for the regulator and the
authority, as JSON and PDF, over the API and in the console; the monthly URL keeps working; an analyst is refused."""

from __future__ import annotations

import datetime as dt
import io
import re

import httpx
import pypdf
import pytest

from veilbox.client import ApiError

COUNT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _code(fn, *a, **kw) -> str:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value.code


def _signed_in(url: str, token: str) -> httpx.Client:
    web = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/login").text)
    assert csrf
    assert web.post("/console/login", data={"token": token, "csrf": csrf.group(1)}).status_code == 303
    return web


def test_period_and_incident_reports_over_http(parties):
    svc = parties.service
    authority_token = svc.admin.create_principal("data-bureau", "authority")["token"]
    authority = svc.client(authority_token)
    reg, bank, op = parties.regulator, parties.bank, parties.operator
    aid = parties.agreement()["id"]
    op.query(aid, COUNT, 0.1)
    authority.authority_suspend(aid, "the consent notice is missing")
    order = authority.issue_order(aid, "publish the consent notice", "2030-01-31T23:59:59+00:00")
    authority.close_order(order["id"], "published")
    authority.authority_resume(aid, "rectified")

    now = dt.datetime.now(dt.UTC)
    month, quarter, year = now.strftime("%Y-%m"), f"{now.year}-Q{(now.month - 1) // 3 + 1}", str(now.year)
    monthly = reg.audit_report(month)
    assert monthly["month"] == month and monthly["kind"] == "month"
    for who in (reg, authority):
        q = who.report(quarter)
        assert q["kind"] == "quarter" and q["period"] == quarter and q["month"] is None
        row = {m["month"]: m for m in q["months"]}[month]
        assert row["entries"] >= monthly["entries"]  # reading the report adds entries
        assert {a["name"] for a in q["agreements"]} >= {aid}
    y = authority.report(year, "pdf")
    assert f"Veilbox annual report {year}" in pypdf.PdfReader(io.BytesIO(y)).pages[0].extract_text()
    assert _code(reg.report, f"{now.year}-Q5") == "INVALID_REQUEST"

    found = reg.incidents()
    kinds = {i["kind"]: i for i in found if i["agreement_id"] == aid}
    assert set(kinds) == {"suspension", "rectification"}
    susp, rect = kinds["suspension"], kinds["rectification"]
    assert (susp["actor"], susp["role"], susp["reasons"]) == ("data-bureau", "authority",
                                                               ["the consent notice is missing"])
    assert susp["follow_up"]["resolution"] == "resumed" and [e["action"] for e in susp["entries"]] == [
        "authority.suspend", "authority.resume"]
    assert rect["order_id"] == order["id"] and rect["follow_up"]["state"] == "resolved"
    assert rect["follow_up"]["deadline"].startswith("2030-01-31") and rect["follow_up"]["note"] == "published"
    assert authority.incidents("rectification") == [rect]
    assert reg.incident(rect["id"]) == rect
    pdf = pypdf.PdfReader(io.BytesIO(authority.incident(rect["id"], "pdf")))
    assert f"Veilbox incident report {rect['id']}" in pdf.pages[0].extract_text()
    assert _code(reg.incident, "inc-999999") == "NOT_FOUND_OR_FORBIDDEN"

    parties.owner.revoke_agreement(aid)  # its disposal runs at once: its steps and signed record, one incident
    [disposal] = authority.incidents("agreement_disposal")
    assert disposal["agreement_id"] == aid and disposal["follow_up"]["resolution"] == "record signed"
    assert {e["action"] for e in disposal["entries"]} == {"agreement.dispose"} and len(disposal["entries"]) >= 2

    for who in (bank, op, parties.owner):  # analysts and owners read neither the reports nor the incidents
        assert _code(who.incidents) == "POLICY_DENIED"
        assert _code(who.incident, rect["id"]) == "POLICY_DENIED"
        assert _code(who.report, quarter) == "POLICY_DENIED"

    # the console: the authority reads the quarter's report and the incident reports (with their PDFs); a bank not
    web = _signed_in(svc.url, authority_token)
    try:
        page = web.get("/console/reports", params={"period": quarter})
        assert page.status_code == 200 and f"Quarterly report {quarter}" in page.text
        assert 'id="report-months"' in page.text
        listed = web.get("/console/reports/incidents")
        assert listed.status_code == 200 and rect["id"] in listed.text
        assert "the consent notice is missing" in listed.text
        pdf_page = web.get(f"/console/reports/incidents/{rect['id']}.pdf")
        assert pdf_page.status_code == 200 and pdf_page.content.startswith(b"%PDF")
    finally:
        web.close()
    web = _signed_in(svc.url, bank._http.headers["Authorization"].split()[1])
    try:
        refused = web.get("/console/reports/incidents")
        assert refused.status_code == 403 and rect["id"] not in refused.text
    finally:
        web.close()
