"""Sandbox: where raw data is touched and only noisy aggregates, models and verdicts come out.

Public surface of the private SQL engine (the gateway imports only these):

- `TableView`: a catalog `Dataset` narrowed to the columns an agreement grants.
- `prepare(sql, tables, epsilon, delta, min_group_units) -> QueryPlan`: vetting (sqlglot allow-list, every
  violation as ``{"rule", "at", "hint"}`` in a ``QUERY_REJECTED``), rewriting to canonical SQL, public group
  keys, noise calibration; ``plan.cost`` is the exact ``(ε, δ)`` to charge before running.
- `preview(plan, mock_tables) -> dict`: canonical SQL, cost, expected error and an exact result on mock data.
- `run(plan, worker, latency_bucket_ms=0) -> QueryResult`: execution in the `QueryWorker` process, discrete
  Laplace noise (OpenDP), suppression, HAVING/ORDER BY/LIMIT on released values, error bars, output digest.
- `QueryWorker(data_paths, threads, memory_limit, timeout_s)`: the locked DuckDB worker process.

Subpackages: `sandbox.sql` (vetting, keys, rewriting, facade), `sandbox.dp` (noise and budget arithmetic),
`sandbox.engine` (DuckDB lockdown and the worker), `sandbox.train`, `sandbox.coderun`. Names are resolved
lazily so importing one subpackage does not load the others' heavy dependencies. The sandbox imports
`catalog` and `policies` only; it never speaks HTTP, knows tokens or touches the budget ledger.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.engine.worker import QueryWorker
    from sandbox.sql.service import QueryPlan, QueryResult, prepare, preview, run
    from sandbox.sql.tables import TableView

__all__ = ["QueryPlan", "QueryResult", "QueryWorker", "TableView", "prepare", "preview", "run"]

_LAZY = {
    "QueryWorker": "sandbox.engine.worker",
    "QueryPlan": "sandbox.sql.service",
    "QueryResult": "sandbox.sql.service",
    "prepare": "sandbox.sql.service",
    "preview": "sandbox.sql.service",
    "run": "sandbox.sql.service",
    "TableView": "sandbox.sql.tables",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
