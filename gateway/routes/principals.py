"""Principals: `POST /v1/principals` (admin), `GET /v1/principals/me`, `GET /v1/principals` (admin)."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from gateway import identities
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract import principals as examples
from gateway.deps import Admin, Audit, Ctx, CurrentPrincipal

router = APIRouter(tags=["principals"])


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=63, examples=["icbc-wuxi"])
    role: identities.RoleName


class PrincipalPublic(BaseModel):
    id: str
    name: str
    role: identities.RoleName


class PrincipalCreated(PrincipalPublic):
    token: str = Field(description="shown once; only its hash is stored")


@router.post("/principals", name="principal.create", status_code=status.HTTP_201_CREATED,
             response_model=PrincipalCreated, **OUT,
             **doc("Create a principal and its token (admin)", ErrorCode.POLICY_DENIED, ErrorCode.ALREADY_EXISTS,
                   status=201, response_example=examples.CREATED, request_example=examples.CREATE_REQUEST))
def create_principal(body: PrincipalCreate, admin: Admin, ctx: Ctx, ev: Audit) -> PrincipalCreated:
    ev.details.update(name=body.name, new_role=body.role.value)
    p, token = identities.create_principal(ctx.engine, body.name, body.role.value, created_by=admin.name,
                                           ttl_days=ctx.settings.token_ttl_days)
    return PrincipalCreated(id=p.id, name=p.name, role=p.role, token=token)


@router.get("/principals/me", name="principal.me", response_model=PrincipalPublic, **OUT,
            **doc("Who the token belongs to", response_example=examples.PRINCIPAL))
def me(p: CurrentPrincipal) -> PrincipalPublic:
    return PrincipalPublic(id=p.id, name=p.name, role=p.role)


@router.get("/principals", name="principal.list", response_model=list[PrincipalPublic], **OUT,
            **doc("Every principal (admin)", ErrorCode.POLICY_DENIED, response_example=[examples.PRINCIPAL]))
def list_all(_: Admin, ctx: Ctx) -> list[PrincipalPublic]:
    return [PrincipalPublic(id=p.id, name=p.name, role=p.role) for p in identities.list_principals(ctx.engine)]
