"""The subject-access report (查阅请求) in the console: an owner answering a person's request reads the person's
consents with it and every use of the person's data the audit log records.

The person is named by the raw id (hashed at once, never stored or shown again) or by its keyed hash, always in a
POSTed form: the raw id is never in a URL, a log line or the page. The report is `gateway.services.consent`'s
``subject_access``, the service of ``POST /v1/consents/subject-access`` (owners only; uses under the owner's
datasets and agreements, what was asked, when, by whom and the outcome, never a value). The read is audited with
the person's keyed hash, like the API's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from catalog.errors import INVALID_REQUEST, DomainError
from gateway.console._web import audit_event, ctx_of, guarded, in_thread, posted_form, render, signed_in
from gateway.services import consent as service
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)

PAGE = "/consents/subject-access"


@router.get(PAGE, name="console.consent.subject_access")
@guarded
async def subject_access_form(request: Request) -> Response:
    """The empty form (owners)."""
    session = await signed_in(request, Role.OWNER.value)
    return render(request, "subject_access.html", session, report=None)


@router.post(PAGE, name="console.consent.subject_access.report")
@guarded
async def subject_access_report(request: Request) -> Response:
    """The report for the person named in the posted form (its raw id or its hash, exactly one)."""
    session = await signed_in(request, Role.OWNER.value)
    form = await posted_form(request, session)
    raw = (form.get("subject") or "").strip() or None
    given = (form.get("subject_hash") or "").strip() or None
    if (raw is not None and len(raw) > 200) or (given is not None and len(given) > 64):
        raise DomainError(
            INVALID_REQUEST, _("The id has at most 200 characters and the hash at most 64."), [{"field": "subject"}]
        )
    if (raw is None) == (given is None):
        raise DomainError(
            INVALID_REQUEST,
            _("Name the person by the id or by its hash, not both."),
            [{"field": "subject", "reason": "subject.once"}],
        )
    report: dict[str, Any] = await in_thread(
        service.subject_access, ctx_of(request), session.principal, raw, given, audit_event(request)
    )
    return render(request, "subject_access.html", session, report=report)
