"""Declared retention per record class (留存期限): how long the service keeps each kind of record.

One table, `RETENTION`, read by the settings (the access audit's configurable period and its floor), the archive
(`gateway.archive`, which writes the audit log's signed segments under ``VEILBOX_HOME/archive/audit/``) and
docs/deploy.md ("Retention and anchoring"). The service never deletes a record of these classes before its period
ends: the live audit table keeps every entry (its chain is verified from the first one), and archived segments are
copies for storage off the host, not a replacement for the live rows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCESS_AUDIT", "ACCESS_AUDIT_FLOOR_DAYS", "RETENTION", "RecordClass", "declared"]

#: The shortest retention the access audit may be configured to (six months); a shorter one is refused at start.
ACCESS_AUDIT_FLOOR_DAYS = 183
_TWENTY_YEARS_DAYS = 20 * 365 + 5  # leap days included

ACCESS_AUDIT = "access_audit"


@dataclass(frozen=True)
class RecordClass:
    name: str
    what: str
    min_days: int
    configurable: bool = False


#: Every record class with its declared minimum retention, in days.
RETENTION: tuple[RecordClass, ...] = (
    RecordClass("agreements", "data-use agreements (授权协议), every version and its signatures", _TWENTY_YEARS_DAYS),
    RecordClass("registrations", "dataset registrations (数据登记): declarations and fingerprints", _TWENTY_YEARS_DAYS),
    RecordClass("filings", "filings to the regulator (备案) and monthly reports", _TWENTY_YEARS_DAYS),
    RecordClass("statements", "statements and receipts issued to parties (对账单, 回执)", _TWENTY_YEARS_DAYS),
    RecordClass(ACCESS_AUDIT, "the access audit log (访问审计): every request's entry, anchors and archives",
                ACCESS_AUDIT_FLOOR_DAYS, configurable=True),
)


def declared(access_audit_days: int) -> dict[str, int]:
    """Each record class's retention in days, the access audit's as configured (never below its floor)."""
    if access_audit_days < ACCESS_AUDIT_FLOOR_DAYS:
        raise ValueError(f"access audit retention must be at least {ACCESS_AUDIT_FLOOR_DAYS} days (six months)")
    return {c.name: (access_audit_days if c.configurable else c.min_days) for c in RETENTION}
