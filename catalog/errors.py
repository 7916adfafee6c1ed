"""The error tree of the domain packages.

Every failure a caller can see carries a stable ``code``, a `vocab.errors.ErrorCode` (docs/api.md, "Errors"); the
gateway maps code → HTTP status and public message once, at the boundary. ``message`` is written for the caller and must
never contain raw values or engine internals; ``details`` is a list of JSON-able dicts (for example every
violation of a rejected query).
"""

from __future__ import annotations

from typing import Any

from vocab.errors import ErrorCode

# Stable public codes (extend, never rename): defined once in `vocab.errors.ErrorCode`; the module-level names
# stay as aliases (``E.INVALID_REQUEST``).
UNAUTHENTICATED = ErrorCode.UNAUTHENTICATED
NOT_FOUND_OR_FORBIDDEN = ErrorCode.NOT_FOUND_OR_FORBIDDEN
INVALID_REQUEST = ErrorCode.INVALID_REQUEST
ALREADY_EXISTS = ErrorCode.ALREADY_EXISTS
METHOD_NOT_ALLOWED = ErrorCode.METHOD_NOT_ALLOWED
AGREEMENT_INACTIVE = ErrorCode.AGREEMENT_INACTIVE
POLICY_DENIED = ErrorCode.POLICY_DENIED
QUERY_REJECTED = ErrorCode.QUERY_REJECTED
BUDGET_EXHAUSTED = ErrorCode.BUDGET_EXHAUSTED
QUOTA_EXCEEDED = ErrorCode.QUOTA_EXCEEDED
APPROVAL_REQUIRED = ErrorCode.APPROVAL_REQUIRED
CIPHERTEXT_INVALID = ErrorCode.CIPHERTEXT_INVALID
CONSENT_REQUIRED = ErrorCode.CONSENT_REQUIRED
CONSENT_INVALID = ErrorCode.CONSENT_INVALID
UNAVAILABLE = ErrorCode.UNAVAILABLE
INTERNAL = ErrorCode.INTERNAL

ALL_CODES: tuple[ErrorCode, ...] = tuple(ErrorCode)


class DomainError(Exception):
    """A refusal or failure with a stable public code."""

    def __init__(self, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        if code not in ALL_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details or []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


def invalid(message: str, details: list[dict[str, Any]] | None = None) -> DomainError:
    return DomainError(INVALID_REQUEST, message, details)


def not_found(what: str = "resource") -> DomainError:
    """One answer for "missing" and "not yours": callers cannot probe existence."""
    return DomainError(NOT_FOUND_OR_FORBIDDEN, f"{what} not found")
