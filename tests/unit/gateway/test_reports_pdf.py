"""The monthly report as a PDF an official can file: the text extracted from the PDF (pypdf) has the agreement's
title and both parties' names whole (wrapped, never cut), Chinese in both languages (the bundled CJK font is
embedded), decimals (2.1, never 21/10), no "None", page numbers, the signed head and its verification."""

from __future__ import annotations

import io
from fractions import Fraction

import pypdf
import pytest

from gateway.reports import MonthlyReport, Row, decimal_text, render_pdf
from vocab.i18n import use_language

TITLE = "无锡市税务局授权运营协议：小微企业信贷风险评估（2026年度）"
OWNER = "wuxi-municipal-tax-bureau-data-source-unit"
GRANTEE = "icbc-wuxi-branch-credit-risk-department"
SIGNATURE = "5f" * 64


def _report() -> MonthlyReport:
    agreement = {"name": "agr_0123456789abcdef", "title": TITLE, "owner": OWNER, "grantee": GRANTEE, "calls": 3,
                 "allowed": 2, "denied": 1, "failed": 0, "outputs": 1, "epsilon_debited": 2.1, "epsilon_exact": "21/10",
                 "epsilon": "2.1", "epsilon_granted": "5", "epsilon_spent": "2.1", "epsilon_left": "2.9"}
    orphan = {"name": "agr_gone", "title": None, "owner": None, "grantee": None, "calls": 1, "allowed": 1,
              "denied": 0, "failed": 0, "outputs": 0, "epsilon_debited": 0.0, "epsilon_exact": "0", "epsilon": "0",
              "epsilon_granted": "0", "epsilon_spent": "0", "epsilon_left": "0"}
    return MonthlyReport(
        month="2026-11", generated_at="2026-11-30T10:00:00.000000+00:00", entries=4, first_seq=1, last_seq=4,
        chain={"ok": True, "entries": 4, "head": "sha256:" + "ab" * 32, "first_bad_seq": None, "reason": None},
        agreements=[agreement, orphan], datasets=[Row("tax_income", 3, 2, 1, 0, 1)],
        products=[Row("private SQL", 3, 2, 1, 0, 1), Row("query job", 1, 1, 0, 0, 0)], actions=[("query.run", 4)],
        head={"seq": 4, "hash": "sha256:" + "ab" * 32, "signature": SIGNATURE, "key_id": "k-2026"},
        budget={"epsilon_granted": "5", "epsilon_spent": "2.1", "epsilon_left": "2.9", "epsilon_debited": "2.1"},
        daily=[{"day": f"2026-11-{d:02d}", "calls": d % 3, "epsilon": 0.1} for d in range(1, 31)])


@pytest.fixture(scope="module")
def pdf_text() -> dict[str, tuple[str, int]]:
    out = {}
    for language in ("en", "zh-CN"):
        with use_language(language):
            data = render_pdf(_report())
        reader = pypdf.PdfReader(io.BytesIO(data))
        out[language] = ("\n".join(p.extract_text() for p in reader.pages), len(reader.pages))
    return out


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_pdf_prints_names_whole_chinese_decimals_and_never_none(pdf_text: dict, language: str) -> None:
    text, pages = pdf_text[language]
    joined = text.replace("\n", "").replace(" ", "")  # a wrapped cell reads on as one string: nothing cut off
    for whole in (TITLE, OWNER, GRANTEE, "agr_0123456789abcdef", SIGNATURE):
        assert whole in joined, whole
    assert "None" not in text and "21/10" not in text and "2.1" in text and "2.9" in text
    assert "授权运营协议" in text and "全程留痕" in text  # Chinese prints (embedded CJK font) in both languages
    assert "—" in text  # the agreement the store no longer has: a dash for its title and parties
    assert pages >= 2
    if language == "en":
        assert f"page 1 of {pages}" in text and f"page {pages} of {pages}" in text
        assert "Audit chain verified: 4 entries" in text and "Signed head: seq 4" in text
        assert "Chart: ε debited this month per agreement" in text
    else:
        assert f"第 1 页，共 {pages} 页" in text and f"第 {pages} 页，共 {pages} 页" in text
        assert "审计链核验通过：共 4 条记录" in text and "签名链头：序号 4" in text
        assert "数源单位" in text and "被授权方" in text and "隐私预算" in text
        assert "隐私 SQL" in text and "按产品" in text  # product names too


def test_the_pdf_states_a_broken_chain_and_its_seq() -> None:
    rep = _report()
    rep.chain = {"ok": False, "entries": 4, "head": None, "first_bad_seq": 3, "reason": "entry content does not "
                 "match its hash"}
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(render_pdf(rep))).pages)
    assert "Audit chain BROKEN at seq 3: entry content does not match its hash." in text


def test_amounts_are_decimals() -> None:
    assert decimal_text(Fraction(21, 10)) == "2.1"
    assert decimal_text("21/10") == "2.1"
    assert decimal_text(Fraction(1, 3)) == "0.333333333"
    assert decimal_text(Fraction(0)) == "0" and decimal_text(5) == "5" and decimal_text(1e-6) == "0.000001"
    assert decimal_text(0.1 + 0.2) == "0.3" and decimal_text(None) == "—"
