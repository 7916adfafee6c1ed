"""Mock data: rows generated from the *declaration only* (domains, bounds, kinds), never from raw rows.

`mock_table` takes no data argument: it cannot see the registered file. Identifiers are marked (`MOCK-…`
strings, negative integers) so a mock id can never equal a real one. Output is deterministic per
(dataset name, seed) so an owner and an analyst see the same mock, and dry runs are reproducible.

Seeded NumPy generators are used for *synthetic* values only, never for noise, masks or keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pyarrow as pa

from catalog.columns import ColumnInfo, Kind, Role

MAX_MOCK_ROWS = 10_000


def _seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}:{seed}".encode()).digest()[:8], "big")


def _marked(kind: Kind, prefix: str, idx: np.ndarray) -> pa.Array:
    if kind is Kind.INTEGER:
        return pa.array(-(idx + 1), type=pa.int64())
    if kind is Kind.FLOAT:
        return pa.array(-(idx + 1).astype(np.float64))
    return pa.array([f"MOCK-{prefix}{i:08d}" for i in idx])


def _column(info: ColumnInfo, n: int, rng: np.random.Generator) -> pa.Array:
    idx = np.arange(n, dtype=np.int64)
    if info.role is Role.ID:
        return _marked(info.kind, "U", idx)
    if info.role is Role.NEVER_OUTPUT:
        return _marked(info.kind, "X", idx)
    if info.role is Role.JOIN_KEY:
        return _marked(info.kind, "K", rng.integers(0, max(1, n // 5), size=n))
    if info.domain is not None:
        values = list(info.domain)
        picks = rng.integers(0, len(values), size=n)
        return pa.array([values[i] for i in picks])
    if info.bounds is not None:
        lo, hi = info.bounds
        if info.kind is Kind.INTEGER:
            return pa.array(rng.integers(int(lo), int(hi) + 1, size=n), type=pa.int64())
        return pa.array(np.round(rng.uniform(float(lo), float(hi), size=n), 3))
    # Undeclared value space (no domain, no bounds): neutral placeholders by kind.
    if info.kind is Kind.BOOLEAN:
        return pa.array(rng.integers(0, 2, size=n).astype(bool))
    if info.kind is Kind.DATE:
        base = dt.date(2020, 1, 1)
        return pa.array([base + dt.timedelta(days=int(d)) for d in rng.integers(0, 2000, size=n)])
    return _marked(info.kind, "V", idx)


def mock_table(name: str, columns: dict[str, ColumnInfo], rows: int = 100, seed: int = 0) -> pa.Table:
    """``rows`` synthetic rows that respect the declared roles, domains and bounds of ``columns``."""
    if not 0 < rows <= MAX_MOCK_ROWS:
        raise ValueError(f"rows must be within 1..{MAX_MOCK_ROWS}")
    rng = np.random.default_rng(_seed(name, seed))
    return pa.table({c: _column(info, rows, rng) for c, info in columns.items()})
