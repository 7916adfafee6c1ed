"""The console over plain HTTP: sign-in, cookies and headers, CSRF, roles, expiry, and every page of every role
rendered from the same library calls as the API."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

import httpx
import pyarrow.parquet as pq
from sqlalchemy import text

from gateway import _tables as t
from tests.conftest import ON_BOTH_STORES


def _entries(console: Any, **filters: str) -> list[dict[str, Any]]:
    return console.parties.regulator.audit(limit=1000, **filters)["entries"]


def test_sign_in_sets_a_strict_session_cookie_and_security_headers(console: Any) -> None:
    web = httpx.Client(base_url=console.url, follow_redirects=False, timeout=60)
    console.sessions.append(web)
    page = web.get("/console/login")
    assert page.status_code == 200 and 'for="token"' in page.text
    for header, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                          ("cache-control", "no-store"), ("referrer-policy", "same-origin")):
        assert page.headers[header] == value
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    owner_token = console.token_of(console.parties.owner)
    r = web.post("/console/login", data={"token": owner_token, "csrf": console.csrf_in(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("veilbox_console="))
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/console" in low
    assert "secure" not in low  # plain HTTP on loopback; Secure when VEILBOX_TLS_TERMINATED
    home = web.get("/console/")
    assert home.status_code == 200 and "city-tax-bureau" in home.text and "1 job(s) waiting" in home.text
    # the store keeps only a hash of the cookie value
    value = cookie.split(";")[0].split("=", 1)[1]
    with console.parties.service.ctx.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT id_hash FROM console_sessions"))]
    assert value not in stored and len(stored) == 1
    entries = _entries(console, action="console.login")
    assert [(e["actor"], e["decision"]) for e in entries] == [("city-tax-bureau", "allow")]


def test_sign_in_refusals_say_why(console: Any) -> None:
    web = httpx.Client(base_url=console.url, follow_redirects=False, timeout=60)
    console.sessions.append(web)
    page = web.get("/console/login")
    bad = web.post("/console/login", data={"token": "vbx_not-a-token", "csrf": console.csrf_in(page.text)})
    assert bad.status_code == 401 and "not valid" in bad.text
    forged = httpx.post(console.url + "/console/login", data={"token": console.token_of(console.parties.owner),
                                                               "csrf": "guessed"}, timeout=60)
    assert forged.status_code == 403 and "expired or was posted from elsewhere" in forged.text
    assert "set-cookie" not in forged.headers or "veilbox_console=" not in forged.headers["set-cookie"]
    denied = _entries(console, action="console.login", decision="deny")
    assert [e["code"] for e in denied] == ["UNAUTHENTICATED", "POLICY_DENIED"]


def test_a_planted_cookie_is_never_adopted(console: Any) -> None:
    """Session fixation: signing in always issues a new session id; a cookie chosen by an attacker means nothing."""
    web = httpx.Client(base_url=console.url, follow_redirects=False, cookies={"veilbox_console": "attacker-chosen"},
                       timeout=60)
    console.sessions.append(web)
    assert web.get("/console/").status_code == 401
    page = web.get("/console/login")
    owner_token = console.token_of(console.parties.owner)
    r = web.post("/console/login", data={"token": owner_token, "csrf": console.csrf_in(page.text)})
    assert "veilbox_console=attacker-chosen" not in r.headers["set-cookie"]
    first = console.web("owner").cookies["veilbox_console"]
    second = console.web("owner").cookies["veilbox_console"]
    assert first != second


def test_forms_without_the_csrf_token_are_refused_and_audited(console: Any) -> None:
    web = console.web("owner")
    for data in ({"spec_hash": "x"}, {"spec_hash": "x", "csrf": "wrong"}):
        r = web.post(f"/console/jobs/{console.job_id}/approve", data=data)
        assert r.status_code == 403 and "security token is missing or wrong" in r.text
    r = console.post(web, f"/console/jobs/{console.job_id}/approve", f"/console/jobs/{console.job_id}",
                     {"spec_hash": "x"})
    assert r.status_code != 403 or "security token" not in r.text  # the token passes; the wrong hash does not
    cross = web.post(f"/console/jobs/{console.job_id}/reject", headers={"Origin": "https://evil.example"},
                     data={"csrf": console.csrf_in(web.get("/console/").text), "reason": "x"})
    assert cross.status_code == 403 and "posted from another site" in cross.text
    assert console.parties.owner.job(console.job_id)["state"] == "pending_approval"
    refused = [e for e in _entries(console, actor="city-tax-bureau") if e["action"].startswith("console.job")]
    assert sum(e["decision"] == "deny" for e in refused) == 4


def test_wrong_role_and_missing_sessions_get_a_page_that_says_why(console: Any) -> None:
    operator = console.web("operator")
    r = operator.get("/console/audit/verify")
    assert r.status_code == 403 and "This page is for regulator principals" in r.text
    r = console.post(operator, f"/console/jobs/{console.job_id}/approve", "/console/", {"spec_hash": "x"})
    assert r.status_code == 403 and "owner" in r.text
    anonymous = httpx.get(console.url + "/console/agreements", timeout=60)
    assert anonymous.status_code == 401 and "Please sign in" in anonymous.text
    bank = console.web("bank")
    assert bank.get(f"/console/jobs/{console.job_id}").status_code == 404  # not theirs: looks like missing
    entries = _entries(console, actor="risk-lab", decision="deny")
    assert {e["action"] for e in entries} >= {"console.audit.verify", "console.job.approve"}


def test_idle_and_absolute_expiry_end_the_session(console: Any) -> None:
    engine = console.parties.service.ctx.engine
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)  # idle limit: 30 minutes
    web = console.web("owner")
    assert web.get("/console/").status_code == 200
    with engine.begin() as conn:
        conn.execute(t.console_sessions.update().values(last_seen=long_ago))
    r = web.get("/console/")
    assert r.status_code == 401 and "expired after inactivity" in r.text
    web = console.web("owner")
    with engine.begin() as conn:
        conn.execute(t.console_sessions.update().where(t.console_sessions.c.revoked.is_(False))
                     .values(expires_at=long_ago))
    r = web.get("/console/")
    assert r.status_code == 401 and "maximum session length" in r.text
    denied = _entries(console, actor="anonymous", decision="deny")
    reasons = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]) for e in denied]
    assert sum(d.get("reason") == "console.session" for d in reasons) == 2


def test_logout_revokes_the_session(console: Any) -> None:
    web = console.web("owner")
    cookie = web.cookies["veilbox_console"]
    r = console.post(web, "/console/logout", "/console/")
    assert r.status_code == 200 and "You are signed out" in r.text
    again = httpx.get(console.url + "/console/", cookies={"veilbox_console": cookie}, timeout=60)
    assert again.status_code == 401 and "session has ended" in again.text


@ON_BOTH_STORES
def test_owner_reviews_and_approves_a_job(console: Any) -> None:
    web = console.web("owner")
    page = web.get(f"/console/jobs/{console.job_id}")
    assert page.status_code == 200
    job = console.parties.owner.job(console.job_id)
    for shown in (job["spec_hash"], "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district",
                  "Result on the mock data", "Approve this exact job"):
        assert shown.replace("*", "*") in page.text
    r = console.post(web, f"/console/jobs/{console.job_id}/approve", f"/console/jobs/{console.job_id}",
                     {"spec_hash": job["spec_hash"]})
    assert r.status_code == 303
    final = console.parties.operator.wait_job(console.job_id)
    assert final["state"] == "released"
    approved = _entries(console, action="console.job.approve")
    assert len(approved) == 1 and approved[0]["actor"] == "city-tax-bureau"
    assert approved[0]["agreement_id"] == console.agreement["id"] and approved[0]["epsilon"] == "1/2"
    # the operator sees the released result in the console
    op = console.web("operator").get(f"/console/jobs/{console.job_id}")
    assert "Released result" in op.text and final["output_digest"] in op.text


def test_owner_rejects_with_a_reason_the_operator_reads(console: Any) -> None:
    web = console.web("owner")
    r = console.post(web, f"/console/jobs/{console.job_id}/reject", f"/console/jobs/{console.job_id}",
                     {"reason": "not for this purpose"})
    assert r.status_code == 303
    assert console.parties.operator.job(console.job_id)["rejected_reason"] == "not for this purpose"
    assert "not for this purpose" in console.web("operator").get(f"/console/jobs/{console.job_id}").text


def test_owner_creates_suspends_and_revokes_agreements(console: Any) -> None:
    web = console.web("owner")
    form = web.get("/console/agreements/new")
    assert form.status_code == 200 and 'for="epsilon"' in form.text
    r = console.post(web, "/console/agreements", "/console/agreements/new", {
        "title": "<script>alert(1)</script>", "grantee": "icbc-wuxi", "dataset": "tax_income",
        "columns": "district, monthly_income", "purposes": "credit_risk", "job_kinds": "verify",
        "valid_from": "2026-01-01", "valid_until": "2029-01-01", "epsilon": "2", "delta": "1e-6",
        "min_group_units": "10", "calls_per_day": "100", "approval": "owner_each_job"})
    assert r.status_code == 303
    ag_id = r.headers["location"].rsplit("/", 1)[1]
    page = web.get(f"/console/agreements/{ag_id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert "proposed" in page.text
    bad = console.post(web, "/console/agreements", "/console/agreements/new", {
        "title": "x", "grantee": "icbc-wuxi", "dataset": "tax_income", "columns": "district", "purposes": "p",
        "valid_from": "2030-01-01", "valid_until": "2029-01-01", "epsilon": "-1"})
    assert bad.status_code == 422 and "INVALID_REQUEST" in bad.text
    bank = console.web("bank")
    assert console.post(bank, f"/console/agreements/{ag_id}/accept", f"/console/agreements/{ag_id}").status_code == 303
    assert console.parties.owner.agreement(ag_id)["state"] == "active"
    unconfirmed = console.post(web, f"/console/agreements/{ag_id}/revoke", f"/console/agreements/{ag_id}")
    assert unconfirmed.status_code == 422 and console.parties.owner.agreement(ag_id)["state"] == "active"
    for action, state in (("suspend", "suspended"), ("resume", "active"), ("revoke", "revoked")):
        page = f"/console/agreements/{ag_id}/confirm/{action}" if action != "resume" else f"/console/agreements/{ag_id}"
        r = console.post(web, f"/console/agreements/{ag_id}/{action}", page,
                         {"confirmed": "yes", "reason": f"{action}: audit finding"})
        assert r.status_code == 303
        assert f"state-{state}" in web.get(f"/console/agreements/{ag_id}").text
    disposed = web.get(f"/console/agreements/{ag_id}").text  # the revocation disposed at once: its line shows
    assert 'id="disposal"' in disposed and "complete" in disposed
    actions = [e["action"] for e in _entries(console, agreement_id=ag_id) if e["action"].startswith("console.agr")]
    assert [a for a in actions if a not in ("console.agreement", "console.agreement.confirm")] == [
        "console.agreement.create", "console.agreement.accept", "console.agreement.revoke",  # unconfirmed: refused
        "console.agreement.suspend", "console.agreement.resume", "console.agreement.revoke"]
    revoked = [e for e in _entries(console, agreement_id=ag_id) if e["action"] == "console.agreement.revoke"]
    assert [(e["decision"], json.loads(e["details"]).get("reason")) for e in revoked] == [
        ("deny", None), ("allow", "revoke: audit finding")]


def test_datasets_show_schema_and_a_mock_preview(console: Any) -> None:
    for who, rows_shown in (("owner", True), ("operator", False)):
        web = console.web(who)
        page = web.get("/console/datasets/tax_income")
        assert page.status_code == 200 and "Mock preview" in page.text and "monthly_income" in page.text
        assert ("not shown (only to the owner)" in page.text) is not rows_shown


def test_regulator_pages(console: Any) -> None:
    owner = console.web("owner")
    job = console.parties.owner.job(console.job_id)
    console.post(owner, f"/console/jobs/{console.job_id}/approve", f"/console/jobs/{console.job_id}",
                 {"spec_hash": job["spec_hash"]})
    done = console.parties.operator.wait_job(console.job_id)
    assert done["state"] == "released", done
    digest = done["output_digest"]
    reg = console.web("regulator")
    audit = reg.get("/console/audit", params={"action": "console.job.approve"})
    assert audit.status_code == 200 and "console.job.approve" in audit.text and "No entries match" not in audit.text
    assert reg.get("/console/audit", params={"decision": "deny", "actor": "nobody"}).text.count("<tr class") == 0
    assert 'id="chain-status">Chain OK' in reg.get("/console/audit/verify").text
    lineage = reg.get("/console/lineage", params={"key": digest})
    assert lineage.status_code == 200
    for shown in (console.job_id, console.agreement["id"], job["datasets"]["tax_income"]["fingerprint"],
                  "job.query"):
        assert shown in lineage.text
    assert reg.get("/console/lineage", params={"key": "sha256:" + "0" * 64}).status_code == 404
    charts = reg.get("/console/charts")
    assert charts.status_code == 200 and charts.text.count("<svg") == 2 and console.agreement["id"] in charts.text
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    report = reg.get("/console/reports", params={"month": month})
    assert report.status_code == 200 and console.agreement["id"] in report.text and "private SQL" in report.text
    pdf = reg.get(f"/console/reports/{month}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == \
        "application/pdf"
    parquet = reg.get(f"/console/reports/{month}.parquet")
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows >= 10 and "hash" in table.column_names
    assert reg.get("/console/reports", params={"month": "2026-13"}).status_code == 422


@ON_BOTH_STORES
def test_tampered_store_shows_the_failure_and_its_seq(console: Any) -> None:
    engine = console.parties.service.ctx.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 7"))
    page = console.web("regulator").get("/console/audit/verify")
    assert "Chain BROKEN at seq 7" in page.text and 'id="first-bad-seq">7<' in page.text


def test_sign_in_again_after_the_token_is_disabled(console: Any) -> None:
    web = console.web("operator")
    with console.parties.service.ctx.engine.begin() as conn:
        conn.execute(t.principals.update().where(t.principals.c.name == "risk-lab").values(disabled=True))
    r = web.get("/console/")
    assert r.status_code == 401 and "withdrawn" in r.text


def test_unknown_pages_and_the_sign_in_page_need_no_javascript(console: Any) -> None:
    web = console.web("regulator")
    assert web.get("/console/no-such-page").status_code == 404
    for path in ("/console/", "/console/audit", "/console/charts", "/console/reports", "/console/lineage"):
        assert "<script" not in web.get(path).text
    css = web.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["x-frame-options"] == "DENY"


CODE = '''
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    print("rows seen:", t.num_rows)
    return {"mean_income": round(pc.mean(t["monthly_income"]).as_py(), -3)}
'''


def test_owner_reads_custom_code_and_releases_its_output(console: Any) -> None:
    ag = console.parties.agreement(approval="owner_each_job")
    spec = {"dataset": "tax_income", "source": CODE, "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 4096}, "epsilon": "0.25"}
    job = console.parties.operator.submit_job(ag["id"], "code", spec)
    web = console.web("owner")
    page = web.get(f"/console/jobs/{job['id']}")
    assert 'def main(inputs):\n    t = inputs["tax_income"]' in page.text.replace("&#34;", '"')  # readable code
    r = console.post(web, f"/console/jobs/{job['id']}/approve", f"/console/jobs/{job['id']}",
                     {"spec_hash": job["spec_hash"]})
    assert r.status_code == 303
    assert console.parties.operator.wait_job(job["id"], timeout=120)["state"] == "succeeded"
    review = web.get(f"/console/jobs/{job['id']}")
    assert "Output awaiting your release" in review.text and "rows seen: 5000" in review.text
    assert "rows seen: 5000" not in console.web("operator").get(f"/console/jobs/{job['id']}").text  # stdout: owner only
    r = console.post(web, f"/console/jobs/{job['id']}/release", f"/console/jobs/{job['id']}")
    assert r.status_code == 303
    result = console.parties.operator.job_result(job["id"])
    assert "mean_income" in result["result"]
    released = _entries(console, action="console.job.release")
    assert released and released[0]["output_digest"] == result["output_digest"]


def test_bank_checks_a_subject_from_the_console(console: Any, city_data: Any) -> None:
    import pyarrow.parquet as pq_

    console.parties.owner.define_verification({
        "name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
        "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}})
    ag = console.parties.agreement(grantee="icbc-wuxi")
    row = pq_.read_table(city_data.tax_income, columns=["person_id", "monthly_income"]).slice(0, 1).to_pylist()[0]
    web = console.web("bank")
    page = web.get("/console/verify")
    assert page.status_code == 200 and 'for="param-threshold"' in page.text and ag["id"] in page.text
    answers = {}
    for threshold in (row["monthly_income"] - 1, row["monthly_income"] + 1):
        r = console.post(web, "/console/verify", "/console/verify", {
            "product": "income_at_least", "agreement_id": ag["id"], "subject": row["person_id"],
            "param.threshold": str(int(threshold)), "consent_ref": "consent-123"})
        assert r.status_code == 200, r.text
        answers[threshold] = 'id="answer">Yes' in r.text
        assert "vbr1." in r.text  # the signed receipt
    assert answers == {row["monthly_income"] - 1: True, row["monthly_income"] + 1: False}
    missing = console.post(web, "/console/verify", "/console/verify", {
        "product": "income_at_least", "agreement_id": ag["id"], "subject": row["person_id"],
        "param.threshold": "10", "consent_ref": ""})
    assert missing.status_code == 422 and "consent_ref" in missing.text
    assert console.web("operator").get("/console/verify").status_code == 403
    entries = _entries(console, action="console.verify.check")
    assert len(entries) == 3 and all(row["person_id"] not in json.dumps(e) for e in entries)
    assert [e["subject_hash"] is not None for e in entries[:2]] == [True, True]


def test_the_audit_browser_pages_newest_first_without_an_empty_last_page(console: Any) -> None:
    from gateway.audit import AuditEvent

    audit = console.parties.service.ctx.audit
    for i in range(205):
        audit.append(AuditEvent(actor="pager", role="operator", action="query.run", details={"i": i}))
    web = console.web("regulator")

    def read_all() -> tuple[list[int], int, str]:
        page = web.get("/console/audit", params={"actor": "pager"})
        seqs, nexts = [], 0
        while True:
            seqs += [int(x) for x in re.findall(r'<tr class="decision-allow"><td>(\d+)</td>', page.text)]
            link = re.search(r'href="/console/audit\?before=(\d+)[^"]*" rel="next"', page.text)
            if not link:
                return seqs, nexts, page.text
            nexts += 1
            page = web.get("/console/audit", params={"before": link.group(1), "actor": "pager"})

    seqs, nexts, _ = read_all()
    assert len(seqs) == 205 and seqs == sorted(seqs, reverse=True) and nexts == 2
    assert "205 entries match: 205 allowed, 0 refused, 0 errors." in web.get(
        "/console/audit", params={"actor": "pager"}).text
    for i in range(95):  # exactly 300 now: the third page is full and has no link to an empty fourth
        audit.append(AuditEvent(actor="pager", role="operator", action="query.run", details={"i": i}))
    seqs, nexts, third = read_all()
    assert len(seqs) == 300 and nexts == 2 and third.count('<tr class="decision-allow">') == 100
