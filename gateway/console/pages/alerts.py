"""Alerts (监测预警) in the console: the owner concerned, the data authority, regulators and admins read the alerts
they may read (`gateway.services.alerts`: a subject's hash only for its owner) and, except regulators, acknowledge
them; the form goes through the same service as the API (the acknowledgement committed with the request's audit
entry, `form_event`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

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
from gateway.services import alerts as service
from vocab.i18n import gettext_noop
from vocab.roles import Role

router = APIRouter(include_in_schema=False)

READERS = (Role.OWNER, Role.AUTHORITY, Role.REGULATOR, Role.ADMIN)
#: the rules' and severities' names as shown (translated where shown)
LABELS = {
    "budget": gettext_noop("budget mostly spent"),
    "denied": gettext_noop("refused calls"),
    "checks": gettext_noop("checks on one subject"),
    "incidents": gettext_noop("engine incidents"),
    "chain": gettext_noop("audit chain broken"),
    "warning": gettext_noop("warning"),
    "critical": gettext_noop("critical"),
}


@router.get("/alerts", name="console.alerts")
@guarded
async def alerts(request: Request, unacked: str | None = None) -> Response:
    session = await signed_in(request, *(r.value for r in READERS))
    items = await in_thread(service.list_alerts, ctx_of(request), session_actor(session), unacked=bool(unacked))
    may_ack = session.principal.role in service.ACK_ROLES
    return render(request, "alerts.html", session, items=items, may_ack=may_ack, unacked=bool(unacked), labels=LABELS)


@router.post("/alerts/{alert_id}/ack", name="console.alert.ack")
@guarded
async def alert_ack(request: Request, alert_id: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, *(r.value for r in service.ACK_ROLES))
    await posted_form(request, session)
    ev.action = "console.alert.ack"
    await in_thread(service.acknowledge, ctx_of(request), session.principal, alert_id[:64], ev)
    return redirect(f"/console/alerts#{alert_id[:64]}")
