"""The error boundary: code → (HTTP status, public message), applied once, from the one catalog in `vocab.errors`.

Routes raise `catalog.errors.DomainError` (or an `mpc.errors.MpcError`, mapped by its type: `MPC_ERRORS`);
nothing builds an HTTPException by hand. The translator logs the internal cause and returns only the documented body
``{"error": {"code", "message", "details"}}``. Unknown exceptions become ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog import errors as E
from catalog.errors import DomainError
from mpc.errors import InvalidCiphertext, InvalidInput, MpcError
from vocab.errors import CATALOG, ErrorCode

log = logging.getLogger("veilbox.gateway")

__all__ = ["CATALOG", "MPC_ERRORS", "STORE_RETRY_AFTER_S", "error_body", "error_response", "from_exception", "handle",
           "mpc_code", "mpc_refusal", "store_unavailable"]

# The crypto library's refusals, by type (it imports nothing of ours, so it cannot name our codes). The first
# matching row wins; an `MpcError` of no listed type fails closed as INTERNAL (a test pins that every type the
# library defines is listed).
MPC_ERRORS: tuple[tuple[type[MpcError], ErrorCode], ...] = (
    (InvalidCiphertext, ErrorCode.CIPHERTEXT_INVALID),
    (InvalidInput, ErrorCode.INVALID_REQUEST),
)


def mpc_code(exc: MpcError) -> ErrorCode:
    """The public code of a crypto-library refusal, from its type (`MPC_ERRORS`)."""
    for kind, code in MPC_ERRORS:
        if isinstance(exc, kind):
            return code
    return ErrorCode.INTERNAL


def mpc_refusal(exc: MpcError, details: list[dict[str, Any]] | None = None) -> DomainError:
    """A crypto-library refusal as the gateway's `DomainError` (its code by type, its caller-safe message)."""
    return DomainError(mpc_code(exc), exc.message, details)


def error_body(code: str, message: str | None = None, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    _, default = CATALOG[ErrorCode(code)]
    if code == E.INTERNAL:  # never pass internal text through
        message, details = default, []
    return {"error": {"code": code, "message": message or default, "details": details or []}}


def error_response(code: str, message: str | None = None, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=CATALOG[ErrorCode(code)][0], headers=headers)


def from_exception(exc: BaseException) -> tuple[str, str | None, list[dict[str, Any]]]:
    """Map any exception to (code, public message, details)."""
    if isinstance(exc, DomainError):
        return exc.code, exc.message, exc.details
    if isinstance(exc, MpcError) and mpc_code(exc) != ErrorCode.INTERNAL:
        return mpc_code(exc), exc.message, []
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
    if store_unavailable(exc):  # the store is down, locked or out of space: nothing committed, retry later
        log.error("store unavailable", exc_info=exc)
        return E.UNAVAILABLE, None, []
    log.error("internal error", exc_info=exc)
    return E.INTERNAL, None, []


#: Seconds a client should wait before retrying after the store was unavailable (``Retry-After``).
STORE_RETRY_AFTER_S = 1


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not commit or answer (an operational database error, a lost
    connection, a full disk or an I/O error): the request's transaction rolled back whole, its change and its
    audit entry with it (`gateway.journal`), so the answer is ``UNAVAILABLE`` (503) with ``Retry-After``."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS)


async def handle(request: Request, exc: Exception) -> JSONResponse:
    code, message, details = from_exception(exc)
    audit = getattr(request.state, "audit", None)
    if audit is not None:
        audit.decision = "error" if code == E.INTERNAL else "deny"
        audit.code = code
    headers = {"WWW-Authenticate": "Bearer"} if code == E.UNAUTHENTICATED else None
    retry_after = getattr(exc, "retry_after", None)  # a refusal to retry later (`gateway.deps.Refused`)
    if isinstance(retry_after, int):
        headers = {"Retry-After": str(retry_after)}
    elif code == E.UNAVAILABLE:
        headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return error_response(code, message, details, headers)
