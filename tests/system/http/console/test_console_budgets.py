"""Operators and banks read their remaining budget and today's quotas in the console, from the same ledger and
metering the API reads; forms keep working (and foreign origins keep failing) when TLS ends at a proxy."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import ON_SQLITE

COUNT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _quota_rows(html: str) -> dict[str, list[str]]:
    table = html.split('id="quotas"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td>[^<]*</td>)+)</tr>", table)
    return {name: re.findall(r"<td>([^<]*)</td>", cells) for name, cells in rows}


def test_grantee_sees_remaining_budget_and_quotas(console: Any) -> None:
    parties = console.parties
    ag = parties.agreement(quotas={"calls_per_day": 50, "jobs_per_day": 7, "verify_per_subject_per_day": 2})
    job = parties.operator.query(ag["id"], COUNT, "0.5")
    assert parties.operator.wait_job(job["job_id"])["state"] == "released"
    page = console.web("operator").get(f"/console/agreements/{ag['id']}")
    assert page.status_code == 200
    assert 'id="budget-remaining">Remaining: ε 4.5, δ 0.000001.' in page.text
    usage = parties.operator.usage(ag["id"])["totals"]
    rows = _quota_rows(page.text)
    assert rows["calls per day"] == ["50", str(usage["calls"]), str(50 - usage["calls"])]
    assert rows["jobs per day"] == ["7", str(usage["jobs"]), str(7 - usage["jobs"])] and usage["jobs"] >= 1
    # a second job: the page follows the ledger and the metering
    second = parties.operator.query(ag["id"], COUNT, "0.25")
    assert parties.operator.wait_job(second["job_id"])["state"] == "released"
    page = console.web("operator").get(f"/console/agreements/{ag['id']}")
    assert 'id="budget-remaining">Remaining: ε 4.25, δ 0.000001.' in page.text
    assert _quota_rows(page.text)["jobs per day"] == ["7", "2", "5"]
    # another party's agreement is not theirs to read: refused with a page, not a budget
    other = parties.agreement(grantee="icbc-wuxi")
    refused = console.web("operator").get(f"/console/agreements/{other['id']}")
    assert refused.status_code == 404 and "Remaining" not in refused.text


@ON_SQLITE
def test_behind_a_tls_proxy_the_https_origin_is_same_site(console: Any) -> None:
    """With TLS ending at a proxy the browser's Origin is https:// while the gateway sees http://: that form is
    accepted; a foreign origin still is not."""
    settings = console.parties.service.ctx.settings
    web = console.web("owner")
    host = web.base_url.netloc.decode()
    page = f"/console/jobs/{console.job_id}"
    settings.tls_terminated = True
    try:
        csrf = console.csrf_in(web.get(page).text)
        foreign = web.post(f"{page}/reject", headers={"Origin": "https://evil.example"},
                           data={"csrf": csrf, "reason": "no"})
        assert foreign.status_code == 403 and "posted from another site" in foreign.text
        proxied = web.post(f"{page}/reject", headers={"Origin": f"https://{host}"}, data={"csrf": csrf, "reason": "no"})
        assert proxied.status_code == 303
        fresh = httpx.Client(base_url=console.url, follow_redirects=False, timeout=60)
        console.sessions.append(fresh)
        login = fresh.get("/console/login")
        assert "secure" in login.headers["set-cookie"].lower()  # the sign-in form's double-submit cookie
        r = fresh.post("/console/login", data={"token": console.token_of(console.parties.owner),
                                                "csrf": console.csrf_in(login.text)},
                       headers={"Cookie": f"veilbox_console_login={login.cookies['veilbox_console_login']}"})
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("veilbox_console="))
        assert r.status_code == 303 and "; secure" in cookie.lower()
    finally:
        settings.tls_terminated = False
    assert console.parties.operator.job(console.job_id)["rejected_reason"] == "no"
