"""The data authority's pages (数据主管部门): the review queue (agreements under review), an agreement's review page
(the document in plain words and its hash, the sign-offs so far, the named reviewers 专家委员会/网信 with each one's
latest sign-off on the current hash and the form naming them, file with a reason or refuse with reasons),
suspension and resumption of any agreement (a confirmation page and a required reason), rectification orders
(整改: issue with a deadline and a text, list, close) and principals (disable, enable).

Every form calls the same `policies` functions and `gateway.identities` as the API's routes
(`gateway.routes.agreements`), with the request's audit entry as their journal, so each change and its entry
commit in one transaction (`form_event`); naming reviewers calls `gateway.services.agreements.name_reviewers`, as
``POST /v1/agreements/{id}/reviewers`` does (``console.authority.reviewers``). The sign-off binds to the document
hash the page showed: a form posted after the agreement changed is refused (``agreement.version_mismatch``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

import policies
from catalog.errors import INVALID_REQUEST, DomainError, not_found
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
from gateway.journal import request_entry
from gateway.services.agreements import agreement_entry, name_reviewers, note_expiry, reviewer_states
from policies.agreements import filing
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)

#: Transitions of the authority that need the confirmation page and a reason.
CONFIRMED = ("suspend", "resume")


def _reasons(text: str) -> list[str]:
    return [r.strip() for r in text.splitlines() if r.strip()][:20]


@router.get("/authority", name="console.authority.queue")
@guarded
async def queue(request: Request) -> Response:
    session = await signed_in(request, Role.AUTHORITY)
    ctx = ctx_of(request)

    def load() -> dict[str, Any]:
        ags = [a.public() for a in policies.list_agreements(ctx.engine, session_actor(session))]
        return {"review": [a for a in ags if a["state"] == "under_review"], "agreements": ags,
                "principals": identities.records(ctx.engine)}

    return render(request, "authority.html", session, **await in_thread(load))


@router.get("/authority/agreements/{agreement_id}", name="console.authority.agreement")
@guarded
async def agreement(request: Request, agreement_id: str) -> Response:
    session = await signed_in(request, Role.AUTHORITY)
    ctx, actor = ctx_of(request), session_actor(session)
    audit_event(request).agreement_id = agreement_id[:40]

    def load() -> dict[str, Any]:
        note_expiry(ctx, agreement_id)
        ag = policies.get_agreement(ctx.engine, actor, agreement_id)
        signoffs = policies.reviews(ctx.engine, actor, agreement_id)
        candidates = [r for r in identities.records(ctx.engine) if r.role.value == Role.REVIEWER and
                      r.reviewer_kind and not r.disabled and not r.expired]
        return {"ag": ag.public(), "signoffs": signoffs, "named": reviewer_states(ag, signoffs),
                "candidates": candidates, "orders": policies.list_orders(ctx.engine, actor, agreement_id)}

    return render(request, "authority_agreement.html", session, **await in_thread(load))


@router.post("/authority/agreements/{agreement_id}/signoff", name="console.authority.signoff")
@guarded
async def signoff(request: Request, agreement_id: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, Role.AUTHORITY)
    form = await posted_form(request, session)
    verdict = form.get("verdict", "")
    if verdict not in ("file", "refuse"):
        raise DomainError(INVALID_REQUEST, _("Choose to file or to refuse the agreement."),
                          [{"field": "verdict"}])
    ev.action, ev.agreement_id = f"console.authority.{verdict}", agreement_id[:40]
    document_hash, reasons = form.get("document_hash", "")[:80], _reasons(form.get("reasons", ""))
    if not reasons:
        raise DomainError(INVALID_REQUEST, _("State the reason for your sign-off, one per line."),
                          [{"field": "reasons", "reason": "reasons.missing"}])
    ev.details.update(document_hash=document_hash, reasons=reasons)
    ctx = ctx_of(request)

    def run() -> None:
        note_expiry(ctx, agreement_id)
        if verdict == "file":
            ag = policies.file_agreement(ctx.engine, session_actor(session), agreement_id,
                                         document_hash=document_hash, reasons=reasons,
                                         journal=agreement_entry(ctx, ev, agreement_id, "filing_number"))
            ev.details["filing_number"] = ag.filing_number
        else:
            policies.refuse(ctx.engine, session_actor(session), agreement_id, document_hash=document_hash,
                            reasons=reasons, journal=agreement_entry(ctx, ev, agreement_id))

    await in_thread(run)
    return redirect(f"/console/authority/agreements/{agreement_id}")


@router.post("/authority/agreements/{agreement_id}/reviewers", name="console.authority.reviewers")
@guarded
async def reviewers(request: Request, agreement_id: str) -> Response:
    """Name the reviewers the filing needs: one checkbox ``named:<name>`` per reviewer; none ticked requires none."""
    ev = form_event(request)
    ev.action, ev.agreement_id = "console.authority.reviewers", agreement_id[:40]
    session = await signed_in(request, Role.AUTHORITY)
    form = await posted_form(request, session)
    names = [k.removeprefix("named:")[:64] for k in form if k.startswith("named:")]
    if len(names) > filing.MAX_REVIEWERS:
        raise DomainError(INVALID_REQUEST, _("Name at most %(n)s reviewers.", n=filing.MAX_REVIEWERS),
                          [{"field": "reviewers", "reason": "reviewers.many"}])
    ctx = ctx_of(request)
    await in_thread(name_reviewers, ctx, ev, session_actor(session), agreement_id, names)
    return redirect(f"/console/authority/agreements/{agreement_id}#reviewers")


@router.get("/authority/agreements/{agreement_id}/confirm/{action}", name="console.authority.confirm")
@guarded
async def confirm(request: Request, agreement_id: str, action: str) -> Response:
    session = await signed_in(request, Role.AUTHORITY)
    if action not in CONFIRMED:
        raise not_found("action")
    audit_event(request).agreement_id = agreement_id[:40]
    ag = await in_thread(policies.get_agreement, ctx_of(request).engine, session_actor(session), agreement_id)
    return render(request, "authority_confirm.html", session, ag=ag.public(), action=action)


@router.post("/authority/agreements/{agreement_id}/{action}", name="console.authority.transition")
@guarded
async def transition(request: Request, agreement_id: str, action: str) -> Response:
    ev = form_event(request)
    ev.action, ev.agreement_id = f"console.authority.{action[:20]}", agreement_id[:40]
    session = await signed_in(request, Role.AUTHORITY)
    form = await posted_form(request, session)
    ctx = ctx_of(request)
    if action == "orders":
        return await _issue_order(request, session, form, agreement_id)
    if action not in CONFIRMED:
        raise not_found("action")
    reason = form.get("reason", "").strip()
    if form.get("confirmed") != "yes" or not reason:
        raise DomainError(INVALID_REQUEST, _("Suspending or resuming an agreement needs its confirmation page and "
                                             "a reason."), [{"field": "reason", "reason": "confirmation.required"}])
    ev.details["reason"] = reason[:2000]
    fn = policies.authority_suspend if action == "suspend" else policies.authority_resume

    def run() -> None:
        note_expiry(ctx, agreement_id)
        fn(ctx.engine, session_actor(session), agreement_id, journal=agreement_entry(ctx, ev, agreement_id))

    await in_thread(run)
    return redirect(f"/console/authority/agreements/{agreement_id}")


async def _issue_order(request: Request, session: Any, form: dict[str, str], agreement_id: str) -> Response:
    ev = audit_event(request)
    ev.action = "console.authority.order.issue"
    text = form.get("text", "").strip()
    try:
        day = dt.date.fromisoformat(form.get("deadline", "").strip())
    except ValueError:
        day = None
    if day is None or not text or len(text) > 2000:
        raise DomainError(INVALID_REQUEST, _("Give the order a deadline and a text of at most 2000 characters."),
                          [{"field": "form"}])
    deadline = dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=dt.UTC)
    ctx = ctx_of(request)
    order_id = policies.new_order_id()
    ev.details.update(order_id=order_id, deadline=deadline.isoformat(), text=text)

    def run() -> None:
        note_expiry(ctx, agreement_id)
        policies.issue_order(ctx.engine, session_actor(session), agreement_id, text, deadline, order_id=order_id,
                             journal=request_entry(ctx.audit, ev))

    await in_thread(run)
    return redirect(f"/console/authority/agreements/{agreement_id}#orders")


@router.post("/authority/orders/{order_id}/close", name="console.authority.order.close")
@guarded
async def order_close(request: Request, order_id: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, Role.AUTHORITY)
    form = await posted_form(request, session)
    ctx = ctx_of(request)
    note = form.get("note", "").strip()[:2000]
    ev.details.update(order_id=order_id[:64], note=note)

    def run() -> str:
        aid = policies.load_order(ctx.engine, order_id[:64]).agreement_id
        ev.agreement_id = aid
        policies.close_order(ctx.engine, session_actor(session), order_id[:64], note=note,
                             journal=request_entry(ctx.audit, ev))
        return aid

    aid = await in_thread(run)
    return redirect(f"/console/authority/agreements/{aid}#orders")


@router.post("/authority/principals/{name}/{action}", name="console.authority.principal")
@guarded
async def principal_change(request: Request, name: str, action: str) -> Response:
    ev = form_event(request)
    ev.action = f"console.authority.principal.{action[:20]}"
    ev.details["name"] = name[:64]
    session = await signed_in(request, Role.AUTHORITY)
    await posted_form(request, session)
    if action not in ("disable", "enable"):
        raise not_found("action")
    ctx = ctx_of(request)
    journal = request_entry(ctx.audit, ev)
    if action == "disable":
        await in_thread(identities.disable, ctx.engine, name, journal, session.principal.name)
    else:
        await in_thread(identities.enable, ctx.engine, name, journal)
    return redirect("/console/authority#principals")
