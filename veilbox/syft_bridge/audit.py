"""The bridge's refusals in the gateway's hash-chained audit log, when the bridge runs in the gateway's process.

:func:`gateway_audit` returns the ``audit`` hook of :class:`veilbox.syft_bridge.datasite.VeilboxDatasite`: each
refusal becomes an entry with action ``syft.refuse``, decision ``deny``, the Veilbox error code, the owner the
datasite speaks for as the actor, and the refused email only as a SHA-256 hash (``subject_hash``), like every
other subject in the log. A bridge running in another process keeps its own ``refusals.jsonl`` only: two
processes must not append to one chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from gateway.audit import AuditEvent
from gateway.context import AppContext


def email_hash(email: str) -> str:
    return "sha256:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def gateway_audit(ctx: AppContext, owner: str) -> Callable[[dict[str, Any]], None]:
    def record(entry: dict[str, Any]) -> None:
        details = {k: v for k, v in entry.items() if k in ("kind", "reason", "job") and v is not None}
        ctx.audit.append(
            AuditEvent(
                actor=owner,
                role="owner",
                action="syft.refuse",
                decision="deny",
                code=entry.get("code"),
                subject_hash=email_hash(str(entry.get("email", ""))),
                details=details,
            )
        )

    return record
