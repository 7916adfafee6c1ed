"""The console in zh-CN and en: the header's switch sets a cookie and comes back to the page; the pages, the
monthly report and its PDF follow it; an open redirect through the switch is refused. The report names the
agreement's Chinese title and its parties and states ε as a decimal."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import httpx
import pypdf

from veilbox.client import Client
from vocab.i18n import use_language

TITLE = "无锡市税务局授权运营协议：小微企业信贷风险评估"


def test_the_language_switch_translates_pages_and_the_report(console: Any) -> None:
    ag = console.parties.agreement(title=TITLE)
    operator = console.parties.operator
    for _ in range(3):  # 3 × 0.7 = 21/10 in the exact ledger: printed 2.1
        job = operator.query(ag["id"], "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", 0.7)
        assert operator.wait_job(job["job_id"], timeout=120)["state"] == "released"
    reg = console.web("regulator")
    home = reg.get("/console/")
    assert '<html lang="en">' in home.text and "Monthly report" in home.text
    assert 'href="/console/lang?to=zh-CN&amp;next=/console/"' in home.text
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    switched = reg.get("/console/lang", params={"to": "zh-CN", "next": f"/console/reports?month={month}"})
    assert switched.status_code == 303 and switched.headers["location"] == f"/console/reports?month={month}"
    assert "veilbox_lang=zh-CN" in switched.headers["set-cookie"] and "HttpOnly" in switched.headers["set-cookie"]
    page = reg.get("/console/reports", params={"month": month})
    assert '<html lang="zh-CN">' in page.text and "月度报告" in page.text and "签名链头" in page.text
    assert TITLE in page.text and "risk-lab" in page.text and "city-tax-bureau" in page.text
    assert "21/10" not in page.text and "<td>2.1</td>" in page.text
    pdf = reg.get(f"/console/reports/{month}.pdf")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    joined = text.replace("\n", "").replace(" ", "")
    assert TITLE in joined and "risk-lab" in joined and "city-tax-bureau" in joined
    assert "按协议（授权运营协议）" in text and "第 1 页" in text and "None" not in text and "21/10" not in text
    back = reg.get("/console/lang", params={"to": "en", "next": "/console/"})
    assert "veilbox_lang=en" in back.headers["set-cookie"]
    assert '<html lang="en">' in reg.get("/console/").text


def test_the_switch_never_redirects_off_the_console(console: Any) -> None:
    web = console.web("operator")
    for target in ("https://evil.example/", "//evil.example/console", "/v1/principals", "/console\\@evil", ""):
        r = web.get("/console/lang", params={"to": "zh-CN", "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console/", target
    unknown = web.get("/console/lang", params={"to": "fr", "next": "/console/jobs"})
    assert unknown.status_code == 303 and "set-cookie" not in unknown.headers


def test_the_api_report_pdf_follows_accept_language(console: Any) -> None:
    """`veilbox audit report --format pdf` sends VEILBOX_LANG as Accept-Language (veilbox.client)."""
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    token = console.token_of(console.parties.regulator)
    texts = {}
    for lang in ("zh-CN,zh;q=0.9", "en-GB"):
        r = httpx.get(f"{console.url}/v1/audit/report", params={"month": month, "format": "pdf"}, timeout=60,
                      headers={"Authorization": f"Bearer {token}", "Accept-Language": lang})
        assert r.status_code == 200
        texts[lang] = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(r.content)).pages)
    assert "审计链核验通过" in texts["zh-CN,zh;q=0.9"] and "Audit chain verified" in texts["en-GB"]
    with use_language("zh-CN"):
        assert Client(console.url, token)._http.headers["Accept-Language"] == "zh-CN"
