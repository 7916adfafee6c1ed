"""The FastAPI application: routes under /v1, the error catalog, the audit middleware and body limits.

Fail closed, never 500 for a caller's input: bodies are size-limited (`BodyLimit`); bodies and integer parameters
are strict (`gateway.deps.strict_input`, the first dependency of every route); every error — a `DomainError`, a
validation failure, an exception raised in a dependency, in body parsing or in a handler — becomes the
documented error body through `gateway.errors` and is audited by the one middleware; anything unexpected is
``INTERNAL`` with a generic message (the cause goes to the server log only); a store that cannot commit (down,
locked, out of space) is ``UNAVAILABLE`` (503) with ``Retry-After``.

Audit: the middleware creates each request's `AuditEvent`. A request that changes state has its entry written by
a journal in the transaction of the change (`gateway.journal`: both or neither); the middleware appends the entry
of every other request when the answer leaves, and for a journaled one only an outcome the entry does not state;
reads of the audit log and job polls are entered once per principal, action and minute (`gateway.reads`).
If the entry cannot be written the answer is replaced by ``UNAVAILABLE``: an unaudited answer never leaves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.errors import INTERNAL, INVALID_REQUEST, UNAVAILABLE, DomainError
from gateway import console, deps, errors, health, journal, latency, reads
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.routes import agreements, audit, datasets, jobs, models, principals, secagg, system, verifications
from gateway.routes import alerts as alert_routes
from gateway.routes import complaints as complaint_routes
from gateway.routes import consents as consent_routes
from gateway.routes import docs as docs_routes
from gateway.routes import policy as policy_routes
from gateway.routes import psi as psi_routes
from gateway.routes import revenue as revenue_routes
from gateway.services import idempotency
from gateway.worker import JobWorker
from vocab.actions import AuditAction

log = logging.getLogger("veilbox.gateway")


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes, counted as they arrive (chunked bodies included)."""

    def __init__(self, app: ASGIApp, limit: int, audit: Any = None) -> None:
        self.app, self.limit, self.audit = app, limit, audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise DomainError(INVALID_REQUEST, f"request body larger than {self.limit} bytes")
            return msg

        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.limit:
            resp = errors.error_response(INVALID_REQUEST, f"request body larger than {self.limit} bytes")
            path = str(scope.get("path", ""))
            if self.audit is not None and path.startswith("/v1/"):  # refused before routing: audit it here
                ev = AuditEvent(action=AuditAction.REQUEST_TOO_LARGE, decision="deny", code=INVALID_REQUEST,
                                details={"method": scope.get("method"), "path": path[:200], "bytes": int(cl),
                                         "status": 422})
                await run_in_threadpool(self.audit.append, ev)
            await resp(scope, receive, send)
            return
        await self.app(scope, limited, send)


def _retry_hint(code: str) -> dict[str, str] | None:
    """``Retry-After`` for a store that could not commit (`gateway.errors.store_unavailable`)."""
    return {"Retry-After": str(errors.STORE_RETRY_AFTER_S)} if code == UNAVAILABLE else None


def create_app(ctx: AppContext) -> FastAPI:
    probes = health.Probes(ctx)  # GET /ready: its own executor, never the request threadpool

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = JobWorker(ctx) if ctx.settings.worker else None
        if worker is not None:
            await run_in_threadpool(worker.start)
            probes.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)
            probes.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Veilbox",
        version="1.0",
        summary="Usable but invisible (可用不可见): aggregates, models and verdicts leave; raw data never does.",
        description="HTTP contract v1. Every error body is `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        dependencies=[Depends(deps.strict_input)],  # before every route's own dependencies and validation
        docs_url=None,  # /docs and /redoc come from gateway.routes.docs, with bundled assets (no CDN)
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.probes = probes
    for exc_type in (DomainError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, errors.handle)
    app.add_exception_handler(idempotency.Replay, idempotency.replay_response)  # a retry's stored first answer

    @app.middleware("http")
    async def audit_every_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path.startswith("/console"):  # the console's pages: audited like the API, framed by no one
            response = await (call_next(request) if path.startswith("/console/static/") else
                              audited(request, call_next))
            response.headers.update(console.SECURITY_HEADERS)
            return response
        if not path.startswith("/v1/"):
            return await call_next(request)
        return await audited(request, call_next)

    async def audited(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        ev = AuditEvent(details={"method": request.method})
        request.state.audit = ev
        response: Response | None = None
        started = time.monotonic()

        def complete(e: AuditEvent, status: int | None = None) -> None:
            """Name the entry by its route and state its status (the final one, or for a journal writing it in
            the transaction of the change: the one the handler stated, else the route's success status) and its
            duration (for a journal on a padded route: until the answer's bucket boundary, as a padded answer's
            entry states — never the unpadded time of the work)."""
            journaled = status is None
            route: Any = request.scope.get("route")
            if e.action == AuditAction.REQUEST_UNKNOWN:  # a handler may name its action more precisely
                e.action = getattr(route, "name", None) or AuditAction.REQUEST_UNMATCHED
            e.details["path"] = getattr(route, "path", None) or "unmatched"
            if status is None:
                status = int(e.details.get("status") or getattr(route, "status_code", None) or 200)
            e.details["status"] = status
            now = time.monotonic()
            padded = getattr(request.state, "padded", None)
            if journaled and padded is not None:  # written before the padded answer leaves: the time it will leave
                now = latency.boundary(padded[0], padded[1], now)
            e.details["ms"] = round((now - started) * 1000, 1)
            if status >= 400 and e.decision == "allow":
                e.decision = "error" if status >= 500 else "deny"

        ev.complete = complete  # a journal writes the entry inside the transaction of the change (gateway.journal)
        try:
            response = await call_next(request)
        except Exception as exc:  # errors escaping the handlers: still answered, still audited
            code, message, details = errors.from_exception(exc)
            ev.decision, ev.code = ("error" if code == INTERNAL else "deny"), code
            response = errors.error_response(code, message, details, _retry_hint(code))
        finally:
            complete(ev, response.status_code if response is not None else 500)
            try:
                written = ev.written
                if written is not None and (getattr(written, "confirmed", False)  # known committed: no read
                                            or await run_in_threadpool(journal.committed, ctx.engine, written)):
                    if not written.states(ev):  # the answer changed after the change committed: say so too
                        ev.details["outcome_of"] = written.seq
                        await run_in_threadpool(ctx.audit.append, ev)
                else:  # nothing journaled, or rolled back with its transaction: the request's entry now (a
                    # repeated read of the audit log or a job poll in the same minute: none, `gateway.reads`)
                    await run_in_threadpool(reads.record, ctx.audit, ev)
            except Exception:  # an unaudited action must not be released
                log.exception("audit append failed")
                response = errors.error_response(UNAVAILABLE, headers=_retry_hint(UNAVAILABLE))
        return response

    app.include_router(system.router)
    docs_routes.mount(app)
    app.mount("/console/static", StaticFiles(directory=console.STATIC_DIR), name="console.static")
    app.include_router(console.router)
    for r in (principals.router, datasets.router, agreements.router, jobs.router, models.router, verifications.router,
              secagg.router, psi_routes.router, audit.router, complaint_routes.router, consent_routes.router):
        app.include_router(r, prefix="/v1")
    app.include_router(policy_routes.router, prefix="/v1")
    app.include_router(alert_routes.router, prefix="/v1")
    app.include_router(revenue_routes.router, prefix="/v1")
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes, audit=ctx.audit)
    app.add_middleware(idempotency.Recorder)  # outermost: stores exactly the answer that left
    return app
