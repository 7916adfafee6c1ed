"""Execution of canonical SQL on locked DuckDB connections.

- `hardening`: `connect_locked`, the DESIGN.md lockdown recipe in order.
- `worker`: `QueryWorker`, a separate spawned process holding the locked connection; timeouts through
  ``con.interrupt()``; only aggregate rows (at most the expected number of groups) leave it; engine errors
  become generic codes.
"""

from sandbox.engine.hardening import connect_locked
from sandbox.engine.worker import EngineFailure, QueryWorker

__all__ = ["EngineFailure", "QueryWorker", "connect_locked"]
