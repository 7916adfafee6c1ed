"""Revenue statements and the subject-access report in the console over HTTP: the owner's month and an
agreement's month with its split show the very totals of the JSON statements, and their CSV is the API's CSV; the
authority and regulators name an owner; a grantee that is no party, an admin and a malformed month are refused.
An owner's subject-access report is a posted form (the raw id never in a URL, the page or the audit log) that
lists the API report's consents and uses; other roles are refused, and the console's own read is no "use"."""

from __future__ import annotations

import datetime as dt
import html
import re

from tests.conftest import Parties

from .conftest import csrf_in, sign_in, token_of

SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _cells(page: str, css_class: str) -> dict[str, str]:
    """``data-*`` key → amount of the cells with ``class=css_class``."""
    pattern = rf'<td class="{css_class}" data-[a-z]+="([^"]*)">([^<]*)</td>'
    return {html.unescape(k): v for k, v in re.findall(pattern, page)}


def test_statements_and_subject_access(parties: Parties) -> None:
    svc = parties.service
    ag = parties.agreement(
        job_kinds=["query"], price={"per_call": "0.10", "per_job": 3, "per_epsilon": 2, "currency": "CNY"}
    )
    parties.operator.query(ag["id"], SQL, "0.5")
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    authority = svc.principal("data-authority", "authority")
    admin = svc.principal("ops-admin", "admin")
    webs = {
        who: sign_in(svc.url, token_of(c))
        for who, c in (
            ("owner", parties.owner),
            ("operator", parties.operator),
            ("bank", parties.bank),
            ("regulator", parties.regulator),
            ("authority", authority),
            ("admin", admin),
        )
    }
    try:
        owner = webs["owner"]
        # the owner's month: the page's totals are the JSON statement's, to the cent
        own = parties.owner.owner_statement(month)
        page = owner.get("/console/statements", params={"month": month})
        assert page.status_code == 200 and 'href="/console/statements"' in page.text
        assert _cells(page.text, "owner-total") == {t["currency"]: t["amount"] for t in own["totals"]}
        assert own["totals"][0]["amount"] != "0.00" and ag["id"] in page.text
        # an agreement's month: lines, total and the split among owners as the JSON says
        st = parties.owner.statement(ag["id"], month)
        page = owner.get("/console/statements", params={"month": month, "agreement": ag["id"]})
        total = re.search(r'<td id="agreement-total">([^<]*)</td>', page.text)
        assert total and total.group(1) == st["total"]["amount"]
        assert _cells(page.text, "owner-amount") == {o["owner"]: o["amount"] for o in st["owners"]}
        # the downloads are the API's files
        csv = owner.get("/console/statements/agreement.csv", params={"agreement": ag["id"], "month": month})
        assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
        assert csv.content == parties.owner.statement(ag["id"], month, "csv")
        pdf = owner.get("/console/statements/owner.pdf", params={"month": month})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert owner.get(
            "/console/statements/owner.csv", params={"month": month}
        ).content == parties.owner.owner_statement(month, format="csv")
        # the grantee reads its agreement's statement; the authority and regulators name an owner
        seen = webs["operator"].get("/console/statements", params={"month": month, "agreement": ag["id"]})
        assert seen.status_code == 200 and _cells(seen.text, "owner-amount") == _cells(page.text, "owner-amount")
        for who in ("regulator", "authority"):
            named = webs[who].get("/console/statements", params={"month": month, "owner": "city-tax-bureau"})
            assert _cells(named.text, "owner-total") == {t["currency"]: t["amount"] for t in own["totals"]}
        assert 'id="owner-statement"' not in webs["regulator"].get("/console/statements").text
        # refusals: a grantee that is no party, an admin, a malformed month, an unknown file format
        r = webs["bank"].get("/console/statements", params={"month": month, "agreement": ag["id"]})
        assert r.status_code == 404 and "NOT_FOUND_OR_FORBIDDEN" in r.text and st["total"]["amount"] not in r.text
        r = webs["bank"].get("/console/statements/agreement.pdf", params={"agreement": ag["id"], "month": month})
        assert r.status_code == 404 and not r.content.startswith(b"%PDF")
        assert webs["admin"].get("/console/statements").status_code == 403
        assert owner.get("/console/statements", params={"month": "2026-13"}).status_code == 422
        assert owner.get("/console/statements/owner.json", params={"month": month}).status_code == 404

        # the subject-access report: a posted form, the raw id never in a URL, the page or the log
        until = (dt.date.today() + dt.timedelta(days=90)).isoformat() + "T00:00:00Z"
        consent = parties.owner.record_consents(
            "icbc-wuxi", "consumer loan", ["psi_members:tax_income"], until, subjects=["P0001"]
        )[0]
        listed = owner.get("/console/consents").text
        assert 'href="/console/consents/subject-access"' in listed
        form = owner.get("/console/consents/subject-access")
        assert form.status_code == 200 and 'method="post"' in form.text
        assert owner.post("/console/consents/subject-access", data={"subject": "P0001", "csrf": "x"}).status_code == 403
        r = owner.post("/console/consents/subject-access", data={"subject": "P0001", "csrf": csrf_in(form.text)})
        assert r.status_code == 200 and consent["id"] in r.text and consent["subject_hash"] in r.text
        assert "P0001" not in r.text
        api = parties.owner.subject_access("P0001")  # the console's read above is no use of the person's data
        assert api["consents"][0]["id"] == consent["id"]
        uses = re.search(r'<table id="sa-uses">.*?</table>', r.text, re.S)
        assert uses and uses.group(0).count("<tr>") - 1 == max(len(api["uses"]), 1)
        assert all(not u["action"].startswith("console.") for u in api["uses"])
        both = owner.post(
            "/console/consents/subject-access",
            data={"subject": "P0001", "csrf": csrf_in(form.text), "subject_hash": consent["subject_hash"]},
        )
        assert both.status_code == 422
        for who in ("bank", "regulator"):
            assert webs[who].get("/console/consents/subject-access").status_code == 403

        entries = parties.regulator.audit(limit=1000)["entries"]
        actions = {e["action"] for e in entries}
        assert {
            "console.statements",
            "console.statement.agreement.download",
            "console.statement.owner.download",
            "console.consent.subject_access.report",
        } <= actions
        report = [
            e for e in entries if e["action"] == "console.consent.subject_access.report" and e["decision"] == "allow"
        ]
        assert report and report[0]["subject_hash"] == consent["subject_hash"]
        assert "P0001" not in str(entries)
    finally:
        for web in webs.values():
            web.close()
