"""The console's language (zh-CN or en): a cookie chosen with the switch in every page's header.

`apply` (a dependency of every console route) sets the request's language before the page runs, so messages made
in a page (``_()``) and the templates' ``{{ _("…") }}`` are in it: the ``veilbox_lang`` cookie, else the server's
default (``VEILBOX_LANG``, `vocab.i18n`). ``GET /console/lang?to=zh-CN&next=/console/…`` sets the cookie and sends
the browser back to ``next``, a console path only (never another site: an open redirect is refused by falling back
to the home page). The choice changes nothing stored and reveals nothing, so it is a link, not a CSRF-guarded form;
the request is audited like every console request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.console._web import COOKIE_PATH, ctx_of, redirect
from vocab.i18n import language_of, set_language

__all__ = ["LANG_COOKIE", "apply", "router", "safe_next"]

LANG_COOKIE = "veilbox_lang"
router = APIRouter(include_in_schema=False)


async def apply(request: Request) -> None:
    """Set the request's language from its cookie (else the server default)."""
    set_language(language_of(request.cookies.get(LANG_COOKIE)))


def safe_next(target: str | None) -> str:
    """``target`` when it is a console path on this site, else the console's home."""
    if (not target or not target.startswith("/console") or target.startswith("//") or "\\" in target
            or any(ord(c) < 32 for c in target)):
        return "/console/"
    return target


@router.get("/lang", name="console.language")
async def choose(request: Request, to: str = "", next: str = "") -> Response:
    language = language_of(to)
    resp = redirect(safe_next(next))
    if language is not None:
        resp.set_cookie(LANG_COOKIE, language, httponly=True, samesite="lax", path=COOKIE_PATH,
                        secure=ctx_of(request).settings.tls_terminated, max_age=365 * 86400)
    return resp
