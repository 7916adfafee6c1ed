"""Time handling: every instant is timezone-aware UTC; days are UTC calendar days."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(now: dt.datetime | None) -> dt.datetime:
    """``now`` as aware UTC (the current time when ``None``); naive datetimes are a programming error."""
    if now is None:
        return utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return now.astimezone(dt.UTC)


def day_of(now: dt.datetime) -> dt.date:
    return aware(now).date()
