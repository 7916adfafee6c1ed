"""The console's plumbing: sessions and sign-in state, CSRF checks, template rendering and refusal pages.

Every page module (`gateway.console.pages`) uses these and nothing else of the web layer: `signed_in` loads the
session from its cookie (and checks the page's roles), `posted_form` checks a form's origin and CSRF token,
`render` fills a template, `guarded` turns an ended session, a CSRF failure, a `DomainError` or a store that could
not commit (`gateway.errors.store_unavailable`: ``503 UNAVAILABLE`` with ``Retry-After``, a "try again" page) into
a page that says why (with the error catalog's code and HTTP status). The Content-Security-Policy and
anti-framing headers are added by the audit middleware (`gateway.console.SECURITY_HEADERS`).

A form that changes state (`form_event`) passes the request's `AuditEvent` to the same service call the API makes,
so its entry — stating the form's ``303`` redirect — commits in the transaction of the change (`gateway.journal`);
the middleware then appends nothing more for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

import policies
from catalog.errors import POLICY_DENIED, UNAUTHENTICATED, UNAVAILABLE, DomainError
from gateway import errors, reports
from gateway.audit import AuditEvent
from gateway.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    Session,
    SessionEnded,
    SessionStore,
    same_token,
)
from gateway.context import AppContext
from gateway.services.jobs import actor_of
from vocab.errors import ErrorCode
from vocab.i18n import current_language, gettext, gettext_noop, ngettext, term

__all__ = ["COOKIE", "COOKIE_PATH", "LOGIN_CSRF_COOKIE", "PAGE", "STATIC_DIR", "CsrfFailed", "audit_event",
           "ctx_of", "form_event", "guarded", "in_thread", "posted_form", "redirect", "render", "session_actor",
           "session_store", "sign_in_page", "signed_in"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.add_extension("jinja2.ext.i18n")
templates.env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
templates.env.globals["current_language"] = current_language  # the request's language (pages/language.py)
templates.env.globals["term"] = term  # a role or state name in that language
templates.env.globals.update(decimal_text=reports.decimal_text, text_of=reports.text_of,  # "—" for None, ε as decimal
                             chain_status=reports.chain_status, count_label=reports.count_label,
                             product_label=reports.product_label)
PAGE = 100  # entries per page of a listing read from the audit log
P = ParamSpec("P")


class CsrfFailed(Exception):
    pass


def ctx_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def audit_event(request: Request) -> AuditEvent:
    """The request's audit entry (the middleware appends it when the response leaves)."""
    ev = getattr(request.state, "audit", None)
    if ev is None:
        ev = request.state.audit = AuditEvent()
    return ev


def form_event(request: Request) -> AuditEvent:
    """The request's audit entry for a form that changes state and answers with a redirect: it states the ``303``
    up front, because a journal writes it in the transaction of the change (`gateway.journal`), before the page
    answers. A refusal or failure afterwards states its own status (the middleware completes the entry)."""
    ev = audit_event(request)
    ev.details["status"] = 303
    return ev


def session_store(ctx: AppContext) -> SessionStore:
    s = ctx.settings
    return SessionStore(ctx.engine, dt.timedelta(minutes=s.console_idle_minutes),
                        dt.timedelta(hours=s.console_session_hours), suite=ctx.keys.suite)


def _session(request: Request) -> Session:
    session = session_store(ctx_of(request)).load(request.cookies.get(COOKIE))
    ev = audit_event(request)
    ev.actor, ev.role = session.principal.name, session.principal.role.value
    return session


def session_actor(session: Session) -> policies.Actor:
    return actor_of(session.principal)


def _require(session: Session, *roles: str) -> None:
    if session.principal.role.value not in roles:
        message = gettext("This page is for %(roles)s principals; you are signed in as %(role)s.",
                          roles=gettext(" or ").join(term(r) for r in roles), role=term(session.principal.role.value))
        raise DomainError(POLICY_DENIED, message, [{"reason": "role.not_allowed"}])


async def posted_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, after the CSRF checks (origin, then the session's token in constant time)."""
    origin = request.headers.get("origin")
    schemes = {request.url.scheme, "https"} if ctx_of(request).settings.tls_terminated else {request.url.scheme}
    if origin and origin not in {f"{scheme}://{request.url.netloc}" for scheme in schemes}:  # TLS ends at a proxy
        raise CsrfFailed(gettext("the form was posted from another site"))
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not same_token(form.get("csrf"), session.csrf):
        raise CsrfFailed(gettext("the form's security token is missing or wrong"))
    return form


def render(request: Request, template: str, session: Session | None, status: int = 200, **values: Any) -> Response:
    return templates.TemplateResponse(request, template, {"session": session, "me": session.principal
                                                          if session else None, **values}, status_code=status)


def _refusal(request: Request, session: Session | None, code: str, message: str, details: Any = None) -> Response:
    ev = audit_event(request)
    ev.decision, ev.code = ("error" if code == "INTERNAL" else "deny"), code
    status = errors.CATALOG[ErrorCode(code)][0] if code in errors.CATALOG else 500
    retry = code == UNAVAILABLE
    resp = render(request, "refused.html", session, status=status, code=code, message=message,
                  details=details or [], retry=retry)
    if retry:
        resp.headers["Retry-After"] = str(errors.STORE_RETRY_AFTER_S)
    return resp


STORE_DOWN = gettext_noop("The service's store is unavailable just now, so this could not be done. A change is made "
                          "together with its audit entry or not at all: reload the page to see where things stand, "
                          "then try again in a moment.")


def guarded(fn: Callable[P, Any]) -> Callable[P, Any]:
    """Turn refusals into pages: an ended session → the sign-in page with the reason (401); a CSRF failure → 403
    with the reason; a `DomainError` → its code, message and status; a store that could not commit or answer (its
    transaction rolled back whole, the change and its entry together) → 503 ``UNAVAILABLE``, "try again"."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await fn(*args, **kwargs)
        except SessionEnded as e:
            ev = audit_event(request)
            ev.decision, ev.code = "deny", UNAUTHENTICATED
            ev.details["reason"] = "console.session"
            return sign_in_page(request, e.reason, status=401)
        except CsrfFailed as e:
            ev = audit_event(request)
            ev.details["reason"] = "console.csrf"
            session = getattr(request.state, "console_session", None)
            return _refusal(request, session, POLICY_DENIED,
                            gettext("Refused: %(why)s. Reload the page and try again.", why=e))
        except DomainError as e:
            return _refusal(request, getattr(request.state, "console_session", None), e.code, e.message, e.details)
        except Exception as e:
            if not errors.store_unavailable(e):
                raise
            errors.from_exception(e)  # logs the cause
            return _refusal(request, getattr(request.state, "console_session", None), UNAVAILABLE, gettext(STORE_DOWN))

    return wrapper


async def signed_in(request: Request, *roles: str) -> Session:
    """The request's session (`SessionEnded` without one), refused unless the principal has one of ``roles``."""
    session = await run_in_threadpool(_session, request)
    request.state.console_session = session
    if roles:
        _require(session, *roles)
    return session


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking service call in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def sign_in_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    """The sign-in form with a fresh pre-session CSRF token (its cookie is set here)."""
    token = secrets.token_urlsafe(32)
    resp = render(request, "login.html", None, status=status, csrf=token, message=message)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path=COOKIE_PATH,
                    secure=ctx_of(request).settings.tls_terminated, max_age=3600)
    return resp
