"""Revenue statements (收益分成结算单) in the console: one page for owners, grantees, the data authority and
regulators, with the month's figures and their CSV and PDF.

An owner reads its own statement for a month (its share of every agreement that reads its datasets, totals per
currency to the cent); the data authority and regulators name any owner. Any party of an agreement (proposer,
co-owners, grantee), the data authority and regulators read an agreement's statement for a month (its lines and the
split among its owners). The figures are `policies.revenue`'s through `gateway.services.statements`, the services of
``GET /v1/statements`` and ``GET /v1/statements/owner``: the same authorization, the same numbers and the same files
(docs/revenue.md), never a second computation. Every read is audited like any console request (the route names
below are the actions).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import Response

import policies
from catalog.errors import INVALID_REQUEST, DomainError, not_found
from gateway.console._web import audit_event, ctx_of, guarded, in_thread, render, session_actor, signed_in
from gateway.services import statements as service
from policies import revenue
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)

#: Who may open the page: owners, grantees (operators and banks), the data authority and regulators.
READERS = (Role.OWNER, Role.OPERATOR, Role.BANK, Role.AUTHORITY, Role.REGULATOR)
OVERSEERS = (Role.AUTHORITY, Role.REGULATOR)
DOWNLOADS = ("csv", "pdf")


def line_label(line: str) -> str:
    """A statement line's name in the page's language (as in the statement's PDF)."""
    return {
        "calls": _("Calls"),
        "jobs": _("Jobs"),
        "epsilon": _("ε drawn"),
        "scores": _("Encrypted scores"),
        "checks": _("Checks"),
    }.get(line, line)


def _month(value: str | None) -> str:
    month = (value or "").strip()[:7] or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    revenue.parse_month(month)  # INVALID_REQUEST on anything but YYYY-MM
    return month


def _blank(value: str | None, limit: int) -> str | None:
    value = (value or "").strip()[:limit]
    return value or None


@router.get("/statements", name="console.statements")
@guarded
async def statements_page(
    request: Request, month: str | None = None, agreement: str | None = None, owner: str | None = None
) -> Response:
    """The month's statements: the owner's own (or, for the authority and regulators, the named owner's) and,
    when an agreement is chosen, that agreement's with its split among the owners."""
    session = await signed_in(request, *(r.value for r in READERS))
    ctx, actor, role = ctx_of(request), session_actor(session), session.principal.role
    chosen_month = _month(month)
    agreement_id, owner_name = _blank(agreement, 40), _blank(owner, 64)
    ev = audit_event(request)
    ev.details["month"] = chosen_month
    mine = None
    if role == Role.OWNER or (role in OVERSEERS and owner_name):
        mine = await in_thread(
            service.owner_statement, ctx, actor, chosen_month, owner_name if role in OVERSEERS else None
        )
        ev.details["owner"] = mine.owner
    one = None
    if agreement_id:
        ev.agreement_id = agreement_id
        one = await in_thread(service.agreement_statement, ctx, actor, agreement_id, chosen_month)
    listed = await in_thread(policies.list_agreements, ctx.engine, actor)
    choices = sorted({a.id for a in listed} | {s.agreement_id for s in (mine.entries if mine else ())})
    return render(
        request,
        "statements.html",
        session,
        month=chosen_month,
        mine=mine,
        mine_json=mine.as_json() if mine else None,
        one=one,
        one_json=one.as_json() if one else None,
        agreement=agreement_id or "",
        owner=owner_name or "",
        choices=choices,
        overseer=role in OVERSEERS,
        line_label=line_label,
    )


def _download(f: service.StatementFile) -> Response:
    return Response(
        f.data, media_type=f.media_type, headers={"Content-Disposition": f'attachment; filename="{f.filename}"'}
    )


@router.get("/statements/agreement.{fmt}", name="console.statement.agreement.download")
@guarded
async def agreement_download(request: Request, fmt: str, agreement: str = "", month: str = "") -> Response:
    """An agreement's statement as CSV or PDF (the files of ``GET /v1/statements?format=csv|pdf``)."""
    session = await signed_in(request, *(r.value for r in READERS))
    if fmt not in DOWNLOADS:
        raise not_found("statement")
    agreement_id = _blank(agreement, 40)
    if agreement_id is None:
        raise DomainError(INVALID_REQUEST, _("Choose an agreement."), [{"field": "agreement"}])
    chosen_month = _month(month)
    ev = audit_event(request)
    ev.agreement_id = agreement_id
    ev.details.update(month=chosen_month, format=fmt)
    st = await in_thread(
        service.agreement_statement, ctx_of(request), session_actor(session), agreement_id, chosen_month
    )
    return _download(await in_thread(service.render, st, fmt))


@router.get("/statements/owner.{fmt}", name="console.statement.owner.download")
@guarded
async def owner_download(request: Request, fmt: str, month: str = "", owner: str = "") -> Response:
    """An owner's statement as CSV or PDF (the files of ``GET /v1/statements/owner?format=csv|pdf``)."""
    session = await signed_in(request, *(r.value for r in READERS))
    if fmt not in DOWNLOADS:
        raise not_found("statement")
    chosen_month = _month(month)
    named = _blank(owner, 64) if session.principal.role in OVERSEERS else None
    st = await in_thread(service.owner_statement, ctx_of(request), session_actor(session), chosen_month, named)
    audit_event(request).details.update(month=chosen_month, format=fmt, owner=st.owner)
    return _download(await in_thread(service.render, st, fmt))
