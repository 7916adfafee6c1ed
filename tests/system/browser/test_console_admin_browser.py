"""An admin and an owner in a real browser (Playwright driving Debian chromium), in English and Chinese: the admin
disables a principal from the Principals page and that principal's next API call is refused; the owner revokes an
agreement through its confirmation page, which will not submit without a reason, and the reason is in the audit
entry; the regulator finds that entry with the filters and date pickers and exports the filtered view as CSV.
Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.system.browser.test_console_browser import (  # noqa: F401  (browser: the module's one chromium)
    CHROMIUM,
    UNLABELLED,
    _nameless,
    _shot,
    browser,
)
from tests.system.http.console.conftest import token_of
from veilbox.client import ApiError

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (run `make browser`)")

LANG_COOKIE = "veilbox_lang"


def _signed_in(chromium: Any, url: str, token: str, lang: str) -> Any:
    context = chromium.new_context(base_url=url)
    context.add_cookies([{"name": LANG_COOKIE, "value": lang, "url": url}])
    page = context.new_page()
    page.goto("/console/login")
    page.locator("#token").fill(token)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url("**/console/")
    return page


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_admin_disables_and_owner_revokes_with_confirmation(browser: Any, parties: Any, lang: str) -> None:  # noqa: F811
    url = parties.service.url
    admin = _signed_in(browser, url, token_of(parties.service.admin), lang)
    admin.goto("/console/admin/principals")
    if admin.locator("nav.lang").count():
        assert admin.locator("html").get_attribute("lang") == lang
    assert admin.evaluate(UNLABELLED) == [] and _nameless(admin) == []
    assert parties.bank.me()["name"] == "icbc-wuxi"
    admin.locator('#principal-icbc-wuxi form[action$="/disable"] button').click()
    admin.wait_for_url("**/console/admin/principals")
    assert admin.locator("#principal-icbc-wuxi .state-revoked").is_visible()
    _shot(admin, f"admin-principal-disabled-{lang}")
    with pytest.raises(ApiError) as refused:
        parties.bank.me()
    assert refused.value.code == "UNAUTHENTICATED" and refused.value.details == [{"reason": "principal.disabled"}]

    ag = parties.agreement(title="District statistics")
    owner = _signed_in(browser, url, token_of(parties.owner), lang)
    owner.goto(f"/console/agreements/{ag['id']}")
    owner.locator("#revoke-link").click()
    owner.wait_for_url(f"**/console/agreements/{ag['id']}/confirm/revoke")
    assert owner.locator("#consequences").is_visible()
    assert owner.evaluate(UNLABELLED) == [] and _nameless(owner) == []
    owner.locator("#confirm").click()  # the reason is required: the browser does not submit
    assert owner.url.endswith("/confirm/revoke") and parties.owner.agreement(ag["id"])["state"] == "active"
    owner.locator("#reason").fill("the grantee breached the purpose clause")
    _shot(owner, f"owner-revoke-confirm-{lang}")
    owner.locator("#confirm").click()
    owner.wait_for_url(f"**/console/agreements/{ag['id']}")
    assert owner.locator(".state-revoked").first.is_visible()
    assert parties.owner.agreement(ag["id"])["state"] == "revoked"
    (entry,) = [e for e in parties.regulator.audit(limit=1000, action="console.agreement.revoke")["entries"]
                if e["decision"] == "allow"]
    assert json.loads(entry["details"])["reason"] == "the grantee breached the purpose clause"

    reg = _signed_in(browser, url, token_of(parties.regulator), lang)
    reg.goto("/console/audit")
    assert reg.evaluate(UNLABELLED) == [] and _nameless(reg) == []
    today = dt.datetime.now(dt.UTC).date().isoformat()
    reg.locator("#f-action").fill("console.agreement.revoke")
    reg.locator("#f-from").fill(today)
    reg.locator("#f-to").fill(today)
    reg.locator("form.filters button[type=submit]").click()
    reg.wait_for_url("**/console/audit?*")
    assert reg.locator("table.audit tbody tr").count() == 1 and "District statistics" in reg.locator(
        "table.audit tbody tr").inner_text()
    _shot(reg, f"regulator-audit-filtered-{lang}")
    with reg.expect_download() as download:
        reg.locator("#export-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["action"], r["agreement_title"]) for r in rows] == [("console.agreement.revoke", "District statistics")]
    for page in (admin, owner, reg):
        page.context.close()
