"""Message translation for the console and the CLI (zh-CN and en).

``_(message, **values)`` returns ``message`` in the current language with ``%(name)s`` placeholders filled.
English is the source language: a message is its own English text. The Chinese catalog is the gettext file
``vocab/locale/zh_CN/LC_MESSAGES/messages.po``, read when first needed (no compiled ``.mo``: the ``.po`` is the
one source, so nothing can drift and no build step is needed). Policy terms follow ``docs/glossary.md``.

The current language is, in order: the one set for this context (`use_language`, `set_language`: the console
sets the session's choice for each request), else ``VEILBOX_LANG`` (the CLI's and the server's default), else
English. ``zh``, ``zh-CN``, ``zh_CN``, ``zh_CN.UTF-8`` and ``zh-Hans`` all mean simplified Chinese; anything else
unknown means English.

``make messages`` extracts every ``_()`` / ``gettext`` / ``ngettext`` message from the Python code and the console's
templates (``babel.cfg``) and merges them into the catalog; a test fails when a message used in the code has no
Chinese translation.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
from collections.abc import Iterator
from contextvars import ContextVar, Token
from pathlib import Path

__all__ = ["DEFAULT", "LANGUAGES", "_", "catalog", "current_language", "gettext", "gettext_noop", "language_of",
           "ngettext", "set_language", "term", "use_language"]

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
_DIRS = {"zh-CN": "zh_CN"}
_current: ContextVar[str | None] = ContextVar("veilbox_language", default=None)


def language_of(tag: str | None) -> str | None:
    """A language tag (``zh-CN``, ``zh_CN.UTF-8``, ``zh``, ``en-GB`` …) → one of `LANGUAGES`, or None if unknown."""
    if not tag:
        return None
    base = tag.strip().split(".")[0].replace("_", "-").lower()
    if base == "zh" or base.startswith(("zh-cn", "zh-hans", "zh-sg")):
        return "zh-CN"
    if base == "en" or base.startswith("en-"):
        return "en"
    return None


def current_language() -> str:
    """The language of this context: the one set here, else ``VEILBOX_LANG``, else English."""
    return _current.get() or language_of(os.environ.get("VEILBOX_LANG")) or DEFAULT


def set_language(tag: str | None) -> Token[str | None]:
    """Set this context's language (None: back to ``VEILBOX_LANG``); returns the token to reset it."""
    return _current.set(language_of(tag))


@contextlib.contextmanager
def use_language(tag: str | None) -> Iterator[str]:
    """Within the block, messages are in ``tag``'s language (yields the language chosen)."""
    token = set_language(tag)
    try:
        yield current_language()
    finally:
        _current.reset(token)


def _unquote(literal: str) -> str:
    value = ast.literal_eval(literal)  # a .po string is a C string literal; Python's reading of it is the same
    if not isinstance(value, str):
        raise ValueError(f"not a string: {literal!r}")
    return value


def parse_po(text: str) -> dict[str, str | list[str]]:
    """A gettext ``.po`` file → {msgid: msgstr} (a list of forms for plural messages, keyed by the singular).
    Untranslated (empty) and fuzzy entries are left out, as gettext itself does; the header (msgid "") too."""
    out: dict[str, str | list[str]] = {}
    entry: dict[str, list[str]] = {}
    key: str | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal entry, key, fuzzy
        msgid = "".join(entry.get("msgid", []))
        if msgid and not fuzzy and "msgctxt" not in entry:
            if "msgid_plural" in entry:
                forms = ["".join(v) for k, v in sorted(entry.items()) if k.startswith("msgstr[")]
                if forms and all(forms):
                    out[msgid] = forms
            else:
                msgstr = "".join(entry.get("msgstr", []))
                if msgstr:
                    out[msgid] = msgstr
        entry, key, fuzzy = {}, None, False

    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        if not line:
            if entry:
                flush()
            continue
        if line.startswith("#"):
            if entry and not line.startswith("#~"):  # a comment starts the next entry
                flush()
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        if line.startswith('"'):
            if key is None:
                raise ValueError(f"continuation line outside an entry: {raw!r}")
            entry[key].append(_unquote(line))
            continue
        word, _sep, rest = line.partition(" ")
        if word in ("msgid", "msgctxt") and "msgstr" in entry:
            flush()
        key = word
        entry[key] = [_unquote(rest.strip())]
    return out


@functools.cache
def catalog(language: str) -> dict[str, str | list[str]]:
    """The translations of ``language`` (empty for English, the source language)."""
    folder = _DIRS.get(language)
    if folder is None:
        return {}
    path = LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po"
    return parse_po(path.read_text(encoding="utf-8")) if path.exists() else {}


def gettext(message: str, **values: object) -> str:
    """``message`` in the current language, its ``%(name)s`` placeholders filled from ``values``."""
    found = catalog(current_language()).get(message)
    text = found if isinstance(found, str) else message
    return text % values if values else text


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    """The form for ``n`` in the current language (``%(num)s`` is ``n``)."""
    values.setdefault("num", n)
    found = catalog(current_language()).get(singular)
    if isinstance(found, list):
        text = found[0] if len(found) == 1 else found[0 if n == 1 else min(1, len(found) - 1)]
    else:
        text = singular if n == 1 else plural
    return text % values


def gettext_noop(message: str) -> str:
    """Mark a message kept in a constant for extraction (``make messages``); translate it where it is shown."""
    return message


_ = gettext


def term(value: str) -> str:
    """A role or state name (`vocab.roles`, `vocab.states`) in the current language; anything else unchanged.
    The console shows ``owner`` as 数源单位 and ``filed`` as 已备案 (docs/glossary.md)."""
    labels = {
        "admin": _("admin"), "owner": _("owner"), "operator": _("operator"), "bank": _("bank"),
        "regulator": _("regulator"), "authority": _("authority"), "grantee": _("grantee"),
        "pending_approval": _("pending approval"), "approved": _("approved"), "running": _("running"),
        "succeeded": _("succeeded"), "released": _("released"), "rejected": _("rejected"), "failed": _("failed"),
        "cancelled": _("cancelled"), "proposed": _("proposed"), "accepted": _("accepted"),
        "under_review": _("under review"), "returned": _("returned"), "filed": _("filed"), "active": _("active"),
        "suspended": _("suspended"), "revoked": _("revoked"), "expired": _("expired"),
    }
    return labels.get(value, value)
