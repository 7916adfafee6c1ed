"""The data authority in a real browser (Playwright driving Debian chromium): it opens an agreement from the review
queue, names a reviewer (专家委员会) whose approval the page then shows, files it with a reason (a filing number,
备案), suspends it through the confirmation page — which will not submit without a reason —, issues a
rectification order (整改) with a date picker, and the grantee sees the order on its agreement page. Every field
labelled, every control named. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.services.agreements import set_filing
from tests.system.browser.test_console_admin_browser import _signed_in
from tests.system.browser.test_console_browser import (  # noqa: F401  (browser: the module's one chromium)
    CHROMIUM,
    UNLABELLED,
    _nameless,
    _shot,
    browser,
)
from tests.system.http.console.conftest import token_of

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (run `make browser`)")


def test_authority_files_suspends_and_orders(browser: Any, parties: Any) -> None:  # noqa: F811
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    authority = svc.principal("data-bureau", "authority")
    ag = parties.agreement(title="District statistics")
    aid = ag["id"]
    parties.owner.submit_agreement(aid)

    boss = _signed_in(browser, svc.url, token_of(authority), "en")
    boss.goto("/console/authority")
    boss.locator(f'#queue a[href="/console/authority/agreements/{aid}"]').click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}")
    assert boss.locator("#document-hash").inner_text() == ag["document_hash"]
    assert boss.evaluate(UNLABELLED) == [] and _nameless(boss) == []
    # it names a reviewer (专家委员会), who approves over the API; the page shows the approval
    experts = svc.client(svc.admin.create_principal("expert-panel", "reviewer", "expert_committee")["token"])
    boss.reload()
    boss.locator("#named-expert-panel").check()
    boss.locator("#name-reviewers").click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}#reviewers")
    assert boss.locator("#reviewer-expert-panel").get_attribute("data-state") == "pending"
    experts.review_agreement(aid, "approve", ag["document_hash"], ["measures adequate"])
    boss.reload()
    assert "measures adequate" in boss.locator("#reviewer-expert-panel").inner_text()
    assert boss.evaluate(UNLABELLED) == [] and _nameless(boss) == []
    boss.locator("#reasons").fill("scope and purposes checked")
    _shot(boss, "authority-review-en")
    boss.locator("#file").click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}")
    filed = parties.owner.agreement(aid)
    assert filed["state"] == "filed" and filed["filing_number"] in boss.locator("main").inner_text()
    parties.owner.activate_agreement(aid)

    boss.goto(f"/console/authority/agreements/{aid}")
    boss.locator("#suspend-link").click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}/confirm/suspend")
    assert boss.locator("#consequences").is_visible()
    assert boss.evaluate(UNLABELLED) == [] and _nameless(boss) == []
    boss.locator("#confirm").click()  # the reason is required: the browser does not submit
    assert boss.url.endswith("/confirm/suspend") and parties.owner.agreement(aid)["state"] == "active"
    boss.locator("#reason").fill("the consent notice is missing")
    boss.locator("#confirm").click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}")
    assert parties.owner.agreement(aid)["state"] == "suspended"

    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    boss.locator("#order-text").fill("Publish the consent notice")
    boss.locator("#order-deadline").fill(deadline)
    boss.locator("#issue-order").click()
    boss.wait_for_url(f"**/console/authority/agreements/{aid}#orders")
    assert "Publish the consent notice" in boss.locator("#order-list").inner_text()
    _shot(boss, "authority-order-en")

    grantee = _signed_in(browser, svc.url, token_of(parties.operator), "en")
    grantee.goto(f"/console/agreements/{aid}")
    notice = grantee.locator("#orders")
    assert notice.is_visible() and "Publish the consent notice" in notice.inner_text()
    assert deadline in notice.inner_text()
    _shot(grantee, "grantee-order-en")
    for page in (boss, grantee):
        page.context.close()
