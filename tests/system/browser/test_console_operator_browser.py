"""The grantees' main paths in a real browser (Playwright driving Debian chromium), in English and Chinese: an
operator previews a query (cost, budget left after, accuracy, the mock answer), submits it, watches the job page
refresh itself until the result is released, reads the result with its error bars and downloads it as CSV; a bank
checks a subject and verifies the receipt on its checks page. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.system.browser.test_console_browser import (  # noqa: F401  (browser: the module's one chromium)
    CHROMIUM,
    UNLABELLED,
    _nameless,
    _shot,
    _sign_in,
    browser,
)
from tests.system.http.console.conftest import COUNT_BY_DISTRICT

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (run `make browser`)")

LANG_COOKIE = "veilbox_lang"


def _in(page: Any, console: Any, lang: str) -> None:
    """Choose the console's language the way its switch does (the language cookie)."""
    page.context.add_cookies([{"name": LANG_COOKIE, "value": lang, "url": console.url}])


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_operator_previews_submits_and_downloads_the_csv(browser: Any, console: Any, lang: str) -> None:  # noqa: F811
    ag = console.parties.agreement(title="Auto statistics")  # auto_within_budget: no owner step
    op = _sign_in(browser, console, "operator")
    _in(op, console, lang)
    op.goto(f"/console/query?agreement={ag['id']}")
    if op.locator("nav.lang").count():  # the language switch: the page is in the chosen language
        assert op.locator("html").get_attribute("lang") == lang
    assert op.evaluate(UNLABELLED) == [] and _nameless(op) == []
    op.locator("#sql").fill(COUNT_BY_DISTRICT)
    op.locator("#epsilon").fill("0.5")
    op.locator("#preview").click()
    op.wait_for_url("**/console/query/preview")
    assert op.locator("#cost").inner_text() == "ε 0.5"
    assert op.locator("#budget-after").inner_text().startswith("ε 4.5")
    assert op.locator("#accuracy li").count() == 3 and op.locator("#mock-table tbody tr").count() > 1
    _shot(op, f"operator-preview-{lang}")
    assert console.parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"

    op.locator("#submit").click()
    op.wait_for_url("**/console/jobs/job_*")
    job_id = op.url.rsplit("/", 1)[1]
    op.locator("#result-table").wait_for(timeout=60_000)  # the page refreshes itself until the result is out
    out = console.parties.operator.job_result(job_id)["result"]
    assert op.locator("#result-table tbody tr").count() == len(out["rows"])
    assert "±" in op.locator("#result-table tbody tr").first.inner_text()
    _shot(op, f"operator-result-{lang}")
    with op.expect_download() as dl:
        op.locator("#csv").click()
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    assert rows[0] == ["district", "n", "n ±95%"]
    assert [[r[0], int(r[1])] for r in rows[1:]] == [[d, n] for d, n in out["rows"]]
    assert console.parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0.5"


def test_bank_checks_a_subject_and_verifies_its_receipt(browser: Any, console: Any, city_data: Any) -> None:  # noqa: F811
    import pyarrow.parquet as pq

    console.parties.owner.define_verification({
        "name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
        "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}})
    ag = console.parties.agreement(grantee="icbc-wuxi")
    row = pq.read_table(city_data.tax_income, columns=["person_id", "monthly_income"]).slice(0, 1).to_pylist()[0]
    bank = _sign_in(browser, console, "bank")
    bank.goto("/console/verify")
    bank.locator("#agreement_id").select_option(ag["id"])
    bank.locator("#subject").fill(str(row["person_id"]))
    bank.locator("#param-threshold").fill(str(int(row["monthly_income"]) - 1))
    bank.locator("#consent_ref").fill("consent-123")
    bank.locator("form.card button[type=submit]").click()
    bank.locator("#answer").wait_for()
    assert bank.locator("#answer").inner_text().startswith("Yes")
    receipt = bank.locator("#receipt").input_value()
    bank.goto("/console/checks")
    assert bank.locator("#check-history tbody tr").count() == 1
    assert bank.evaluate(UNLABELLED) == [] and _nameless(bank) == []
    bank.locator("#receipt").fill(receipt)
    bank.locator("#verify-receipt").click()
    bank.wait_for_url("**/console/checks/receipt")
    assert bank.locator("#receipt-result").inner_text() == "True"
    assert bank.locator("#receipt-agreement_id").inner_text() == ag["id"]
    assert bank.locator("#check-history code").first.inner_text() == bank.locator("#receipt-digest").inner_text()
    assert str(row["person_id"]) not in bank.locator("main").inner_text()
    _shot(bank, "bank-receipt-verified")
