"""The FastAPI application: routes under /v1, the error catalog, the audit middleware and body limits.

Fail closed, never 500 for a caller's input: bodies are size-limited (`BodyLimit`); bodies and integer parameters
are strict (`gateway.deps.strict_input`, the first dependency of every route); every error — a `DomainError`, a
validation failure, an exception raised in a dependency, in body parsing or in a handler — becomes the
documented error body through `gateway.errors` and is audited by the one middleware; anything unexpected is
``INTERNAL`` with a generic message (the cause goes to the server log only).
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

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from gateway import console, deps, errors, health
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.routes import agreements, audit, datasets, jobs, models, principals, secagg, system, verifications
from gateway.routes import psi as psi_routes
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
        try:
            response = await call_next(request)
        except Exception as exc:  # errors escaping the handlers: still answered, still audited
            code, message, details = errors.from_exception(exc)
            ev.decision, ev.code = ("error" if code == INTERNAL else "deny"), code
            response = errors.error_response(code, message, details)
        finally:
            route: Any = request.scope.get("route")
            if ev.action == AuditAction.REQUEST_UNKNOWN:  # a handler may name its action more precisely
                ev.action = getattr(route, "name", None) or AuditAction.REQUEST_UNMATCHED
            ev.details["path"] = getattr(route, "path", None) or "unmatched"
            ev.details["status"] = response.status_code if response is not None else 500
            ev.details["ms"] = round((time.monotonic() - started) * 1000, 1)
            if response is not None and response.status_code >= 400 and ev.decision == "allow":
                ev.decision = "error" if response.status_code >= 500 else "deny"
            try:
                await run_in_threadpool(ctx.audit.append, ev)
            except Exception:  # an unaudited action must not be released
                log.exception("audit append failed")
                response = errors.error_response(INTERNAL)
        return response

    app.include_router(system.router)
    app.mount("/console/static", StaticFiles(directory=console.STATIC_DIR), name="console.static")
    app.include_router(console.router)
    for r in (principals.router, datasets.router, agreements.router, jobs.router, models.router, verifications.router,
              secagg.router, psi_routes.router, audit.router):
        app.include_router(r, prefix="/v1")
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes, audit=ctx.audit)
    app.add_middleware(idempotency.Recorder)  # outermost: stores exactly the answer that left
    return app
