"""The consent registry (同意登记) in the console: owners (and the trustees they name) list, record and revoke
consents; grantees read the consents granted to them (their ids are what their checks name).

Rules: `policies.consent`; the forms go through `gateway.services.consent` exactly as the API does (a raw id
hashed on arrival, never shown or stored; each change committed with the request's audit entry, `form_event`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from catalog.errors import INVALID_REQUEST, DomainError
from gateway.console._web import (
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
from gateway.services import consent as service
from policies import consent as policy
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


@router.get("/consents", name="console.consents")
@guarded
async def consents(request: Request) -> Response:
    session = await signed_in(request, *(r.value for r in Role))
    engine = ctx_of(request).engine
    items = await in_thread(policy.list_consents, engine, session_actor(session))
    me = session.principal
    owners = [] if me.role == Role.OWNER else await in_thread(policy.trustee_of, engine, me.name)
    may_record = me.role == Role.OWNER or bool(owners)
    trustees = await in_thread(policy.list_trustees, engine, me.name) if me.role == Role.OWNER else []
    revocable = {c.id for c in items if c.revoked_at is None and me.name in (c.owner, c.recorded_by)}
    now = dt.datetime.now(dt.UTC)
    return render(
        request,
        "consents.html",
        session,
        items=items,
        revocable=revocable,
        may_record=may_record,
        trustees=trustees,
        owners=owners,
        now=now,
        enforced=await in_thread(service.enforced, engine),
    )


@router.post("/consents", name="console.consent.record")
@guarded
async def consent_record(request: Request) -> Response:
    ev = form_event(request)
    session = await signed_in(request, *(r.value for r in Role))
    form = await posted_form(request, session)
    subjects = [s.strip() for s in form.get("subjects", "").splitlines() if s.strip()]
    try:
        body = service.RecordBody(
            subjects=subjects,
            grantee=form.get("grantee", "").strip(),
            scenario=form.get("scenario", "").strip(),
            products=[p.strip() for p in form.get("products", "").replace(",", "\n").splitlines() if p.strip()],
            valid_until=dt.datetime.fromisoformat(form.get("valid_until", "").strip()).replace(tzinfo=dt.UTC),
            owner=(form.get("owner") or "").strip() or None,
        )
    except (ValidationError, ValueError):
        raise DomainError(
            INVALID_REQUEST,
            _("Fill in the people's ids, the grantee, the scenario, the products and the end date."),
            [{"field": "form"}],
        ) from None
    out: list[dict[str, Any]] = await in_thread(service.record, ctx_of(request), session.principal, body, ev)
    return redirect(f"/console/consents#{out[0]['id']}")


@router.post("/consents/{consent_id}/revoke", name="console.consent.revoke")
@guarded
async def consent_revoke(request: Request, consent_id: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, *(r.value for r in Role))
    form = await posted_form(request, session)
    await in_thread(
        service.revoke, ctx_of(request), session.principal, consent_id[:40], form.get("reason", "").strip(), ev
    )
    return redirect(f"/console/consents#{consent_id[:40]}")
