"""Translations: the zh-CN catalog covers every message the code uses, keeps its placeholders, follows the glossary,
and the language is chosen per context, else by VEILBOX_LANG."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from vocab import i18n
from vocab.i18n import _, catalog, current_language, language_of, ngettext, parse_po, use_language

ROOT = Path(__file__).resolve().parents[3]
PO = ROOT / "vocab" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[sdrf%]")
KEYWORDS = {"_": None, "gettext": None, "gettext_noop": None, "ngettext": (1, 2)}


def _used_messages() -> set[str]:
    """Every message the code and the console's templates pass to _(), gettext or ngettext (babel.cfg)."""
    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(ROOT), method_map, options_map,
                                                                 keywords=KEYWORDS):
        found.add(message[0] if isinstance(message, tuple) else message)
    return {m for m in found if m}


def test_every_message_in_the_code_has_a_chinese_translation() -> None:
    used = _used_messages()
    assert len(used) > 200
    zh = catalog("zh-CN")
    missing = sorted(m for m in used if m not in zh)
    assert not missing, f"{len(missing)} messages have no zh-CN translation (run `make messages`): {missing[:20]}"


def test_translations_keep_their_placeholders() -> None:
    for msgid, msgstr in catalog("zh-CN").items():
        forms = msgstr if isinstance(msgstr, list) else [msgstr]
        for form in forms:
            assert sorted(PLACEHOLDER.findall(form)) == sorted(PLACEHOLDER.findall(msgid)), (msgid, form)


def test_the_catalog_reader_agrees_with_babel() -> None:
    with open(PO, "rb") as f:
        ref = {(m.id[0] if isinstance(m.id, tuple) else m.id): (list(m.string) if isinstance(m.id, tuple) else m.string)
               for m in read_po(f) if m.id and m.string and "fuzzy" not in m.flags}
    assert parse_po(PO.read_text(encoding="utf-8")) == ref


def test_parse_po_handles_continuations_plurals_and_fuzzy_entries() -> None:
    text = ('msgid ""\nmsgstr "Content-Type: text/plain\\n"\n\n#, fuzzy\nmsgid "a"\nmsgstr "b"\n\n'
            'msgid "x %(n)s"\nmsgstr ""\n"y %(n)s"\n" \\"z\\""\n\nmsgid "%(num)s job"\nmsgid_plural "%(num)s jobs"\n'
            'msgstr[0] "%(num)s 个作业"\n\nmsgid "untranslated"\nmsgstr ""\n')
    assert parse_po(text) == {"x %(n)s": 'y %(n)s "z"', "%(num)s job": ["%(num)s 个作业"]}


@pytest.mark.parametrize(("english", "chinese"), [
    ("owner", "数源单位"), ("Per agreement (授权运营协议)", "按协议（授权运营协议）"), ("Verify", "核验"),
    ("usable but invisible (可用不可见)", "可用不可见"),
    ("Audit chain and signed head (全程留痕)", "审计链与签名链头（全程留痕）"),
    ("PSI & anonymous checks", "隐私求交与匿踪查询"),
])
def test_policy_terms_follow_the_glossary(english: str, chinese: str) -> None:
    assert catalog("zh-CN")[english] == chinese
    glossary = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    for term in ("授权运营协议", "可用不可见", "原始数据不出域", "核验", "匿踪查询", "分类分级", "负面清单",
                 "数据主管部门", "备案", "整改", "收益分成", "国产密码", "全程留痕", "数源单位"):
        assert term in glossary


def test_language_of_tags() -> None:
    for tag in ("zh", "zh-CN", "zh_CN", "zh_CN.UTF-8", "zh-Hans", "ZH-cn"):
        assert language_of(tag) == "zh-CN"
    for tag in ("en", "en-GB", "en_US.UTF-8"):
        assert language_of(tag) == "en"
    assert language_of("fr") is None and language_of("") is None and language_of(None) is None


def test_the_context_wins_over_veilbox_lang_which_wins_over_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEILBOX_LANG", raising=False)
    assert current_language() == "en" and _("Sign in") == "Sign in"
    monkeypatch.setenv("VEILBOX_LANG", "zh_CN.UTF-8")
    assert current_language() == "zh-CN" and _("Sign in") == "登录"
    assert _("Welcome, %(name)s", name="税务局") == "欢迎，税务局"
    with use_language("en"):
        assert _("Sign in") == "Sign in"
    monkeypatch.setenv("VEILBOX_LANG", "xx")
    assert current_language() == "en"
    with use_language("zh-CN"):
        assert _("message nobody translated %(x)s", x=1) == "message nobody translated 1"
        assert ngettext("%(num)s file", "%(num)s files", 2) == "2 files"


def test_english_has_no_catalog() -> None:
    assert i18n.catalog("en") == {}


def test_role_and_state_names() -> None:
    from vocab.i18n import term

    with use_language("zh-CN"):
        assert (term("owner"), term("authority"), term("filed"), term("under_review")) == (
            "数源单位", "数据主管部门", "已备案", "审核中")
        assert term("something-else") == "something-else"
    with use_language("en"):
        assert term("under_review") == "under review" and term("active") == "active"
