"""The web console (``/console``): server-rendered pages for owners, operators, banks and regulators.

Jinja2 templates with autoescaping, no JavaScript at all, one stylesheet. Sign-in exchanges a principal's token
for a session cookie (`gateway.console.sessions`); every form carries a CSRF token; every page and form goes
through the same services (`gateway.services`) and the same audit middleware as the JSON API. The pages are
grouped by audience (`gateway.console.pages`); sessions, CSRF checks and rendering are `gateway.console._web`.
Responses carry a strict Content-Security-Policy (no scripts, no inline styles, no framing), ``X-Frame-Options:
DENY``, ``nosniff``, ``same-origin`` referrers and ``Cache-Control: no-store``.
"""

from __future__ import annotations

from gateway.console._web import STATIC_DIR
from gateway.console.pages import router

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "router"]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null`
    "Cache-Control": "no-store",
}
