"""Request dependencies: authorization lives in route signatures, so a route cannot forget a check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from catalog.errors import POLICY_DENIED, UNAUTHENTICATED, DomainError
from gateway import identities
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal, RoleName

_bearer = HTTPBearer(auto_error=False, description="Bearer token from `veilbox init` or POST /v1/principals")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def audit_event(request: Request) -> AuditEvent:
    ev = getattr(request.state, "audit", None)
    if ev is None:  # requests outside /v1 are not audited; give handlers a scratch event
        ev = AuditEvent()
        request.state.audit = ev
    return ev


Audit = Annotated[AuditEvent, Depends(audit_event)]


def current_principal(
    request: Request,
    ctx: Ctx,
    ev: Audit,
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise DomainError(UNAUTHENTICATED, "a bearer token is required")
    p = identities.authenticate(ctx.engine, creds.credentials.strip())
    if p is None:
        raise DomainError(UNAUTHENTICATED, "missing, invalid or expired token")
    ev.actor, ev.role = p.name, p.role.value
    request.state.principal = p
    return p


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: RoleName) -> Any:
    allowed = {r.value for r in roles}

    def dep(p: CurrentPrincipal) -> Principal:
        if p.role.value not in allowed:
            raise DomainError(POLICY_DENIED, f"role {p.role.value!r} may not do this",
                              [{"reason": "role.not_allowed", "allowed_roles": sorted(allowed)}])
        return p

    return Depends(dep)


Admin = Annotated[Principal, require_role(RoleName.ADMIN)]
Owner = Annotated[Principal, require_role(RoleName.OWNER)]
Regulator = Annotated[Principal, require_role(RoleName.REGULATOR)]
