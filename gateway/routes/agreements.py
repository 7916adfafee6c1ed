"""Agreements (授权运营协议), budgets, usage and the negative list (docs/api.md, "Agreements" and "Usage and budget").

Every route that names an agreement first records its expiry once (`note_expiry`) so the audit log shows when
an agreement lapsed even though no scheduler runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Body, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

import policies
from catalog.errors import INVALID_REQUEST, DomainError, invalid
from gateway import identities
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.deps import Admin, Audit, Ctx, CurrentPrincipal, Owner
from gateway.services.jobs import actor_of

router = APIRouter(tags=["agreements"])

GRANTEE_ROLES = ("operator", "bank")

AGREEMENT_EXAMPLE = {
    "title": "SME credit model", "grantee": "risk-lab", "datasets": ["tax_income"],
    "columns": {"tax_income": ["district", "age", "monthly_income"]},
    "purposes": ["credit_risk"], "job_kinds": ["query", "train"],
    "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
    "budget": {"epsilon": 5.0, "delta": 1e-6}, "min_group_units": 20,
    "quotas": {"calls_per_day": 10000, "verify_per_subject_per_day": 3},
    "approval": "owner_each_job", "exit": {"on_expiry": "seal_outputs"},
}


def note_expiry(ctx: AppContext, agreement_id: str) -> None:
    """Write the one ``agreement.expire`` audit entry the first time anyone touches an expired agreement."""
    if policies.record_expiry(ctx.engine, agreement_id):
        ctx.audit.append(AuditEvent(actor="system", role="system", action="agreement.expire",
                                    agreement_id=agreement_id, details={"exit": "seal_outputs"}))


def check_grantee(ctx: AppContext, doc: dict[str, Any]) -> None:
    """One answer for a grantee that does not exist, is disabled or expired, or has another role (no existence
    oracle). ``holders`` are not looked up at all (`policies.agreement`)."""
    name = doc.get("grantee")
    if not isinstance(name, str):
        return  # the document validator reports it
    p = identities.usable_by_name(ctx.engine, name)
    if p is None or p.role.value not in GRANTEE_ROLES:
        raise DomainError(INVALID_REQUEST, "the grantee must be an existing operator or bank",
                          [{"field": "grantee", "reason": "grantee.unknown_or_wrong_role"}])


@router.post("/agreements", name="agreement.create", status_code=status.HTTP_201_CREATED)
def create(owner: Owner, ctx: Ctx, ev: Audit,
           doc: dict[str, Any] = Body(..., examples=[AGREEMENT_EXAMPLE])) -> dict[str, Any]:
    """Propose an agreement over the owner's datasets (state ``proposed`` until the grantee accepts)."""
    check_grantee(ctx, doc)
    ag = policies.create_agreement(ctx.engine, actor_of(owner), doc)
    ev.agreement_id = ag.id
    ev.dataset = ",".join(ag.document.datasets)
    ev.details.update(grantee=ag.grantee, document_hash=ag.document_hash)
    return ag.public()


@router.get("/agreements", name="agreement.list")
def list_agreements(p: CurrentPrincipal, ctx: Ctx, state: str | None = Query(
        None, description="filter on the effective state")) -> list[dict[str, Any]]:
    """Agreements the caller owns or holds (regulators: all)."""
    return [ag.public() for ag in policies.list_agreements(ctx.engine, actor_of(p), state=state)]


@router.get("/agreements/{agreement_id}", name="agreement.show")
def show(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    return policies.get_agreement(ctx.engine, actor_of(p), agreement_id).public()


class AcceptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_hash: str | None = Field(None, description="bind the acceptance to the version you read")


@router.post("/agreements/{agreement_id}/accept", name="agreement.accept")
def accept(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
           body: AcceptBody | None = None) -> dict[str, Any]:
    """The grantee accepts: ``proposed`` → ``active`` (only inside the validity window)."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    ag = policies.accept(ctx.engine, actor_of(p), agreement_id, document_hash=body.document_hash if body else None)
    ev.details["document_hash"] = ag.document_hash
    return ag.public()


def _owner_transition(name: str, fn: Any, doc: str) -> None:
    def route(agreement_id: str, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
        ev.agreement_id = agreement_id
        note_expiry(ctx, agreement_id)
        result: dict[str, Any] = fn(ctx.engine, actor_of(owner), agreement_id).public()
        return result

    route.__doc__ = doc
    router.add_api_route(f"/agreements/{{agreement_id}}/{name}", route, methods=["POST"],
                         name=f"agreement.{name}")


_owner_transition("suspend", policies.suspend, "The owner pauses an active agreement (every call is refused).")
_owner_transition("resume", policies.resume, "The owner resumes a suspended agreement.")
_owner_transition("revoke", policies.revoke, "The owner ends the agreement for good; released outputs are sealed.")


@router.post("/agreements/{agreement_id}/amend", name="agreement.amend")
def amend(agreement_id: str, owner: Owner, ctx: Ctx, ev: Audit,
          doc: dict[str, Any] = Body(..., examples=[AGREEMENT_EXAMPLE])) -> dict[str, Any]:
    """A new version of the document; it goes back to ``proposed`` until the grantee accepts it again."""
    ev.agreement_id = agreement_id
    check_grantee(ctx, doc)
    ag = policies.amend_agreement(ctx.engine, actor_of(owner), agreement_id, doc)
    ev.details.update(version=ag.version, document_hash=ag.document_hash)
    return ag.public()


@router.get("/agreements/{agreement_id}/budget", name="agreement.budget")
def budget(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Total and spent (ε, δ); per dataset account in ``accounts``."""
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    status_: dict[str, Any] = policies.read_budget(ctx.engine, actor_of(p), agreement_id).as_json()
    return status_


def _day(value: str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise invalid("dates are ISO-8601 days (YYYY-MM-DD)") from None


@router.get("/usage", name="usage.read")
async def usage(p: CurrentPrincipal, ctx: Ctx, ev: Audit, agreement_id: str,
                since: str | None = Query(None, description="first day (default: 30 days ago)"),
                until: str | None = Query(None, description="last day, inclusive (default: today)")) -> dict[str, Any]:
    """Calls, jobs, verifications and ε per day for the parties and regulators, with the bill when the
    agreement carries a price schedule."""
    ev.agreement_id = agreement_id
    today = dt.datetime.now(dt.UTC).date()
    end = _day(until, today)
    start = _day(since, end - dt.timedelta(days=30))
    if start > end or (end - start).days > 366:
        raise invalid("the usage window is at most a year and must not end before it starts")
    u = await run_in_threadpool(policies.read_usage, ctx.engine, actor_of(p), agreement_id, start, end)
    out: dict[str, Any] = u.as_json()
    return out


# --- negative list (负面清单) ----------------------------------------------------------------------------------


class NegativeEntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="dataset | column | purpose", examples=["column"])
    value: str = Field(description="a dataset name, `dataset.column`, or a purpose", examples=["tax_income.id_number"])
    note: str = Field("", max_length=500)


@router.get("/negative-list", name="negative_list.list")
def negative_list(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, str]]:
    """What no agreement can grant (public to every principal)."""
    return [e.public() for e in policies.list_entries(ctx.engine)]


@router.post("/negative-list", name="negative_list.add", status_code=status.HTTP_201_CREATED)
def negative_add(body: NegativeEntryBody, admin: Admin, ctx: Ctx, ev: Audit) -> dict[str, str]:
    e = policies.add_entry(ctx.engine, actor_of(admin), body.kind, body.value, body.note)
    ev.details.update(kind=e.kind.value, value=e.value)
    return e.public()


@router.delete("/negative-list/{entry_id}", name="negative_list.remove", status_code=status.HTTP_204_NO_CONTENT)
def negative_remove(entry_id: str, admin: Admin, ctx: Ctx, ev: Audit) -> None:
    ev.details["entry_id"] = entry_id
    policies.remove_entry(ctx.engine, actor_of(admin), entry_id)
