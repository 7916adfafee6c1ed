"""Execution of canonical SQL on locked DuckDB connections.

- `lockdown`: `locked_connection`/`lock_down`, the one DuckDB lockdown every engine uses (the only
  ``duckdb.connect`` of the product).
- `hardening`: `connect_locked`, the query engines' connection (views over the registered Parquet in place, or
  materialised tables; exact allow-lists).
- `nowrite`: `forbid_file_writes`, the worker child's seccomp guard: no file can be opened for writing, renamed,
  removed or created.
- `worker`: `QueryWorker`, a separate spawned process holding the locked connection; timeouts through
  ``con.interrupt()``; only aggregate rows (at most the expected number of groups) leave it; engine errors
  become generic codes.
- `spark`: `SparkWorker`, the same interface over Apache Spark for datasets declared ``engine: spark`` (canonical
  SQL emitted in Spark's dialect and checked; PySpark imported only when one starts).
"""

from sandbox.engine.hardening import connect_locked
from sandbox.engine.worker import EngineFailure, QueryWorker

__all__ = ["EngineFailure", "QueryWorker", "connect_locked"]
