"""Agreement helpers every path that names an agreement shares (routes, console, CLI endpoints).

`note_expiry`: the first time anyone touches an agreement that has expired, one ``agreement.expire`` audit entry
is written (no scheduler runs, so the audit log still shows when it lapsed). `check_grantee`: one answer for a
grantee that does not exist, is disabled or expired, or has another role (no existence oracle).
"""

from __future__ import annotations

from typing import Any

import policies
from catalog.errors import INVALID_REQUEST, DomainError
from gateway import identities
from gateway.audit import AuditEvent
from gateway.context import AppContext

__all__ = ["GRANTEE_ROLES", "check_grantee", "note_expiry"]

GRANTEE_ROLES = ("operator", "bank")


def note_expiry(ctx: AppContext, agreement_id: str) -> None:
    """Write the one ``agreement.expire`` audit entry the first time anyone touches an expired agreement."""
    if policies.record_expiry(ctx.engine, agreement_id):
        ctx.audit.append(AuditEvent(actor="system", role="system", action="agreement.expire",
                                    agreement_id=agreement_id, details={"exit": "seal_outputs"}))


def check_grantee(ctx: AppContext, doc: dict[str, Any]) -> None:
    """One answer for a grantee that does not exist, is disabled or expired, or has another role (no existence
    oracle). ``holders`` are not looked up at all (`policies.agreement`)."""
    name = doc.get("grantee")
    if not isinstance(name, str):
        return  # the document validator reports it
    p = identities.usable_by_name(ctx.engine, name)
    if p is None or p.role.value not in GRANTEE_ROLES:
        raise DomainError(INVALID_REQUEST, "the grantee must be an existing operator or bank",
                          [{"field": "grantee", "reason": "grantee.unknown_or_wrong_role"}])
