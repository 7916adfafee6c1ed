"""The one error catalog: code → (HTTP status, public message), applied once at the boundary.

Routes raise `catalog.errors.DomainError` (or `mpc.errors.MpcError`); nothing builds an HTTPException by
hand. The translator logs the internal cause and returns only the documented body
``{"error": {"code", "message", "details"}}``. Unknown exceptions become ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog import errors as E
from catalog.errors import DomainError

log = logging.getLogger("veilbox.gateway")

# code -> (status, default public message). JOB_FAILED is not an error: a failed job is 200 with state failed.
CATALOG: dict[str, tuple[int, str]] = {
    E.UNAUTHENTICATED: (401, "missing, invalid or expired token"),
    E.NOT_FOUND_OR_FORBIDDEN: (404, "not found"),
    E.INVALID_REQUEST: (422, "the request is not valid"),
    E.ALREADY_EXISTS: (409, "already exists"),
    E.METHOD_NOT_ALLOWED: (405, "method not allowed on this path"),
    E.AGREEMENT_INACTIVE: (403, "the agreement is not active"),
    E.POLICY_DENIED: (403, "denied by policy"),
    E.QUERY_REJECTED: (422, "the query was rejected"),
    E.BUDGET_EXHAUSTED: (409, "the privacy budget is exhausted"),
    E.QUOTA_EXCEEDED: (429, "quota exceeded"),
    E.APPROVAL_REQUIRED: (409, "owner approval is required"),
    E.CIPHERTEXT_INVALID: (422, "the ciphertext or context is not valid"),
    E.INTERNAL: (500, "internal error"),
}


def error_body(code: str, message: str | None = None, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    _, default = CATALOG[code]
    if code == E.INTERNAL:  # never pass internal text through
        message, details = default, []
    return {"error": {"code": code, "message": message or default, "details": details or []}}


def error_response(code: str, message: str | None = None, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=CATALOG[code][0], headers=headers)


def from_exception(exc: BaseException) -> tuple[str, str | None, list[dict[str, Any]]]:
    """Map any exception to (code, public message, details)."""
    if isinstance(exc, DomainError):
        return exc.code, exc.message, exc.details
    code = getattr(exc, "code", None)
    if type(exc).__name__ == "MpcError" and code in CATALOG:
        return code, getattr(exc, "message", None), []
    if isinstance(exc, RequestValidationError):
        details = [{"loc": [str(p) for p in err.get("loc", ())], "problem": err.get("msg", "invalid")}
                   for err in exc.errors()]
        return E.INVALID_REQUEST, "the request body or parameters are not valid", details
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return E.NOT_FOUND_OR_FORBIDDEN, None, []
        if exc.status_code == 405:
            return E.METHOD_NOT_ALLOWED, None, []
        if exc.status_code == 401:
            return E.UNAUTHENTICATED, None, []
        if 400 <= exc.status_code < 500:
            return E.INVALID_REQUEST, None, []
    log.error("internal error", exc_info=exc)
    return E.INTERNAL, None, []


async def handle(request: Request, exc: Exception) -> JSONResponse:
    code, message, details = from_exception(exc)
    audit = getattr(request.state, "audit", None)
    if audit is not None:
        audit.decision = "error" if code == E.INTERNAL else "deny"
        audit.code = code
    headers = {"WWW-Authenticate": "Bearer"} if code == E.UNAUTHENTICATED else None
    return error_response(code, message, details, headers)
