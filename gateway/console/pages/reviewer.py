"""A named reviewer's page (专家委员会 expert committee, 网信 cyberspace administration): the agreements under review
the data authority named it on, each with its document hash, whether it already signed off on that hash and what
it said (`gateway.services.agreements.reviewer_states`: an approval or refusal of an earlier version does not count),
and a sign-off form (approve, or refuse with reasons, one per line), bound to the hash the page showed.

The form calls `policies.agreements.filing.review`, as ``POST /v1/agreements/{id}/review`` does, with the request's
audit entry as its journal (``console.review.approve|refuse``); a form posted after the agreement changed is
refused (``agreement.version_mismatch``). A reviewer sees nothing else (docs/agreements.md, "Named reviewers").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

import policies
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
from gateway.services.agreements import agreement_entry, note_expiry, reviewer_states
from policies.agreements import filing
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


@router.get("/review", name="console.review.queue")
@guarded
async def queue(request: Request) -> Response:
    session = await signed_in(request, Role.REVIEWER)
    ctx, actor = ctx_of(request), session_actor(session)

    def load() -> dict[str, Any]:
        review = []
        for ag in policies.list_agreements(ctx.engine, actor):
            states = reviewer_states(ag, policies.reviews(ctx.engine, actor, ag.id))
            mine = [r for r in states if r["name"] == actor.name]
            review.append({**ag.public(), "mine": mine[0] if mine else None})
        return {"review": review}

    return render(request, "reviewer.html", session, **await in_thread(load))


@router.post("/review/{agreement_id}", name="console.review.signoff")
@guarded
async def signoff(request: Request, agreement_id: str) -> Response:
    ev = form_event(request)
    session = await signed_in(request, Role.REVIEWER)
    form = await posted_form(request, session)
    verdict = form.get("verdict", "")
    if verdict not in ("approve", "refuse"):
        raise DomainError(INVALID_REQUEST, _("Choose to approve or to refuse the agreement."), [{"field": "verdict"}])
    ev.action, ev.agreement_id = f"console.review.{verdict}", agreement_id[:40]
    document_hash = form.get("document_hash", "")[:80]
    reasons = [r.strip() for r in form.get("reasons", "").splitlines() if r.strip()][:20]
    ev.details.update(document_hash=document_hash, reasons=reasons)
    ctx = ctx_of(request)

    def run() -> None:
        note_expiry(ctx, agreement_id)
        filing.review(
            ctx.engine,
            session_actor(session),
            agreement_id,
            verdict=verdict,
            document_hash=document_hash,
            reasons=reasons,
            journal=agreement_entry(ctx, ev, agreement_id),
        )

    await in_thread(run)
    return redirect("/console/review")
