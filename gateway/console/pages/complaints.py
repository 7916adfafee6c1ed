"""Complaints and objections (投诉与异议) in the console: one page for every signed-in principal.

Filers file and follow theirs, an owner works the queue routed to them, the data authority and admins work every
complaint, regulators read every complaint and change nothing (no forms). Rules: `policies.complaints`; the
forms go through `gateway.services.complaints` exactly as the API does (a raw subject hashed on arrival, each
change committed with the request's audit entry, `form_event`).
"""

from __future__ import annotations

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
from gateway.services import complaints as service
from policies import complaints as policy
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)

STEPS = {"investigate": "investigating", "resolve": "resolved", "reject": "rejected"}


@router.get("/complaints", name="console.complaints")
@guarded
async def complaints(request: Request, state: str | None = None) -> Response:
    session = await signed_in(request, *(r.value for r in Role))
    actor = session_actor(session)
    items = await in_thread(policy.list_complaints, ctx_of(request).engine, actor,
                            state=state if state in policy.STATES else None)
    me, role = session.principal.name, session.principal.role
    movable = {c.id for c in items if c.state in ("open", "investigating")
               and (role in (Role.AUTHORITY, Role.ADMIN) or (role == Role.OWNER and c.owner == me))}
    return render(request, "complaints.html", session, items=items, movable=movable, state=state or "",
                  may_file=role != Role.REGULATOR, states=policy.STATES)


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.post("/complaints", name="console.complaint.file")
@guarded
async def complaint_file(request: Request) -> Response:
    ev = form_event(request)
    session = await signed_in(request, *(r.value for r in Role))
    form = await posted_form(request, session)
    try:
        body = service.FileBody(kind=form.get("kind", "complaint"), target_kind=form.get("target_kind", ""),
                                target=_blank(form.get("target")), agreement_id=_blank(form.get("agreement_id")),
                                subject=_blank(form.get("subject")), subject_hash=_blank(form.get("subject_hash")),
                                text=form.get("text", "").strip())
    except ValidationError:
        raise DomainError(INVALID_REQUEST, _("Fill in the target and a text of at most 2000 characters."),
                          [{"field": "form"}]) from None
    out: dict[str, Any] = await in_thread(service.file, ctx_of(request), session.principal, body, ev)
    return redirect(f"/console/complaints#{out['id']}")


@router.post("/complaints/{complaint_id}/{step}", name="console.complaint.move")
@guarded
async def complaint_move(request: Request, complaint_id: str, step: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, *(r.value for r in Role))
    form = await posted_form(request, session)
    if step not in STEPS:
        raise DomainError(INVALID_REQUEST, _("Unknown step."), [{"field": "step"}])
    ev.action = f"console.complaint.{step}"
    reasons = [r.strip() for r in form.get("reasons", "").splitlines() if r.strip()][:20]
    await in_thread(service.move, ctx_of(request), session.principal, complaint_id[:64], STEPS[step], reasons, ev)
    return redirect(f"/console/complaints#{complaint_id[:64]}")
