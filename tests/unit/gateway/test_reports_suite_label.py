"""The monthly report names the signed head's signature by the home suite's algorithm: Ed25519 in an intl home
(unchanged), SM2 in an sm home, in English and in Chinese, in the PDF and on the console page."""

from __future__ import annotations

import io

import pypdf
import pytest

from gateway.reports import MonthlyReport, render_pdf, signature_label
from vocab.i18n import use_language


@pytest.mark.parametrize(("language", "intl", "sm"), [
    ("en", "Ed25519 signature (key k1):", "SM2 signature (key k1):"),
    ("zh-CN", "Ed25519 签名（密钥 k1）：", "SM2 签名（密钥 k1）："),
])
def test_the_label_names_the_home_suites_algorithm(language: str, intl: str, sm: str) -> None:
    with use_language(language):
        assert signature_label({"key_id": "k1"}) == intl == signature_label({"key_id": "k1", "algorithm": "ed25519"})
        assert signature_label({"key_id": "k1", "algorithm": "sm2"}) == sm


def test_an_sm_homes_pdf_says_sm2_not_ed25519() -> None:
    rep = MonthlyReport(month="2026-11", generated_at="2026-11-30T10:00:00+00:00", entries=1, first_seq=1,
                        last_seq=1, chain={"ok": True, "entries": 1, "head": "sm3:" + "ab" * 32, "first_bad_seq": None,
                                           "reason": None},
                        head={"seq": 1, "hash": "sm3:" + "ab" * 32, "signature": "5f" * 64, "key_id": "sm2:k1",
                              "algorithm": "sm2"})
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(render_pdf(rep))).pages)
    assert "SM2 signature (key sm2:k1):" in text and "Ed25519" not in text
