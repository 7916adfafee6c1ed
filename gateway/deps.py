"""Request dependencies: authorization lives in route signatures, so a route cannot forget a check; `strict_input`
runs first for every route (`gateway.app`)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import anyio
import anyio.to_thread
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
    p = identities.authenticate(ctx.engine, creds.credentials.strip(), pepper=ctx.keys.token_pepper)
    if p is None:
        reason = identities.refusal_reason(ctx.engine, creds.credentials.strip(), pepper=ctx.keys.token_pepper)
        raise DomainError(UNAUTHENTICATED, "missing, invalid or expired token",
                          [{"reason": reason}] if reason else None)
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
#: The stable reason of a heavy call refused because the service's heavy lane and its queue are full.
BUSY_REASON = "service.busy"
#: ``Retry-After`` (seconds) of a heavy call refused for either reason.
RETRY_AFTER_S = 1
#: Threads AnyIO's request threadpool has by default; the heavy lane's threads come on top of these.
SHORT_LANE_THREADS = 40


class Refused(DomainError):
    """A heavy call refused before its service runs; answered with ``Retry-After`` (`gateway.errors.handle`)."""

    retry_after = RETRY_AFTER_S


class HeavyLane:
    """The queries and jobs (`LANE_ROUTES`) of one app: at most ``size`` run at once, at most ``queue`` more wait
    (first come, first served, each at most ``wait_s``); anything beyond is refused. Lives on the event loop:
    entering never holds a thread, and a waiting call costs nothing but its connection.

    The lane's threads come on top of the request threadpool's: when the lane is created the loop's default
    thread limiter grows to ``SHORT_LANE_THREADS + size``, so the calls in the lane, which hold at most ``size``
    of its threads, always leave ``SHORT_LANE_THREADS`` to every other call (checks, scoring, reads, the audit
    middleware); the engines keep a worker per dataset for the checks (`sandbox.jobs.query.QueryEngines`).
    ``/health`` and ``/ready`` use no pool thread at all (`gateway.health`)."""

    def __init__(self, size: int, queue: int, wait_s: float) -> None:
        self.size, self.queue, self.wait_s = size, queue, wait_s
        self.running = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> bool:
        """Whether the call may run now (it then holds a place until `leave`), after waiting if it must."""
        if self.running < self.size and not self._waiters:
            self.running += 1
            return True
        if len(self._waiters) >= self.queue:
            return False
        ev = anyio.Event()
        self._waiters.append(ev)
        try:
            with anyio.move_on_after(self.wait_s):
                await ev.wait()
        except BaseException:  # the call was cancelled while waiting: pass on a place it was just given
            self._drop(ev)
            raise
        if ev.is_set():  # `leave` handed this call its place (``running`` unchanged)
            return True
        self._drop(ev)
        return False

    def _drop(self, ev: anyio.Event) -> None:
        if ev.is_set():
            self.leave()
        else:
            self._waiters.remove(ev)

    def leave(self) -> None:
        """Give the place to the first waiting call, else free it."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.running -= 1


def heavy_lane(app: Any) -> HeavyLane:
    """The app's heavy lane, created on first use (on the event loop, whose thread limiter it grows)."""
    lane: HeavyLane | None = getattr(app.state, "heavy_lane", None)
    if lane is None:
        s = app.state.ctx.settings
        lane = app.state.heavy_lane = HeavyLane(s.heavy_lane, s.heavy_queue, s.heavy_wait_s)
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, SHORT_LANE_THREADS + lane.size)
    return lane


#: The heavy calls that also take a place in the heavy lane: the queries and jobs, which wait for the engines.
#: Scoring and the encrypted, anonymous and PSI checks are bounded per principal only and never wait behind them.
LANE_ROUTES = frozenset({"job.submit", "query.preview", "query.run"})


async def heavy_call(request: Request, p: CurrentPrincipal, ev: Audit) -> AsyncIterator[Principal]:
    """The caller of a heavy call (a query, a preview, a job submission, scoring, an encrypted, anonymous or PSI
    check), holding one of its ``VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL`` slots until the call ends (the route's function
    returns: both places are given back before the answer is sent, so a caller holding its answer may call again
    at once, `Heavy`); a query, preview
    or job submission (`LANE_ROUTES`) then also holds a place in the service's heavy lane (`HeavyLane`:
    ``VEILBOX_HEAVY_LANE`` at once, ``VEILBOX_HEAVY_QUEUE`` more waiting at most ``VEILBOX_HEAVY_WAIT_S``).
    Refusals come before the route's service runs — nothing is charged, the refusal is audited under the route's
    name — as ``QUOTA_EXCEEDED`` with ``Retry-After``:

    - reason ``principal.in_flight`` (one call more than the caller's own limit): depends only on the caller's
      own calls in flight, never on data nor on other principals;
    - reason ``service.busy`` (the lane and its queue are full, or the wait ran out): depends on the service's
      load of queries and jobs, never on data.

    Runs on the event loop (``async``): taking a slot or waiting for the lane never holds a pool thread."""
    slots = get_ctx(request).caches.inflight
    if not slots.acquire(p.id):
        ev.details["reason"] = IN_FLIGHT_REASON
        raise Refused(QUOTA_EXCEEDED, "too many of your requests are in flight; retry when one has finished",
                      [{"reason": IN_FLIGHT_REASON, "limit": slots.limit}])
    try:
        if getattr(request.scope.get("route"), "name", None) not in LANE_ROUTES:
            yield p
            return
        lane = heavy_lane(request.app)
        if not await lane.enter():
            ev.details["reason"] = BUSY_REASON
            raise Refused(QUOTA_EXCEEDED, "the service is busy with queries and jobs; retry shortly",
                          [{"reason": BUSY_REASON}])
        try:
            yield p
        finally:
            lane.leave()
    finally:
        slots.release(p.id)


Heavy = Annotated[Principal, Depends(heavy_call, scope="function")]  # places given back before the answer leaves
