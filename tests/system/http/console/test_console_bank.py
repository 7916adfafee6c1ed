"""A bank's checks, scoring and receipts pages over plain HTTP: its checks listed with their receipt digests (never
the subject), a receipt verified by its signature, a forged one and another bank's refused; the encrypted-check
page explains why the check runs on the bank's side and offers the SDK code as a download."""

from __future__ import annotations

from typing import Any

from tests.system.http.console.conftest import csrf_in, sign_in, token_of

PRODUCT = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
           "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}}


def test_checks_page_lists_checks_and_verifies_receipts(console: Any, city_data: Any) -> None:
    import pyarrow.parquet as pq

    parties = console.parties
    parties.owner.define_verification(PRODUCT)
    ag = parties.agreement(grantee="icbc-wuxi")
    subject = pq.read_table(city_data.tax_income, columns=["person_id"]).slice(0, 1).to_pylist()[0]["person_id"]
    answer = parties.bank.check("income_at_least", ag["id"], subject, {"threshold": 1}, consent_ref="consent-1")
    web = console.web("bank")
    page = web.get("/console/checks")
    assert page.status_code == 200 and ag["id"] in page.text and str(subject) not in page.text
    assert page.text.count("<code>sha256:") == 1

    def verify(receipt: str, as_web: Any = web) -> Any:
        return as_web.post("/console/checks/receipt", data={"csrf": csrf_in(as_web.get("/console/checks").text),
                                                             "receipt": receipt})

    ok = verify(answer["receipt"])
    assert ok.status_code == 200, ok.text
    assert f'id="receipt-result">{answer["result"]}<' in ok.text and f'id="receipt-agreement_id">{ag["id"]}<' in ok.text
    assert "(matches a row below)" in ok.text
    head, payload, sig = answer["receipt"].split(".")
    forged = verify(f"{head}.{payload}.{sig[:-4]}AAAA")
    assert forged.status_code == 422 and "signature does not verify" in forged.text
    other = sign_in(console.url, token_of(parties.service.principal("other-bank", "bank")))
    console.sessions.append(other)
    assert verify(answer["receipt"], other).status_code == 403
    assert console.web("operator").get("/console/checks").status_code == 403


def test_encrypted_checks_page_offers_the_sdk_code(console: Any) -> None:
    ag = console.parties.agreement(grantee="icbc-wuxi")
    web = console.web("bank")
    page = web.get("/console/verify/encrypted")
    assert page.status_code == 200 and "secret key" in page.text and 'id="sdk-snippet"' in page.text
    assert ag["id"] in page.text
    got = web.get("/console/verify/encrypted_check.py", params={"product": "income_at_least", "agreement": ag["id"]})
    assert got.status_code == 200 and 'filename="encrypted_check.py"' in got.headers["content-disposition"]
    assert "bank.check_thresholds(" in got.text and f"'{ag['id']}'" in got.text
    compile(got.text, "encrypted_check.py", "exec")  # the download is valid Python
