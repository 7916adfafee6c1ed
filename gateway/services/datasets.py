"""Datasets as a given principal may see them (the API's dataset routes and the console's catalog pages)."""

from __future__ import annotations

from typing import Any

from catalog import registry
from gateway.identities import Principal

__all__ = ["public_view"]


def public_view(ds: registry.Dataset, viewer: Principal) -> dict[str, Any]:
    """The dataset as `viewer` may see it: exact row counts and ingest reports only for the owner."""
    mine = viewer.name == ds.owner
    out: dict[str, Any] = {
        "name": ds.name,
        "owner": ds.owner,
        "description": ds.description,
        "grade": ds.grade.value,
        "personal": ds.personal,
        "sensitive": ds.sensitive,
        "fingerprint": ds.fingerprint,
        "max_rows_per_unit": ds.max_rows_per_unit,
        "columns": {c: i.public() for c, i in ds.columns.items()},
        "rows": ds.rows if mine else None,
        "created_at": ds.created_at.isoformat(),
    }
    if mine:
        out["ingest"] = ds.ingest_report
    return out
