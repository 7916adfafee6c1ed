"""Private SQL: vetting, rewriting, key enumeration and the facade.

- `tables`: `TableView`, a dataset narrowed to the agreement's columns.
- `vet`: `vet` (sqlglot allow-list; every violation reported) → `VettedQuery`.
- `keys`: public group keys from declared domains/bounds (`enumerate_keys`).
- `rewrite`: canonical SQL with per-unit bounding and integer noise vectors.
- `service`: `prepare`, `preview`, `run`, `QueryPlan`, `QueryResult`.
"""

from sandbox.sql.service import QueryPlan, QueryResult, prepare, preview, run
from sandbox.sql.tables import TableView
from sandbox.sql.vet import VettedQuery, vet

__all__ = ["QueryPlan", "QueryResult", "TableView", "VettedQuery", "prepare", "preview", "run", "vet"]
