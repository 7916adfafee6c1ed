"""Request dependencies: authorization lives in route signatures, so a route cannot forget a check; `strict_input`
runs first for every route (`gateway.app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request, Security, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError

from catalog.errors import INVALID_REQUEST, POLICY_DENIED, QUOTA_EXCEEDED, UNAUTHENTICATED, DomainError
from gateway import identities, strict_json
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal, RoleName

_bearer = HTTPBearer(auto_error=False, description="Bearer token from `veilbox init` or POST /v1/principals")


async def strict_input(request: Request) -> None:
    """The first dependency of every route (`gateway.app`), before its authentication and validation: a JSON body
    must be strict JSON (`gateway.strict_json`), and an integer query or path parameter must fit in a signed
    64-bit integer (the store's and every counter's range: pydantic alone would pass ``since=10**30`` on to
    SQLite). Both refusals are ``INVALID_REQUEST`` naming the rule, never the value."""
    if strict_json.is_json_body(request.headers.get("content-type")):
        body = await request.body()  # cached: the route reads the same bytes
        if body:
            try:
                strict_json.loads(body)
            except strict_json.NotStrictJSON as exc:
                raise DomainError(INVALID_REQUEST, "the request body is not strict JSON",
                                  [{"loc": ["body"], "problem": str(exc)}]) from None
    route = request.scope.get("route")
    for where, name in _integer_params(route):
        values = request.query_params.getlist(name) if where == "query" else [request.path_params.get(name, "")]
        if not all(_fits_int64(v) for v in values):
            raise DomainError(INVALID_REQUEST, "the request body or parameters are not valid",
                              [{"loc": [where, name], "problem": "outside the signed 64-bit integer range"}])


_INT = TypeAdapter(int)


def _fits_int64(text: str) -> bool:
    """Whether ``text``, read as the route reads it (pydantic's lax int: ``1_000``, ``5.0``), fits."""
    try:
        value = _INT.validate_python(text)
    except ValidationError:
        return True  # not an integer at all: the route's own validation refuses it
    return strict_json.INT64_MIN <= value <= strict_json.INT64_MAX


def _integer_params(route: Any) -> list[tuple[str, str]]:
    """The (in, name) of the route's integer query and path parameters, its dependencies' included."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return []
    return [(p.field_info.in_.value, p.alias) for p in get_flat_params(dependant)
            if isinstance(p.field_info, params.Query | params.Path) and _is_integer(p.field_info.annotation)]


def _is_integer(annotation: Any) -> bool:
    if annotation is int:
        return True
    return get_origin(annotation) in (Union, UnionType) and any(_is_integer(a) for a in get_args(annotation))


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


#: The stable reason of a heavy call refused because too many of the caller's own are in flight.
IN_FLIGHT_REASON = "principal.in_flight"


async def heavy_call(request: Request, p: CurrentPrincipal, ev: Audit) -> AsyncIterator[Principal]:
    """The caller of a heavy call (a query, a preview, a job submission, scoring, an encrypted, anonymous or PSI
    check), holding one of its ``VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL`` slots until the call ends. One call more is
    ``QUOTA_EXCEEDED`` (reason ``principal.in_flight``) before the route's service runs: nothing is charged, the
    refusal is audited under the route's name, and it depends only on the caller's own calls in flight, never on
    data nor on other principals. Runs on the event loop (``async``): taking a slot never waits for the pool."""
    slots = get_ctx(request).caches.inflight
    if not slots.acquire(p.id):
        ev.details["reason"] = IN_FLIGHT_REASON
        raise DomainError(QUOTA_EXCEEDED, "too many of your requests are in flight; retry when one has finished",
                          [{"reason": IN_FLIGHT_REASON, "limit": slots.limit}])
    try:
        yield p
    finally:
        slots.release(p.id)


Heavy = Annotated[Principal, Depends(heavy_call)]
