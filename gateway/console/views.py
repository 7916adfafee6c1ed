"""The console's pages. Every page and form calls the same library functions as the JSON API (`policies`,
`gateway.services.jobs`, `catalog.registry`, `gateway.audit`, `gateway.lineage`, `gateway.reports`), so the console
can do nothing the API would refuse; the audit middleware records every console request like an API call
(``console.*`` actions, the signed-in principal as actor). Refusals render a page that says why, with the
error catalog's code and HTTP status.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import secrets
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

import policies
from catalog import products, registry
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, UNAUTHENTICATED, DomainError, not_found
from catalog.mock import mock_table
from gateway import errors, identities, latency, lineage, reports, strict_json
from gateway.audit import AuditEvent
from gateway.console import charts
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
from gateway.routes import psi as psi_routes
from gateway.services import audit as audit_service
from gateway.services import jobs as jobflow
from gateway.services.agreements import check_grantee, note_expiry
from gateway.services.datasets import public_view
from gateway.services.receipts import RECEIPT_PREFIX
from gateway.services.receipts import sha256 as _sha256
from gateway.services.verification import CheckBody, check_answer
from vocab.errors import ErrorCode
from vocab.jobs import JobKind
from vocab.roles import ANALYSTS, Role

__all__ = ["STATIC_DIR", "router"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 100
MOCK_ROWS = 10
P = ParamSpec("P")


class CsrfFailed(Exception):
    pass


# --- plumbing ------------------------------------------------------------------------------------------------

def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _ev(request: Request) -> AuditEvent:
    ev = getattr(request.state, "audit", None)
    if ev is None:
        ev = request.state.audit = AuditEvent()
    return ev


def _store(ctx: AppContext) -> SessionStore:
    s = ctx.settings
    return SessionStore(ctx.engine, dt.timedelta(minutes=s.console_idle_minutes),
                        dt.timedelta(hours=s.console_session_hours))


def _session(request: Request) -> Session:
    session = _store(_ctx(request)).load(request.cookies.get(COOKIE))
    ev = _ev(request)
    ev.actor, ev.role = session.principal.name, session.principal.role.value
    return session


def _actor(session: Session) -> policies.Actor:
    return jobflow.actor_of(session.principal)


def _require(session: Session, *roles: str) -> None:
    if session.principal.role.value not in roles:
        raise DomainError(POLICY_DENIED, f"This page is for {' or '.join(roles)} principals; you are signed in as "
                          f"{session.principal.role.value}.", [{"reason": "role.not_allowed"}])


async def _form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, after the CSRF checks (origin, then the session's token in constant time)."""
    origin = request.headers.get("origin")
    schemes = {request.url.scheme, "https"} if _ctx(request).settings.tls_terminated else {request.url.scheme}
    if origin and origin not in {f"{scheme}://{request.url.netloc}" for scheme in schemes}:  # TLS ends at a proxy
        raise CsrfFailed("the form was posted from another site")
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not same_token(form.get("csrf"), session.csrf):
        raise CsrfFailed("the form's security token is missing or wrong")
    return form


def render(request: Request, template: str, session: Session | None, status: int = 200, **values: Any) -> Response:
    return templates.TemplateResponse(request, template, {"session": session, "me": session.principal
                                                          if session else None, **values}, status_code=status)


def _refusal(request: Request, session: Session | None, code: str, message: str, details: Any = None) -> Response:
    ev = _ev(request)
    ev.decision, ev.code = ("error" if code == "INTERNAL" else "deny"), code
    status = errors.CATALOG[ErrorCode(code)][0] if code in errors.CATALOG else 500
    return render(request, "refused.html", session, status=status, code=code, message=message,
                  details=details or [])


def guarded(fn: Callable[P, Any]) -> Callable[P, Any]:
    """Turn refusals into pages: an ended session → the sign-in page with the reason (401); a CSRF failure → 403
    with the reason; a `DomainError` → its code, message and status."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await fn(*args, **kwargs)
        except SessionEnded as e:
            ev = _ev(request)
            ev.decision, ev.code = "deny", UNAUTHENTICATED
            ev.details["reason"] = "console.session"
            return _login_page(request, e.reason, status=401)
        except CsrfFailed as e:
            ev = _ev(request)
            ev.details["reason"] = "console.csrf"
            session = getattr(request.state, "console_session", None)
            return _refusal(request, session, POLICY_DENIED, f"Refused: {e}. Reload the page and try again.")
        except DomainError as e:
            return _refusal(request, getattr(request.state, "console_session", None), e.code, e.message, e.details)

    return wrapper


async def _signed_in(request: Request, *roles: str) -> Session:
    session = await run_in_threadpool(_session, request)
    request.state.console_session = session
    if roles:
        _require(session, *roles)
    return session


async def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# --- sign in and out -----------------------------------------------------------------------------------------------

def _login_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    resp = render(request, "login.html", None, status=status, csrf=token, message=message)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path=COOKIE_PATH,
                    secure=_ctx(request).settings.tls_terminated, max_age=3600)
    return resp


@router.get("/login", name="console.login.page")
async def login_page(request: Request) -> Response:
    return _login_page(request)


@router.post("/login", name="console.login")
async def login(request: Request) -> Response:
    ctx, ev = _ctx(request), _ev(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not same_token(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE) or "\0"):
        ev.decision, ev.code, ev.details["reason"] = "deny", POLICY_DENIED, "console.csrf"
        return _login_page(request, "The sign-in form expired or was posted from elsewhere; please try again.",
                           status=403)
    principal = await _run(identities.authenticate, ctx.engine, form.get("token", "").strip())
    if principal is None:
        ev.decision, ev.code = "deny", UNAUTHENTICATED
        return _login_page(request, "That token is not valid (unknown, disabled or expired).", status=401)
    value, session = await _run(_store(ctx).create, principal)
    ev.actor, ev.role = principal.name, principal.role.value
    resp = _redirect("/console/")
    resp.set_cookie(COOKIE, value, httponly=True, samesite="strict", path=COOKIE_PATH,
                    secure=ctx.settings.tls_terminated, expires=session.expires_at)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return resp


@router.post("/logout", name="console.logout")
@guarded
async def logout(request: Request) -> Response:
    session = await _signed_in(request)
    await _form(request, session)
    await _run(_store(_ctx(request)).revoke, request.cookies.get(COOKIE))
    resp = _login_page(request, "You are signed out.")
    resp.delete_cookie(COOKIE, path=COOKIE_PATH)
    return resp


@router.get("/", name="console.home")
@guarded
async def home(request: Request) -> Response:
    session = await _signed_in(request)
    ctx, actor = _ctx(request), _actor(session)

    def load() -> dict[str, Any]:
        ags = policies.list_agreements(ctx.engine, actor)
        jobs = policies.jobs_visible_to(ctx.engine, actor)
        pending = [j for j in jobs if j.state.value == "pending_approval"]
        awaiting = [j for j in jobs if j.state.value == "succeeded"]
        return {"agreements": [a.public() for a in ags], "pending": pending, "awaiting": awaiting,
                "jobs": len(jobs)}

    return render(request, "home.html", session, **await _run(load))


# --- datasets ---------------------------------------------------------------------------------------------------

@router.get("/datasets", name="console.datasets")
@guarded
async def datasets(request: Request) -> Response:
    session = await _signed_in(request)
    rows = await _run(lambda: [public_view(d, session.principal) for d in registry.list_all(_ctx(request).engine)])
    return render(request, "datasets.html", session, datasets=rows)


@router.get("/datasets/{name}", name="console.dataset")
@guarded
async def dataset(request: Request, name: str) -> Response:
    session = await _signed_in(request)
    _ev(request).dataset = name[:63]
    ds = await _run(registry.get, _ctx(request).engine, name)
    if ds is None:
        raise not_found("dataset")
    mock = mock_table(ds.name, ds.columns, MOCK_ROWS, 0)
    psi_setups = None
    if ds.owner == session.principal.name:  # whether banks' PSI setups exist for this version (reads only)
        psi_setups = await _run(psi_routes.store(_ctx(request)).cached, ds)
    return render(request, "dataset.html", session, ds=public_view(ds, session.principal),
                  mock_columns=mock.column_names, mock_rows=[list(r.values()) for r in mock.to_pylist()],
                  psi_setups=psi_setups)


# --- agreements ---------------------------------------------------------------------------------------------------

@router.get("/agreements", name="console.agreements")
@guarded
async def agreements(request: Request) -> Response:
    session = await _signed_in(request)
    ags = await _run(policies.list_agreements, _ctx(request).engine, _actor(session))
    return render(request, "agreements.html", session, agreements=[a.public() for a in ags])


@router.get("/agreements/new", name="console.agreement.new")
@guarded
async def agreement_new(request: Request) -> Response:
    session = await _signed_in(request, Role.OWNER)
    ctx = _ctx(request)
    mine = [d for d in await _run(registry.list_all, ctx.engine) if d.owner == session.principal.name]
    grantees = [p for p in await _run(identities.list_principals, ctx.engine) if p.role in ANALYSTS]
    today = dt.datetime.now(dt.UTC).date()
    return render(request, "agreement_new.html", session, datasets=mine, grantees=grantees,
                  valid_from=today.isoformat(), valid_until=today.replace(year=today.year + 1).isoformat(),
                  kinds=tuple(JobKind))


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.replace("\n", ",").split(",") if x.strip()]


def _document(form: dict[str, str], kinds: list[str]) -> dict[str, Any]:
    """The agreement document from the form's fields (the library validates it, every problem reported)."""
    if form.get("document", "").strip():
        try:
            pasted = strict_json.loads(form["document"].encode())
        except ValueError:
            raise DomainError(INVALID_REQUEST, "the JSON document is not valid JSON") from None
        if not isinstance(pasted, dict):
            raise DomainError(INVALID_REQUEST, "the JSON document must be an object")
        return pasted
    ds = form.get("dataset", "")

    def num(name: str, default: str) -> Any:
        raw = form.get(name, "").strip() or default
        try:
            return int(raw) if raw.isdigit() else float(raw)
        except ValueError:
            raise DomainError(INVALID_REQUEST, f"{name} must be a number", [{"field": name}]) from None

    doc: dict[str, Any] = {
        "title": form.get("title", ""), "grantee": form.get("grantee", ""), "datasets": [ds] if ds else [],
        "columns": {ds: _split(form.get("columns", ""))} if ds else {}, "purposes": _split(form.get("purposes", "")),
        "job_kinds": kinds, "valid_from": f"{form.get('valid_from', '')}T00:00:00Z",
        "valid_until": f"{form.get('valid_until', '')}T00:00:00Z",
        "budget": {"epsilon": num("epsilon", "1"), "delta": form.get("delta", "").strip() or "1e-6"},
        "min_group_units": num("min_group_units", "10"), "approval": form.get("approval", "owner_each_job"),
        "quotas": {"calls_per_day": num("calls_per_day", "1000")},
    }
    return doc


@router.post("/agreements", name="console.agreement.create")
@guarded
async def agreement_create(request: Request) -> Response:
    session = await _signed_in(request, Role.OWNER)
    raw = await request.form()
    form = await _form(request, session)
    kinds = [str(k) for k in raw.getlist("job_kinds")]
    ctx, ev = _ctx(request), _ev(request)
    doc = _document(form, kinds)

    def create() -> policies.Agreement:
        check_grantee(ctx, doc)
        return policies.create_agreement(ctx.engine, _actor(session), doc)

    ag = await _run(create)
    ev.agreement_id, ev.dataset = ag.id, ",".join(ag.document.datasets)
    ev.details.update(grantee=ag.grantee, document_hash=ag.document_hash)
    return _redirect(f"/console/agreements/{ag.id}")


def _quotas_today(ag: policies.Agreement, usage: dict[str, Any], today: dt.date) -> list[tuple[str, int, int, int]]:
    """(quota, limit, used today, remaining today) for the daily call and job quotas, from the metering the API
    reads (`policies.read_usage`)."""
    used: dict[str, Any] = next((d for d in usage["days"] if d["day"] == today.isoformat()), {})
    limits = ag.document.quotas
    return [(name, limit, int(used.get(key, 0)), max(0, limit - int(used.get(key, 0))))
            for name, key, limit in (("calls per day", "calls", limits.calls_per_day),
                                     ("jobs per day", "jobs", limits.jobs_per_day))]


@router.get("/agreements/{agreement_id}", name="console.agreement")
@guarded
async def agreement(request: Request, agreement_id: str) -> Response:
    session = await _signed_in(request)
    ctx, actor, ev = _ctx(request), _actor(session), _ev(request)
    ev.agreement_id = agreement_id[:40]

    def load() -> dict[str, Any]:
        note_expiry(ctx, agreement_id)
        ag = policies.get_agreement(ctx.engine, actor, agreement_id)
        status = policies.read_budget(ctx.engine, actor, agreement_id)
        today = dt.datetime.now(dt.UTC).date()
        usage = policies.read_usage(ctx.engine, actor, agreement_id, today - dt.timedelta(days=30), today).as_json()
        jobs = policies.jobs_visible_to(ctx.engine, actor, agreement_id=agreement_id)
        return {"ag": ag.public(), "budget": status.as_json(), "remaining": status.remaining.as_json(),
                "usage": usage, "jobs": jobs, "quotas": _quotas_today(ag, usage, today),
                "verify_per_subject": ag.document.quotas.verify_per_subject_per_day}

    data = await _run(load)
    b = data["budget"]
    gauge = charts.gauge(b["epsilon_spent"], b["epsilon_total"], label="ε")
    return render(request, "agreement.html", session, gauge=gauge, **data)


@router.post("/agreements/{agreement_id}/{action}", name="console.agreement.transition")
@guarded
async def agreement_transition(request: Request, agreement_id: str, action: str) -> Response:
    ev = _ev(request)
    ev.action, ev.agreement_id = f"console.agreement.{action[:20]}", agreement_id[:40]
    session = await _signed_in(request)
    await _form(request, session)
    fns: dict[str, Callable[..., Any]] = {"accept": policies.accept, "suspend": policies.suspend,
                                          "resume": policies.resume, "revoke": policies.revoke}
    if action not in fns:
        raise not_found("action")
    ctx = _ctx(request)

    def run() -> None:
        note_expiry(ctx, agreement_id)
        fns[action](ctx.engine, _actor(session), agreement_id)

    await _run(run)
    return _redirect(f"/console/agreements/{agreement_id}")


# --- jobs ---------------------------------------------------------------------------------------------------------

@router.get("/jobs", name="console.jobs")
@guarded
async def jobs(request: Request, state: str | None = None) -> Response:
    session = await _signed_in(request)
    rows = await _run(policies.jobs_visible_to, _ctx(request).engine, _actor(session), state=state or None)
    rows = sorted(rows, key=lambda j: j.created_at, reverse=True)
    return render(request, "jobs.html", session, jobs=rows, state=state or "")


@router.get("/jobs/{job_id}", name="console.job")
@guarded
async def job(request: Request, job_id: str) -> Response:
    session = await _signed_in(request)
    ctx, actor, ev = _ctx(request), _actor(session), _ev(request)
    ev.details["job_id"] = job_id[:64]

    def load() -> dict[str, Any]:
        j = policies.get_job(ctx.engine, actor, job_id)
        ev.agreement_id = j.agreement_id
        out: dict[str, Any] = {"job": j, "review": None, "result": None}
        if session.principal.role == Role.OWNER:
            out["review"] = jobflow.review_job(ctx, actor, job_id)
        if j.state.value == "released":
            try:
                out["result"] = jobflow.job_result(ctx, actor, job_id)
            except DomainError as e:
                out["result_refused"] = e.message
        return out

    data = await _run(load)
    pretty = json.dumps(data["job"].spec, indent=2, sort_keys=True, ensure_ascii=False)
    return render(request, "job.html", session, spec_text=pretty, json=json, **data)


@router.post("/jobs/{job_id}/{action}", name="console.job.decide")
@guarded
async def job_decide(request: Request, job_id: str, action: str) -> Response:
    ev = _ev(request)
    ev.action = f"console.job.{action[:20]}"
    ev.details["job_id"] = job_id[:64]
    session = await _signed_in(request, Role.OWNER)
    form = await _form(request, session)
    ctx, actor = _ctx(request), _actor(session)

    def run() -> None:
        if action == "approve":
            j = jobflow.approve_job(ctx, actor, job_id, form.get("spec_hash", ""))
            ev.epsilon, ev.delta = str(j.cost.epsilon), str(j.cost.delta)
        elif action == "reject":
            reason = form.get("reason", "").strip()
            if not reason:
                raise DomainError(INVALID_REQUEST, "a rejection needs a reason the grantee will read",
                                  [{"field": "reason"}])
            j = jobflow.reject_job(ctx, actor, job_id, reason[:500])
            ev.details["reason"] = reason[:500]
        elif action == "release":
            j, digest = jobflow.release_job(ctx, actor, job_id)
            ev.output_digest = digest
        else:
            raise not_found("action")
        ev.agreement_id = j.agreement_id
        ev.dataset = ",".join(j.datasets) or None

    await _run(run)
    return _redirect(f"/console/jobs/{job_id}")


# --- bank: verification (核验) ---------------------------------------------------------------------------------------

def _param_value(raw: str) -> Any:
    """A form value as the JSON scalar it spells (numbers stay numbers), else the text itself."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, str, bool)) else raw


async def _verify_page(request: Request, session: Session, product: str, status: int = 200,
                       **extra: Any) -> Response:
    ctx = _ctx(request)

    def load() -> dict[str, Any]:
        prods = [p.public() for p in products.list_products(ctx.engine)]
        ags = [a.public() for a in policies.list_agreements(ctx.engine, _actor(session), state="active")
               if "verify" in a.document.job_kinds and a.grantee == session.principal.name]
        return {"products": prods, "agreements": ags}

    data = await _run(load)
    chosen = next((p for p in data["products"] if p["name"] == product), data["products"][0] if data["products"]
                  else None)
    return render(request, "verify_check.html", session, status=status, chosen=chosen, **data, **extra)


@router.get("/verify", name="console.verify")
@guarded
async def verify_page(request: Request, product: str = "") -> Response:
    session = await _signed_in(request, Role.BANK)
    return await _verify_page(request, session, product)


@router.post("/verify", name="console.verify.check")
@guarded
async def verify_check(request: Request) -> Response:
    """A plain yes/no check, exactly as ``POST /v1/verifications/{name}/check`` (same metering, receipt and
    latency padding; the audit entry holds the keyed subject hash only)."""
    ev = _ev(request)
    ev.action = "console.verify.check"
    ctx = _ctx(request)
    async with latency.padded(ctx.settings.latency_bucket_ms):
        session = await _signed_in(request, Role.BANK)
        form = await _form(request, session)
        ev.agreement_id = form.get("agreement_id", "")[:40] or None
        try:
            body = CheckBody(agreement_id=form.get("agreement_id", ""), subject=form.get("subject", "").strip(),
                             params={k[6:]: _param_value(v) for k, v in form.items() if k.startswith("param.")},
                             consent_ref=form.get("consent_ref", "").strip(),
                             purpose=form.get("purpose", "").strip() or None)
        except ValidationError as e:
            raise DomainError(INVALID_REQUEST, "the check is not complete",
                              [{"field": ".".join(str(x) for x in err["loc"]), "problem": err["msg"]}
                               for err in e.errors()]) from None
        out = await _run(check_answer, ctx, session.principal, form.get("product", ""), body, ev)
    return await _verify_page(request, session, form.get("product", ""), answer=out, asked=body)


# --- bank: PSI and anonymous checks (匿踪查询) ----------------------------------------------------------------------

PSI_KINDS = ("psi_size", "psi_members", "verify_anonymous")
#: The audit actions of the PSI routes (`gateway.routes.psi`): the route names the audit middleware records.
PSI_HISTORY = (("size", "psi.size"), ("members", "psi.members"), ("anon", "verify.check_anonymous"))
HISTORY_DAYS = 30


def _details(entry: dict[str, Any]) -> dict[str, Any]:
    d = entry.get("details") or {}
    return dict(json.loads(d)) if isinstance(d, str) else dict(d)


def _epsilon_text(value: str | None) -> str:
    """The audit entry's exact ε ("3/4") as a decimal, with the exact fraction where the decimal rounds."""
    if not value:
        return ""
    try:
        exact = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return value
    shown = f"{float(exact):.6g}"
    return shown if Fraction(shown) == exact else f"{shown} ({value})"


def _psi_agreements(ctx: AppContext, session: Session) -> list[dict[str, Any]]:
    """The signed-in bank's agreements granting a PSI kind, with remaining ε/δ and today's quotas (the same
    reads as the agreement page: `policies.read_budget`, `policies.read_usage`)."""
    actor, me = _actor(session), session.principal.name
    today = dt.datetime.now(dt.UTC).date()
    prods = [p.public() for p in products.list_products(ctx.engine)]
    out = []
    for ag in policies.list_agreements(ctx.engine, actor):
        kinds = [k for k in ag.document.job_kinds if k in PSI_KINDS]
        if not kinds or ag.grantee != me:
            continue
        row: dict[str, Any] = {"ag": ag.public(), "kinds": kinds, "remaining": None, "quotas": [],
                               "products": [p for p in prods if p["dataset"] in ag.document.datasets],
                               "quota_limits": ag.document.quotas, "anon_min_bucket": ag.document.anon_min_bucket}
        try:
            row["remaining"] = policies.read_budget(ctx.engine, actor, ag.id).remaining.as_json()
            usage = policies.read_usage(ctx.engine, actor, ag.id, today, today).as_json()
            row["quotas"] = _quotas_today(ag, usage, today)
        except DomainError as e:  # an agreement that ended: its budget and usage are no longer served
            row["unavailable"] = e.message
        out.append(row)
    return out


def _psi_history(ctx: AppContext, session: Session, ts_from: str, cursors: dict[str, int]
                 ) -> dict[str, tuple[list[dict[str, Any]], int | None]]:
    """The bank's own allowed PSI and anonymous-check entries since ``ts_from``, read like the audit page
    (`gateway.routes.audit.page`, scoped to the principal), one keyset page of `PAGE` per kind."""
    out = {}
    for key, action in PSI_HISTORY:
        rows = audit_service.page(ctx, session.principal, cursors.get(key, 0), PAGE + 1,
                                 {"action": action, "decision": "allow", "actor": session.principal.name,
                                  "ts_from": ts_from})["entries"]
        more = len(rows) > PAGE
        out[key] = ([{**r, "details": _details(r), "epsilon": _epsilon_text(r["epsilon"])} for r in rows[:PAGE]],
                    rows[PAGE - 1]["seq"] if more else None)
    return out


async def _psi_render(request: Request, session: Session, since: str = "", cursors: dict[str, int] | None = None,
                      **extra: Any) -> Response:
    ctx = _ctx(request)
    try:
        start = dt.date.fromisoformat(since.strip()) if since.strip() else None
    except ValueError:
        raise DomainError(INVALID_REQUEST, "since must be a date (YYYY-MM-DD)", [{"field": "since"}]) from None
    start = start or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS)
    cursors = cursors or {"size": 0, "members": 0, "anon": 0}

    def load() -> dict[str, Any]:
        return {"agreements": _psi_agreements(ctx, session),
                "history": _psi_history(ctx, session, f"{start.isoformat()}T00:00:00", cursors)}

    data = await _run(load)
    return render(request, "psi.html", session, since=start.isoformat(), cursors=cursors, **data, **extra)


@router.get("/psi", name="console.psi")
@guarded
async def psi_page(request: Request, since: str = "", size_after: int = 0, members_after: int = 0,
                   anon_after: int = 0) -> Response:
    """Private set intersection and anonymous checks: the bank's agreements granting them, its history read
    from its own audit entries, and the CLI commands to run — ids are blinded on the bank's machine, never typed
    here."""
    session = await _signed_in(request, Role.BANK)
    cursors = {"size": max(0, size_after), "members": max(0, members_after), "anon": max(0, anon_after)}
    return await _psi_render(request, session, since, cursors)


RECEIPT_KINDS = ("psi.size", "psi.members", "verification.anonymous")
RECEIPT_SHOWN = ("kind", "issued_at", "agreement_id", "dataset", "product", "bank_ids", "epsilon", "size",
                 "bucket_size")


def _read_receipt(ctx: AppContext, session: Session, receipt: str) -> dict[str, Any]:
    """A PSI or anonymous-check receipt's claims, after checking the service's Ed25519 signature (as
    `veilbox.bank.verify_receipt` does offline) and that it was issued under an agreement the bank holds."""
    refused = DomainError(INVALID_REQUEST, "that is not a receipt signed by this service", [{"field": "receipt"}])
    try:
        tag, payload_b64, sig_b64 = receipt.split(".")
        payload, signature = (base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)) for x in (payload_b64, sig_b64))
        ctx.keys.public.verify(signature, RECEIPT_PREFIX + payload)
        claims = json.loads(payload)
    except (ValueError, InvalidSignature):
        raise refused from None
    if tag != "vbr1" or not isinstance(claims, dict) or claims.get("kind") not in RECEIPT_KINDS:
        raise refused
    ag = policies.load_agreement(ctx.engine, str(claims.get("agreement_id", "")))
    if ag is None or ag.grantee != session.principal.name:
        raise DomainError(POLICY_DENIED, "that receipt was not issued under an agreement you hold",
                          [{"field": "receipt", "reason": "receipt.not_yours"}])
    shown = [(k, claims[k]) for k in RECEIPT_SHOWN if k in claims]
    return {"claims": shown, "digest": _sha256(receipt)}


@router.post("/psi/receipt", name="console.psi.receipt")
@guarded
async def psi_receipt(request: Request) -> Response:
    """Read one of the bank's PSI or anonymous-check receipts (pasted; it holds the noisy size the service does
    not keep) and show its claims next to the history, after checking the signature."""
    ev = _ev(request)
    ev.action = "console.psi.receipt"
    session = await _signed_in(request, Role.BANK)
    form = await _form(request, session)
    read = _read_receipt(_ctx(request), session, form.get("receipt", "").strip()[:20_000])
    ev.output_digest = read["digest"]
    return await _psi_render(request, session, form.get("since", ""), receipt=read)


# --- regulator ----------------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("agreement_id", "dataset", "actor", "action", "decision", "ts_from", "ts_to")


@router.get("/audit", name="console.audit")
@guarded
async def audit(request: Request, since: int = 0) -> Response:
    session = await _signed_in(request, Role.REGULATOR, Role.OWNER)
    ctx = _ctx(request)
    filters = {k: request.query_params.get(k, "").strip()[:100] for k in AUDIT_FILTERS}

    def load() -> tuple[list[dict[str, Any]], int | None]:
        rows = audit_service.page(ctx, session.principal, max(0, since), PAGE + 1, filters)["entries"]
        more = len(rows) > PAGE  # one entry past the page says whether a next page exists
        return rows[:PAGE], (rows[PAGE - 1]["seq"] if more else None)

    rows, nxt = await _run(load)
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(request, "audit.html", session, entries=rows, filters=filters, since=since, next=nxt,
                  query=query)


@router.get("/audit/verify", name="console.audit.verify")
@guarded
async def audit_verify(request: Request) -> Response:
    session = await _signed_in(request, Role.REGULATOR)
    report = await _run(_ctx(request).audit.verify)
    return render(request, "verify.html", session, report=report.as_dict())


@router.get("/lineage", name="console.lineage")
@guarded
async def lineage_page(request: Request, key: str = "") -> Response:
    session = await _signed_in(request, Role.REGULATOR)
    trace = await _run(lineage.trace, _ctx(request), key) if key.strip() else None
    return render(request, "lineage.html", session, key=key, trace=trace)


@router.get("/charts", name="console.charts")
@guarded
async def charts_page(request: Request, days: int = 30) -> Response:
    session = await _signed_in(request, Role.REGULATOR)
    days = min(max(days, 2), 366)
    data = await _run(reports.series, _ctx(request), days)
    cumulative = {a: [sum(v[: i + 1]) for i in range(len(v))] for a, v in data["epsilon"].items()}
    return render(request, "charts.html", session, days=days, data=data,
                  eps_chart=charts.line_chart(f"ε spent per agreement, cumulative, last {days} days",
                                              data["days"], cumulative),
                  calls_chart=charts.line_chart(f"calls per agreement per day, last {days} days",
                                                data["days"], data["calls"]))


def _month(value: str | None) -> str:
    return value or dt.datetime.now(dt.UTC).strftime("%Y-%m")


@router.get("/reports", name="console.report")
@guarded
async def report(request: Request, month: str | None = None) -> Response:
    session = await _signed_in(request, Role.REGULATOR)
    rep = await _run(reports.monthly, _ctx(request), _month(month))
    return render(request, "report.html", session, report=rep)


@router.get("/reports/{month}.{fmt}", name="console.report.download")
@guarded
async def report_download(request: Request, month: str, fmt: str) -> Response:
    await _signed_in(request, Role.REGULATOR)
    if fmt not in ("pdf", "parquet"):
        raise not_found("report")
    f = await _run(audit_service.report_file, _ctx(request), month, fmt)
    return Response(f.data, media_type=f.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{f.filename}"'})


@router.get("/{path:path}", name="console.unknown", response_class=HTMLResponse)
@guarded
async def unknown(request: Request, path: str) -> Response:
    session = await _signed_in(request)
    raise not_found("page")
    return render(request, "refused.html", session)  # pragma: no cover
