"""Admins' pages: principals (list, create, disable and enable, rotate the token — the new one shown once —, set the
expiry), the negative list (负面清单: view, add, remove) and the service's health (store, audit head and a chain
verification on demand, query engines, the job worker and the leases of running jobs).

Principal changes go through `gateway.identities` with the request's audit entry as their journal, exactly as
the API's routes do (`gateway.routes.principals`), so each change, the end of the principal's console sessions
and the entry commit in one transaction. Negative-list changes call the same `policies` functions as the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

import policies
from catalog import registry
from catalog.errors import INVALID_REQUEST, DomainError, not_found
from gateway import _tables as t
from gateway import identities
from gateway.console._web import (
    audit_event,
    ctx_of,
    form_event,
    guarded,
    in_thread,
    posted_form,
    redirect,
    render,
    session_actor,
    signed_in,
)
from gateway.context import AppContext
from gateway.journal import request_entry
from policies import _tables as pt
from vocab.i18n import _
from vocab.roles import Role
from vocab.states import JobState

router = APIRouter(include_in_schema=False)

ROLES = tuple(r.value for r in Role)


async def _principals_page(request: Request, session: Any, **values: Any) -> Response:
    ctx = ctx_of(request)
    rows = await in_thread(identities.records, ctx.engine)
    return render(request, "admin_principals.html", session, principals=rows, roles=ROLES,
                  now=dt.datetime.now(dt.UTC), **values)


@router.get("/admin/principals", name="console.admin.principals")
@guarded
async def principals(request: Request) -> Response:
    session = await signed_in(request, Role.ADMIN)
    return await _principals_page(request, session)


@router.post("/admin/principals", name="console.admin.principal.create")
@guarded
async def principal_create(request: Request) -> Response:
    session = await signed_in(request, Role.ADMIN)
    form = await posted_form(request, session)
    ctx, ev = ctx_of(request), audit_event(request)
    name, role = form.get("name", "").strip(), form.get("role", "")
    ev.details.update(name=name[:64], new_role=role[:16])
    p, token = await in_thread(identities.create_principal, ctx.engine, name, role, session.principal.name,
                               ctx.settings.token_ttl_days, pepper=ctx.keys.token_pepper)
    return await _principals_page(request, session, shown_once=(p.name, token))


@router.post("/admin/principals/{name}/{action}", name="console.admin.principal.change")
@guarded
async def principal_change(request: Request, name: str, action: str) -> Response:
    session = await signed_in(request, Role.ADMIN)
    form = await posted_form(request, session)
    ctx = ctx_of(request)
    if action == "rotate":  # answers with a page showing the new token once: its entry states 200
        ev = audit_event(request)
        ev.action = "console.admin.principal.rotate"
        ev.details["name"] = name[:64]
        _, token = await in_thread(identities.rotate, ctx.engine, name, request_entry(ctx.audit, ev),
                                   pepper=ctx.keys.token_pepper)
        return await _principals_page(request, session, shown_once=(name, token))
    ev = form_event(request)
    ev.action = f"console.admin.principal.{action[:20]}"
    ev.details["name"] = name[:64]
    journal = request_entry(ctx.audit, ev)
    admin = session.principal.name
    if action == "disable":
        await in_thread(identities.disable, ctx.engine, name, journal, admin)
    elif action == "enable":
        await in_thread(identities.enable, ctx.engine, name, journal)
    elif action == "expiry":
        when = _expiry(form.get("expires_on", ""))
        ev.details["expires_at"] = when.isoformat()
        await in_thread(identities.set_expiry, ctx.engine, name, when, journal, admin)
    else:
        raise not_found("action")
    return redirect("/console/admin/principals")


def _expiry(value: str) -> dt.datetime:
    """The start (00:00 UTC) of the date a date picker sent."""
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise DomainError(INVALID_REQUEST, _("Pick the date the token stops working."),
                          [{"field": "expires_on"}]) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# --- negative list (负面清单) ------------------------------------------------------------------------------------
@router.get("/admin/negative-list", name="console.admin.negative")
@guarded
async def negative(request: Request) -> Response:
    session = await signed_in(request, Role.ADMIN)
    entries = await in_thread(policies.list_entries, ctx_of(request).engine)
    return render(request, "admin_negative.html", session, entries=entries)


@router.post("/admin/negative-list", name="console.admin.negative.add")
@guarded
async def negative_add(request: Request) -> Response:
    session = await signed_in(request, Role.ADMIN)
    form = await posted_form(request, session)
    ev = audit_event(request)
    e = await in_thread(policies.add_entry, ctx_of(request).engine, session_actor(session), form.get("kind", ""),
                        form.get("value", "").strip(), form.get("note", "").strip()[:500])
    ev.details.update(kind=e.kind.value, value=e.value)
    return redirect("/console/admin/negative-list")


@router.post("/admin/negative-list/{entry_id}/remove", name="console.admin.negative.remove")
@guarded
async def negative_remove(request: Request, entry_id: str) -> Response:
    session = await signed_in(request, Role.ADMIN)
    await posted_form(request, session)
    audit_event(request).details["entry_id"] = entry_id[:64]
    await in_thread(policies.remove_entry, ctx_of(request).engine, session_actor(session), entry_id)
    return redirect("/console/admin/negative-list")


# --- service health -------------------------------------------------------------------------------------------
def _service_state(ctx: AppContext, verify: bool) -> dict[str, Any]:
    j = pt.jobs.c
    with ctx.engine.connect() as conn:
        head = conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)).first()
        leases = conn.execute(
            select(j.id, j.kind, j.state, j.lease_owner, j.lease_expires_at)
            .where(j.state.in_([JobState.APPROVED.value, JobState.RUNNING.value])).order_by(j.id)).all()
        queued = sum(1 for r in leases if r.state == JobState.APPROVED.value)
    engines = getattr(ctx.runtime, "engines", None)
    datasets = [d.name for d in registry.list_all(ctx.engine)]
    return {
        "head": head,
        "report": ctx.audit.verify().as_dict() if verify else None,
        "leases": [r for r in leases if r.state == JobState.RUNNING.value],
        "queued": queued,
        "engines": [(n, engines.in_use(n)) for n in datasets] if engines is not None else None,
        "per_dataset": ctx.settings.engines_per_dataset,
        "now": dt.datetime.now(dt.UTC),
    }


@router.get("/admin/health", name="console.admin.health")
@guarded
async def health(request: Request, verify: int = 0) -> Response:
    session = await signed_in(request, Role.ADMIN)
    checks = await request.app.state.probes.ready()
    state = await in_thread(_service_state, ctx_of(request), bool(verify))
    return render(request, "admin_health.html", session, checks=checks, **state)
