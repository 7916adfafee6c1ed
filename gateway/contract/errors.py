"""The error envelope as a model, and the ``responses=`` of an operation's possible errors.

Every error the gateway answers has one body, ``{"error": {"code", "message", "details"}}`` (`gateway.errors`
builds it at the boundary). `errors_for` documents, per operation, the statuses it can answer with the codes
behind each status (several codes share one status: 403, 409 and 422), so a client can switch on ``code``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vocab.errors import CATALOG, ErrorCode

__all__ = ["AUTHENTICATED", "PUBLIC", "ErrorBody", "ErrorEnvelope", "errors_for"]

#: What any authenticated operation can answer: no or a bad token, a body or parameter that is not valid (or a
#: body over the size limit, or not strict JSON), and the generic internal error.
AUTHENTICATED: tuple[ErrorCode, ...] = (ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_REQUEST, ErrorCode.INTERNAL)
#: What an operation without authentication can answer.
PUBLIC: tuple[ErrorCode, ...] = (ErrorCode.INVALID_REQUEST, ErrorCode.INTERNAL)


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: ErrorCode = Field(description="stable public code (docs/api.md, \"Errors\"): switch on this")
    message: str = Field(description="for people; never raw values or engine internals")
    details: list[dict[str, Any]] = Field(description="structured reasons, e.g. one entry per violation with "
                                                      "`field`, `problem` or `reason`; empty for INTERNAL")


class ErrorEnvelope(BaseModel):
    """The one error body of every operation."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"error": {
        "code": "POLICY_DENIED", "message": "denied by policy",
        "details": [{"reason": "purpose.not_allowed", "field": "purpose"}]}}]})
    error: ErrorBody


def errors_for(*codes: ErrorCode | str, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of an operation that can fail with ``codes`` (plus `AUTHENTICATED`, or
    `PUBLIC` with ``auth=False``): one entry per status, its description naming the codes behind it."""
    base: Iterable[ErrorCode] = AUTHENTICATED if auth else PUBLIC
    by_status: dict[int, list[ErrorCode]] = {}
    for code in dict.fromkeys([*base, *(ErrorCode(c) for c in codes)]):
        by_status.setdefault(CATALOG[code][0], []).append(code)
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        names = sorted(by_status[status])
        out[status] = {"model": ErrorEnvelope, "description": "Error codes: " + ", ".join(
            f"`{c.value}` ({CATALOG[c][1]})" for c in names) + "."}
    return out
