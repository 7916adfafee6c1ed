"""The journal hook: how a caller records a state change in the transaction that makes it.

Every function of this package that changes state a party can be charged, refunded, metered or bound by (jobs,
the ledger, quotas, agreements' lifecycle) takes an optional ``journal``: a callable given the open transaction's
connection and called as that transaction's last write, just before it commits. The gateway passes one that
appends the audit entry recording the change (`gateway.audit.AuditLog.append_in`), so the change and its entry
commit together or not at all. This package never imports the gateway: the callback keeps the layering.

A journal that raises rolls the whole transaction back: nothing changed, nothing recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

__all__ = ["Journal", "write"]

Journal = Callable[[Connection], None]


def write(conn: Connection, journal: Journal | None) -> None:
    """Call ``journal`` (if any) in ``conn``'s transaction: the last write before the commit."""
    if journal is not None:
        journal(conn)
