"""The public error codes and the one catalog code → (HTTP status, public message).

Every failure a caller can see carries one `ErrorCode` (docs/api.md, "Errors"): the domain packages raise
`catalog.errors.DomainError(code, ...)`, and the gateway (`gateway.errors`) answers with the status and, when
the raiser gave none, the default message of `CATALOG`. Codes are stable: extend, never rename.
``tests/unit/vocab/test_error_catalog.py`` checks that every code is in the catalog, documented and raised.

The crypto library (`mpc`) imports nothing of ours and keeps its own exception types; the gateway maps those
types to codes (`gateway.errors.MPC_ERRORS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = ["CATALOG", "ErrorCode"]


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_FOUND_OR_FORBIDDEN = "NOT_FOUND_OR_FORBIDDEN"
    INVALID_REQUEST = "INVALID_REQUEST"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    AGREEMENT_INACTIVE = "AGREEMENT_INACTIVE"
    POLICY_DENIED = "POLICY_DENIED"
    QUERY_REJECTED = "QUERY_REJECTED"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    CIPHERTEXT_INVALID = "CIPHERTEXT_INVALID"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    CONSENT_INVALID = "CONSENT_INVALID"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


_C = ErrorCode
#: code -> (HTTP status, default public message). A failed job is not an error: it is 200 with state failed.
CATALOG: Mapping[ErrorCode, tuple[int, str]] = MappingProxyType(
    {
        _C.UNAUTHENTICATED: (401, "missing, invalid or expired token"),
        _C.NOT_FOUND_OR_FORBIDDEN: (404, "not found"),
        _C.INVALID_REQUEST: (422, "the request is not valid"),
        _C.ALREADY_EXISTS: (409, "already exists"),
        _C.METHOD_NOT_ALLOWED: (405, "method not allowed on this path"),
        _C.AGREEMENT_INACTIVE: (403, "the agreement is not active"),
        _C.POLICY_DENIED: (403, "denied by policy"),
        _C.QUERY_REJECTED: (422, "the query was rejected"),
        _C.BUDGET_EXHAUSTED: (409, "the privacy budget is exhausted"),
        _C.QUOTA_EXCEEDED: (429, "quota exceeded"),
        _C.APPROVAL_REQUIRED: (409, "owner approval is required"),
        _C.CIPHERTEXT_INVALID: (422, "the ciphertext or context is not valid"),
        _C.CONSENT_REQUIRED: (403, "a registered consent (同意登记) is required for this use of personal data"),
        _C.CONSENT_INVALID: (403, "the consent does not cover this use (grantee, product, subject or time)"),
        _C.UNAVAILABLE: (503, "the service is not ready; retry later"),
        _C.INTERNAL: (500, "internal error"),
    }
)
