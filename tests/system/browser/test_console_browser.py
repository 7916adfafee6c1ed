"""The console in a real browser (Playwright driving Debian chromium): an owner approves a job; a regulator finds
the audit entries, sees the chain verified and opens the lineage; a tampered store shows its first bad seq;
keyboard navigation and form labels. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.name || e.id)"""

NAMELESS = re.compile(r"^\s*- (textbox|combobox|listbox|spinbutton|searchbox|checkbox|radio|button|link)"
                      r"(\s*\[[^\]]*\])*\s*(:.*)?$")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (run `make browser`)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _nameless(page: Any) -> list[str]:
    """Form controls without an accessible name, read from the browser's accessibility tree (Playwright's ARIA
    snapshot): a named control reads `- textbox "Access token"`, a nameless one `- textbox`."""
    tree = page.locator("body").aria_snapshot()
    return [line.strip() for line in tree.splitlines() if NAMELESS.match(line)]


def _sign_in(browser: Any, console: Any, who: str) -> Any:
    page = browser.new_context(base_url=console.url).new_page()
    page.goto("/console/login")
    page.get_by_label("Access token").fill(console.token_of(getattr(console.parties, who)))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")
    return page


def test_owner_approves_and_regulator_traces_it(browser: Any, console: Any) -> None:
    owner = _sign_in(browser, console, "owner")
    assert owner.get_by_text("1 job(s) waiting for approval").is_visible()
    owner.get_by_role("link", name="Jobs", exact=True).click()
    owner.get_by_role("link", name=console.job_id).click()
    job = console.parties.owner.job(console.job_id)
    assert owner.locator("#spec-hash").inner_text() == job["spec_hash"]
    assert owner.locator("#plain-review").is_visible() and owner.locator("#mock-table").is_visible()
    _shot(owner, "owner-review")
    owner.get_by_role("button", name="Approve this exact job").click()
    owner.wait_for_url(f"**/console/jobs/{console.job_id}")
    released = console.parties.operator.wait_job(console.job_id)
    assert released["state"] == "released"
    _shot(owner, "owner-approved")

    reg = _sign_in(browser, console, "regulator")
    reg.get_by_role("link", name="Audit log", exact=True).click()
    reg.get_by_label("Action").fill("console.job.approve")
    reg.get_by_role("button", name="Filter").click()
    row = reg.locator("table.audit tbody tr")
    assert row.count() == 1 and "city-tax-bureau" in row.inner_text()
    _shot(reg, "regulator-audit")
    reg.get_by_role("link", name="Chain", exact=True).click()
    assert reg.locator("#chain-status").inner_text().startswith("Chain OK")
    _shot(reg, "regulator-chain-ok")
    reg.get_by_role("link", name="Audit log", exact=True).click()
    reg.get_by_label("Action").fill("job.release")
    reg.get_by_role("button", name="Filter").click()
    reg.locator("table.audit tbody tr").first.get_by_role("link", name=released["output_digest"][:19] + "…").click()
    body = reg.locator("main").inner_text()
    for shown in (console.job_id, console.agreement["id"], job["datasets"]["tax_income"]["fingerprint"]):
        assert shown in body
    _shot(reg, "regulator-lineage")


def test_a_tampered_store_shows_the_failure_and_its_seq(browser: Any, console: Any) -> None:
    with console.parties.service.ctx.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 4"))
    reg = _sign_in(browser, console, "regulator")
    reg.get_by_role("link", name="Chain", exact=True).click()
    status = reg.locator("#chain-status").inner_text()
    assert status.startswith("Chain BROKEN at seq 4")
    assert reg.locator("#first-bad-seq").inner_text() == "4"
    _shot(reg, "regulator-chain-broken")


def test_keyboard_navigation_and_labels(browser: Any, console: Any) -> None:
    page = browser.new_context(base_url=console.url).new_page()
    page.set_content('<input name="x"><label for="y">Named</label><input id="y"><button></button>')
    assert page.evaluate(UNLABELLED) == ["x"] and len(_nameless(page)) == 2  # the checks do catch nameless controls
    page.goto("/console/login")
    assert page.evaluate(UNLABELLED) == [] and _nameless(page) == []
    assert page.get_by_role("textbox", name="Access token").is_visible()
    assert page.evaluate("document.activeElement.id") == "token"  # the only field has the focus
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(console.token_of(console.parties.owner))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/")
    page.goto(f"/console/jobs/{console.job_id}")
    seen = []
    for _ in range(40):  # tab through the page: the decision controls are reachable in a sensible order
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert "approve" in seen and "reason" in seen and seen.index("approve") < seen.index("reason")
    for path in ("/console/jobs", "/console/agreements/new", f"/console/jobs/{console.job_id}"):
        page.goto(path)
        assert page.evaluate(UNLABELLED) == [], path
        assert _nameless(page) == [], path
    reg = _sign_in(browser, console, "regulator")
    for path in ("/console/audit", "/console/lineage", "/console/charts", "/console/reports"):
        reg.goto(path)
        assert reg.evaluate(UNLABELLED) == [], path
        assert _nameless(reg) == [], path
    _shot(reg, "regulator-report")
    console.parties.owner.define_verification({
        "name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
        "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}})
    bank = _sign_in(browser, console, "bank")
    bank.get_by_role("link", name="Verify", exact=True).click()
    assert bank.get_by_label("threshold (integer)").is_visible()
    assert bank.evaluate(UNLABELLED) == []
    _shot(bank, "bank-verify")


def test_refusals_explain_themselves_in_the_browser(browser: Any, console: Any) -> None:
    op = _sign_in(browser, console, "operator")
    op.goto("/console/audit/verify")
    assert "This page is for regulator principals" in op.locator("main").inner_text()
    op.context.clear_cookies()
    op.goto("/console/agreements")
    assert "Please sign in" in op.locator("main").inner_text()
    _shot(op, "refused-signed-out")


def test_bank_reads_its_psi_history(browser: Any, console: Any) -> None:
    from veilbox import bank as bank_sdk

    ag = console.parties.agreement("icbc-wuxi", job_kinds=["psi_size"], title="Applicant overlap")
    out = bank_sdk.psi_size(console.parties.bank, ag["id"], "tax_income", [f"APPLICANT-{i}" for i in range(8)],
                            epsilon="0.5")
    bank = _sign_in(browser, console, "bank")
    bank.get_by_role("link", name="PSI & anonymous checks", exact=True).click()
    bank.wait_for_url("**/console/psi")
    row = bank.locator("#psi-size-history tbody tr")
    assert row.count() == 1 and ag["id"] in row.inner_text() and "0.5" in row.inner_text()
    assert out.receipt not in bank.content() and "APPLICANT-" not in bank.content()
    assert bank.locator(f"#psi-{ag['id']} pre").inner_text().startswith(f"veilbox psi size --agreement {ag['id']}")
    assert bank.evaluate(UNLABELLED) == [] and _nameless(bank) == []
    _shot(bank, "bank-psi")
    bank.get_by_label("Read a receipt", exact=False).fill(out.receipt)
    bank.get_by_role("button", name="Read receipt").click()
    bank.wait_for_url("**/console/psi/receipt")
    assert bank.locator("#receipt-size").inner_text() == str(out.size)
    _shot(bank, "bank-psi-receipt")
