"""Catalog: what data the domain holds, declared by its owners.

- `columns`: the declaration vocabulary (`Role`, `Grade`, `Kind`, `ColumnSpec`, `DatasetSpec`, `ColumnInfo`).
- `ingest`: validation of a declaration against a file, clamping, copy into sandbox storage.
- `registry`: atomic registration and lookup of `Dataset` records.
- `mock`: synthetic rows from the declaration only.
- `fingerprint`: SHA-256 / SM3 content fingerprints.
- `datagen`: the synthetic city data family used by the demo, tests and benchmarks.
- `errors`: `DomainError` and the stable public codes.

The catalog imports nothing of ours; it never runs queries and knows nothing of agreements.
"""

from catalog.columns import ColumnInfo, ColumnSpec, DatasetSpec, Grade, Kind, Role
from catalog.errors import DomainError
from catalog.registry import Dataset, Registration

__all__ = [
    "ColumnInfo",
    "ColumnSpec",
    "Dataset",
    "DatasetSpec",
    "DomainError",
    "Grade",
    "Kind",
    "Registration",
    "Role",
]
