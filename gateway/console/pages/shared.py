"""Pages every signed-in principal uses: sign-in and sign-out, home, the catalog, agreements and jobs (what each
principal sees is what the API would show them: the same `policies` reads and services)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

import policies
from catalog import registry
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, UNAUTHENTICATED, DomainError, not_found
from catalog.mock import mock_table
from gateway import identities
from gateway.console import charts
from gateway.console._web import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    audit_event,
    ctx_of,
    form_event,
    guarded,
    in_thread,
    posted_form,
    redirect,
    render,
    session_actor,
    session_store,
    sign_in_page,
    signed_in,
)
from gateway.console.pages import owner as owner_pages
from gateway.console.sessions import same_token
from gateway.services import disposal
from gateway.services import jobs as jobflow
from gateway.services import psi as psi_service
from gateway.services.agreements import agreement_entry, note_expiry, quotas_today
from gateway.services.datasets import public_view
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


MOCK_ROWS = 10


@router.get("/login", name="console.login.page")
async def login_page(request: Request) -> Response:
    return sign_in_page(request)


@router.post("/login", name="console.login")
async def login(request: Request) -> Response:
    ctx, ev = ctx_of(request), audit_event(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not same_token(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE) or "\0"):
        ev.decision, ev.code, ev.details["reason"] = "deny", POLICY_DENIED, "console.csrf"
        return sign_in_page(request, _("The sign-in form expired or was posted from elsewhere; please try again."),
                           status=403)
    principal = await in_thread(identities.authenticate, ctx.engine, form.get("token", "").strip(),
                                pepper=ctx.keys.token_pepper)
    if principal is None:
        ev.decision, ev.code = "deny", UNAUTHENTICATED
        return sign_in_page(request, _("That token is not valid (unknown, disabled or expired)."), status=401)
    value, session = await in_thread(session_store(ctx).create, principal)
    ev.actor, ev.role = principal.name, principal.role.value
    resp = redirect("/console/")
    resp.set_cookie(COOKIE, value, httponly=True, samesite="strict", path=COOKIE_PATH,
                    secure=ctx.settings.tls_terminated, expires=session.expires_at)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return resp


@router.post("/logout", name="console.logout")
@guarded
async def logout(request: Request) -> Response:
    session = await signed_in(request)
    await posted_form(request, session)
    await in_thread(session_store(ctx_of(request)).revoke, request.cookies.get(COOKIE))
    resp = sign_in_page(request, _("You are signed out."))
    resp.delete_cookie(COOKIE, path=COOKIE_PATH)
    return resp


@router.get("/", name="console.home")
@guarded
async def home(request: Request) -> Response:
    session = await signed_in(request)
    ctx, actor = ctx_of(request), session_actor(session)

    def load() -> dict[str, Any]:
        ags = policies.list_agreements(ctx.engine, actor)
        jobs = policies.jobs_visible_to(ctx.engine, actor)
        pending = [j for j in jobs if j.state.value == "pending_approval"]
        awaiting = [j for j in jobs if j.state.value == "succeeded"]
        return {"agreements": [a.public() for a in ags], "pending": pending, "awaiting": awaiting,
                "jobs": len(jobs)}

    return render(request, "home.html", session, **await in_thread(load))


@router.get("/datasets", name="console.datasets")
@guarded
async def datasets(request: Request) -> Response:
    session = await signed_in(request)
    ctx = ctx_of(request)
    rows = await in_thread(lambda: [public_view(d, session.principal) for d in registry.list_all(ctx.engine)])
    return render(request, "datasets.html", session, datasets=rows)


@router.get("/datasets/{name}", name="console.dataset")
@guarded
async def dataset(request: Request, name: str) -> Response:
    session = await signed_in(request)
    audit_event(request).dataset = name[:63]
    ds = await in_thread(registry.get, ctx_of(request).engine, name)
    if ds is None:
        raise not_found("dataset")
    mock = mock_table(ds.name, ds.columns, MOCK_ROWS, 0)
    psi_setups = None
    if ds.owner == session.principal.name:  # whether banks' PSI setups exist for this version (reads only)
        psi_setups = await in_thread(psi_service.store(ctx_of(request)).cached, ds)
    return render(request, "dataset.html", session, ds=public_view(ds, session.principal),
                  mock_columns=mock.column_names, mock_rows=[list(r.values()) for r in mock.to_pylist()],
                  psi_setups=psi_setups)


@router.get("/agreements", name="console.agreements")
@guarded
async def agreements(request: Request) -> Response:
    session = await signed_in(request)
    ags = await in_thread(policies.list_agreements, ctx_of(request).engine, session_actor(session))
    return render(request, "agreements.html", session, agreements=[a.public() for a in ags])


@router.get("/agreements/{agreement_id}", name="console.agreement")
@guarded
async def agreement(request: Request, agreement_id: str) -> Response:
    session = await signed_in(request)
    ctx, actor, ev = ctx_of(request), session_actor(session), audit_event(request)
    ev.agreement_id = agreement_id[:40]

    def load() -> dict[str, Any]:
        note_expiry(ctx, agreement_id)
        ag = policies.get_agreement(ctx.engine, actor, agreement_id)
        status = policies.read_budget(ctx.engine, actor, agreement_id)
        today = dt.datetime.now(dt.UTC).date()
        usage = policies.read_usage(ctx.engine, actor, agreement_id, today - dt.timedelta(days=30), today).as_json()
        jobs = policies.jobs_visible_to(ctx.engine, actor, agreement_id=agreement_id)
        return {"ag": ag.public(), "budget": status.as_json(), "remaining": status.remaining.as_json(),
                "usage": usage, "jobs": jobs, "quotas": quotas_today(ag, usage, today),
                "verify_per_subject": ag.document.quotas.verify_per_subject_per_day,
                "orders": [o for o in policies.list_orders(ctx.engine, actor, agreement_id) if o.open],
                "disposal": disposal.read(ctx, session.principal, agreement_id)
                if actor.role in (Role.OWNER, Role.AUTHORITY, Role.REGULATOR) else None}

    data = await in_thread(load)
    b = data["budget"]
    gauge = charts.gauge(b["epsilon_spent"], b["epsilon_total"], label="ε")
    return render(request, "agreement.html", session, gauge=gauge, **data)


#: Agreement transitions the console makes only after a confirmation page and with a reason (`pages.owner`).
CONFIRMED = ("suspend", "revoke")


@router.post("/agreements/{agreement_id}/{action}", name="console.agreement.transition")
@guarded
async def agreement_transition(request: Request, agreement_id: str, action: str) -> Response:
    ev = form_event(request)
    ev.action, ev.agreement_id = f"console.agreement.{action[:20]}", agreement_id[:40]
    session = await signed_in(request)
    form = await posted_form(request, session)
    fns: dict[str, Callable[..., Any]] = {"accept": policies.accept, "suspend": policies.suspend,
                                          "resume": policies.resume, "revoke": policies.revoke,
                                          "submit": policies.submit_for_filing, "activate": policies.activate}
    if action not in fns:
        raise not_found("action")
    if action in CONFIRMED:  # only from the confirmation page (pages.owner), with the reason the entry records
        reason = form.get("reason", "").strip()
        if form.get("confirmed") != "yes" or not reason:
            raise DomainError(INVALID_REQUEST, _("Suspending or revoking an agreement needs its confirmation "
                                                 "page and a reason."),
                              [{"field": "reason", "reason": "confirmation.required"}])
        ev.details["reason"] = reason[:500]
    ctx = ctx_of(request)

    def run() -> None:  # the transition and its entry: one transaction (`gateway.journal`), as the API's
        note_expiry(ctx, agreement_id)
        fields = ("document_hash",) if action == "accept" else ()
        fns[action](ctx.engine, session_actor(session), agreement_id,
                    journal=agreement_entry(ctx, ev, agreement_id, *fields))
        if action == "revoke":  # the exit clause is carried out at once, as through the API
            disposal.after_revocation(ctx, agreement_id)

    await in_thread(run)
    return redirect(f"/console/agreements/{agreement_id}")


@router.get("/jobs", name="console.jobs")
@guarded
async def jobs(request: Request, state: str | None = None) -> Response:
    session = await signed_in(request)
    rows = await in_thread(policies.jobs_visible_to, ctx_of(request).engine, session_actor(session),
                           state=state or None)
    rows = sorted(rows, key=lambda j: j.created_at, reverse=True)
    return render(request, "jobs.html", session, jobs=rows, state=state or "")


@router.get("/jobs/{job_id}", name="console.job")
@guarded
async def job(request: Request, job_id: str) -> Response:
    session = await signed_in(request)
    ctx, actor, ev = ctx_of(request), session_actor(session), audit_event(request)
    ev.details["job_id"] = job_id[:64]

    def load() -> dict[str, Any]:
        j = policies.get_job(ctx.engine, actor, job_id)
        ev.agreement_id = j.agreement_id
        out: dict[str, Any] = {"job": j, "review": None, "result": None}
        if session.principal.role == Role.OWNER:
            out["review"] = jobflow.review_job(ctx, actor, job_id)
            out["plain"] = owner_pages.owner_review(ctx, actor, j, out["review"])
        if j.state.value == "released":
            try:
                out["result"] = jobflow.job_result(ctx, actor, job_id)
            except DomainError as e:
                out["result_refused"] = e.message
        return out

    data = await in_thread(load)
    pretty = json.dumps(data["job"].spec, indent=2, sort_keys=True, ensure_ascii=False)
    return render(request, "job.html", session, spec_text=pretty, json=json, **data)
