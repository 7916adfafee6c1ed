"""The error tree of the domain packages.

Every failure a caller can see carries a stable ``code`` from the public catalog (docs/api.md, "Errors"); the
gateway maps code → HTTP status and public message once, at the boundary. ``message`` is written for the caller and must
never contain raw values or engine internals; ``details`` is a list of JSON-able dicts (for example every
violation of a rejected query).
"""

from __future__ import annotations

from typing import Any

# Stable public codes (extend, never rename). The gateway's catalog must cover every one of them.
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
INTERNAL = "INTERNAL"

ALL_CODES = (
    UNAUTHENTICATED,
    NOT_FOUND_OR_FORBIDDEN,
    INVALID_REQUEST,
    ALREADY_EXISTS,
    METHOD_NOT_ALLOWED,
    AGREEMENT_INACTIVE,
    POLICY_DENIED,
    QUERY_REJECTED,
    BUDGET_EXHAUSTED,
    QUOTA_EXCEEDED,
    APPROVAL_REQUIRED,
    CIPHERTEXT_INVALID,
    INTERNAL,
)


class DomainError(Exception):
    """A refusal or failure with a stable public code."""

    def __init__(self, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        if code not in ALL_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


def invalid(message: str, details: list[dict[str, Any]] | None = None) -> DomainError:
    return DomainError(INVALID_REQUEST, message, details)


def not_found(what: str = "resource") -> DomainError:
    """One answer for "missing" and "not yours": callers cannot probe existence."""
    return DomainError(NOT_FOUND_OR_FORBIDDEN, f"{what} not found")
