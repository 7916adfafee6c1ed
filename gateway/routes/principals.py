"""Principals: `POST /v1/principals` (admin), `GET /v1/principals/me`, `GET /v1/principals` (admin), and the
admin's changes to one principal — `POST /v1/principals/{name}/disable`, `/enable`, `/rotate` (a new token, shown
once; the old one dead at once) and `/expiry` (when its token stops working). Each change commits with its audit
entry and ends the principal's console sessions where it withdraws access (`gateway.identities`)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from gateway import identities
from gateway.audit import AuditEvent
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract import principals as examples
from gateway.deps import Admin, Audit, Ctx, CurrentPrincipal
from gateway.journal import Journal, request_entry
from vocab.roles import ReviewerKind

router = APIRouter(tags=["principals"])


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=63, examples=["icbc-wuxi"])
    role: identities.RoleName
    reviewer_kind: ReviewerKind | None = Field(None, description="role reviewer only (required then): "
                                                                 "expert_committee (专家委员会) | cyberspace (网信)")


class PrincipalPublic(BaseModel):
    id: str
    name: str
    role: identities.RoleName


class PrincipalCreated(PrincipalPublic):
    token: str = Field(description="shown once; only its hash is stored")
    reviewer_kind: str | None = Field(None, description="a named reviewer's kind (role reviewer)")


class PrincipalState(PrincipalPublic):
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime = Field(description="calls after this time are refused (UNAUTHENTICATED)")
    disabled: bool = Field(description="a disabled principal's calls are refused (UNAUTHENTICATED)")
    reviewer_kind: str | None = Field(None, description="a named reviewer's kind (role reviewer)")


class PrincipalRotated(PrincipalState):
    token: str = Field(description="the new token, shown once; the previous token no longer works")


class ExpirySet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: dt.datetime = Field(description="ISO-8601; UTC when no offset is given; a past time ends access now")


def _state(r: identities.PrincipalRecord) -> PrincipalState:
    return PrincipalState(id=r.id, name=r.name, role=r.role, created_at=r.created_at, created_by=r.created_by,
                          expires_at=r.expires_at, disabled=r.disabled, reviewer_kind=r.reviewer_kind)


def _noted(ctx: Ctx, ev: AuditEvent, name: str) -> Journal:
    ev.details["name"] = name
    return request_entry(ctx.audit, ev)


_CHANGE_ERRORS = (ErrorCode.POLICY_DENIED, ErrorCode.NOT_FOUND_OR_FORBIDDEN)


@router.post("/principals", name="principal.create", status_code=status.HTTP_201_CREATED,
             response_model=PrincipalCreated, **OUT,
             **doc("Create a principal and its token (admin)", ErrorCode.POLICY_DENIED, ErrorCode.ALREADY_EXISTS,
                   status=201, response_example=examples.CREATED, request_example=examples.CREATE_REQUEST))
def create_principal(body: PrincipalCreate, admin: Admin, ctx: Ctx, ev: Audit) -> PrincipalCreated:
    ev.details.update(name=body.name, new_role=body.role.value)
    kind = body.reviewer_kind.value if body.reviewer_kind else None
    if kind:
        ev.details["reviewer_kind"] = kind
    p, token = identities.create_principal(ctx.engine, body.name, body.role.value, created_by=admin.name,
                                           ttl_days=ctx.settings.token_ttl_days, pepper=ctx.keys.token_pepper,
                                           reviewer_kind=kind)
    return PrincipalCreated(id=p.id, name=p.name, role=p.role, token=token, reviewer_kind=kind)


@router.get("/principals/me", name="principal.me", response_model=PrincipalPublic, **OUT,
            **doc("Who the token belongs to", response_example=examples.PRINCIPAL))
def me(p: CurrentPrincipal) -> PrincipalPublic:
    return PrincipalPublic(id=p.id, name=p.name, role=p.role)


@router.get("/principals", name="principal.list", response_model=list[PrincipalState], **OUT,
            **doc("Every principal with its state (admin)", ErrorCode.POLICY_DENIED,
                  response_example=[examples.STATE]))
def list_all(_: Admin, ctx: Ctx) -> list[PrincipalState]:
    return [_state(r) for r in identities.records(ctx.engine)]


@router.post("/principals/{name}/disable", name="principal.disable", response_model=PrincipalState, **OUT,
             **doc("Disable a principal: its next call is refused and its console sessions end (admin)",
                   *_CHANGE_ERRORS, ErrorCode.INVALID_REQUEST, response_example={**examples.STATE, "disabled": True}))
def disable(name: str, admin: Admin, ctx: Ctx, ev: Audit) -> PrincipalState:
    return _state(identities.disable(ctx.engine, name, _noted(ctx, ev, name), admin=admin.name))


@router.post("/principals/{name}/enable", name="principal.enable", response_model=PrincipalState, **OUT,
             **doc("Enable a disabled principal again (admin)", *_CHANGE_ERRORS, response_example=examples.STATE))
def enable(name: str, _: Admin, ctx: Ctx, ev: Audit) -> PrincipalState:
    return _state(identities.enable(ctx.engine, name, _noted(ctx, ev, name)))


@router.post("/principals/{name}/rotate", name="principal.rotate", response_model=PrincipalRotated, **OUT,
             **doc("Give a principal a new token, shown once; the old token stops working at once and its "
                   "console sessions end (admin)", *_CHANGE_ERRORS, response_example=examples.ROTATED))
def rotate(name: str, _: Admin, ctx: Ctx, ev: Audit) -> PrincipalRotated:
    rec, token = identities.rotate(ctx.engine, name, _noted(ctx, ev, name), pepper=ctx.keys.token_pepper)
    return PrincipalRotated(**_state(rec).model_dump(), token=token)


@router.post("/principals/{name}/expiry", name="principal.expiry", response_model=PrincipalState, **OUT,
             **doc("Set when a principal's token stops working; a past time ends its access now (admin)",
                   *_CHANGE_ERRORS, ErrorCode.INVALID_REQUEST, response_example=examples.STATE,
                   request_example=examples.EXPIRY_REQUEST))
def set_expiry(name: str, body: ExpirySet, admin: Admin, ctx: Ctx, ev: Audit) -> PrincipalState:
    ev.details["expires_at"] = body.expires_at.isoformat()
    return _state(identities.set_expiry(ctx.engine, name, body.expires_at, _noted(ctx, ev, name), admin=admin.name))
