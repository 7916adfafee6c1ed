"""Audit entries that commit with the change they record (全程留痕: both or neither).

The rule. Every state change a party can be charged, refunded, metered or bound by — a debit, a refund, a job's
move, a quota bump, an agreement's transition, a dataset's registration, a lease takeover — writes its audit entry
*in the transaction that makes the change*, as that transaction's last write (`gateway.audit.AuditLog.append_in`).
A crash, a full disk or a lost database between the change and its entry cannot happen: the two commit together
or roll back together. The policies and catalog layers take the entry as a ``journal`` callback
(`policies.journal`), so they never import the gateway.

Requests. The middleware (`gateway.app`) creates the request's `AuditEvent` and, on it, a completion hook
(`AuditEvent.complete`: the route's name and path, the status the route answers on success, the duration so
far). A service passes `request_entry` to the policies call that changes state; inside that call's transaction
the request's entry is appended and `AuditEvent.written` set (`Written`). When the response leaves, the middleware
checks the entry really committed (its ``seq`` holds its hash): then it appends nothing — or, when the answer
turned out differently (another status, decision or code than the entry says: something failed after the
commit), one more entry of the same action naming the first (``details.outcome_of``). An entry that rolled back
with its transaction is appended afresh with the final outcome, as for any request that changed nothing.

Intent, then outcome. Where one transaction cannot hold both ends (an inline ``POST /queries`` runs the DP engine
between its debit and its release), each transaction carries its own entry: the debit ``job.charge`` (the
grantee's, `charge_entry`), the release or failure the request's own entry together with the worker's
``job.release``/``job.fail``; a process killed in between leaves the debit logged and the lease sweep's
``job.recover`` (refund) logged with its own transaction. Background changes (the worker's claim, failure,
success and release, the lease sweep, an agreement's expiry) write their ``system`` entries the same way
(`system_entry`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, select

from gateway import _tables as t
from gateway.audit import AuditEvent, AuditLog
from vocab.errors import CATALOG, ErrorCode

__all__ = ["Written", "both", "committed", "completed", "confirm", "refusal", "request_entry", "system_entry"]

Journal = Callable[[Connection], None]
Prepare = Callable[[Connection, AuditEvent], bool]  # notes the transaction's rows on the entry


@dataclass(frozen=True)
class Written:
    """The request's entry a journal appended: where, and the outcome it states."""

    seq: int
    hash: str
    decision: str
    code: str | None
    status: int | None
    confirmed: bool = False  # the service saw its transaction commit (`confirm`): no store read to know it

    def states(self, ev: AuditEvent) -> bool:
        """Whether the entry states the request's final outcome (status, decision and code)."""
        return (self.decision, self.code, self.status) == (ev.decision, ev.code, ev.details.get("status"))


def completed(ev: AuditEvent, prepare: Prepare | None = None, conn: Connection | None = None) -> AuditEvent | None:
    """The request's entry as it would be written now: a copy of ``ev``, noted by ``prepare`` (``None`` when it
    declines) and completed by the middleware's hook. ``ev`` itself is left as it is: if the transaction rolls back,
    the request's entry states only what the handler notes afterwards."""
    out = copy.copy(ev)
    out.details = copy.deepcopy(ev.details)
    out.written = out.complete = None
    if prepare is not None:
        assert conn is not None, "a prepared entry reads its transaction"
        if not prepare(conn, out):
            return None
    hook = ev.complete
    if callable(hook):
        hook(out)
    return out


def refusal(ev: AuditEvent, code: str) -> None:
    """State on ``ev`` the refusal the request will answer (``code`` and its status), for an entry a journal writes
    in the transaction of the change the refusal comes with (a job rejected or failed on the way)."""
    ev.decision, ev.code = "deny", code
    ev.details["status"] = CATALOG[ErrorCode(code)][0]


def request_entry(audit: AuditLog, ev: AuditEvent, prepare: Prepare | None = None) -> Journal:
    """A journal appending the request's own entry (``ev`` as it stands, completed) in the caller's transaction.
    ``prepare`` (given the connection and the entry) notes on the entry what the transaction wrote — the handler
    notes the same on ``ev`` once the call returns; returning False skips the entry (this transaction is not the
    one that records the request)."""

    def write(conn: Connection) -> None:
        entry_ev = completed(ev, prepare, conn)
        if entry_ev is None:
            return
        entry = audit.append_in(conn, entry_ev)
        ev.written = Written(entry["seq"], entry["hash"], entry_ev.decision, entry_ev.code,
                             entry_ev.details.get("status"))

    return write


def system_entry(audit: AuditLog, make: Callable[[Connection], AuditEvent | None]) -> Journal:
    """A journal appending the entry ``make`` builds from the transaction's rows (``None``: no entry)."""

    def write(conn: Connection) -> None:
        ev = make(conn)
        if ev is not None:
            audit.append_in(conn, ev)

    return write


def both(*journals: Journal | None) -> Journal:
    """One journal writing each of ``journals`` (``None`` skipped) in order, in the same transaction."""

    def write(conn: Connection) -> None:
        for j in journals:
            if j is not None:
                j(conn)

    return write


def confirm(ev: AuditEvent) -> None:
    """Note that the transaction which wrote the request's entry committed: call it right after the call that took
    the `request_entry` journal returned (it returns only once its transaction committed), so `committed` need not
    read the log. An entry of a transaction that failed is never confirmed, and is read as before."""
    if isinstance(ev.written, Written):
        ev.written = replace(ev.written, confirmed=True)


def committed(engine: Engine, written: Any) -> bool:
    """Whether the entry a journal wrote is in the log (its transaction committed): known without a read when the
    service confirmed it (`confirm`), else read from the log."""
    if not isinstance(written, Written):
        return False
    if written.confirmed:
        return True
    e = t.audit_entries.c
    with engine.connect() as conn:
        h = conn.execute(select(e.hash).where(e.seq == written.seq)).scalar_one_or_none()
    return bool(h == written.hash)
