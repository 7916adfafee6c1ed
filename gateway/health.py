"""Liveness and readiness (``GET /health``, ``GET /ready``): answered in milliseconds whatever the load.

Both routes are ``async``, outside ``/v1`` (no authentication, no audit, no heavy lane) and never wait for the
request threadpool that work runs in (queries and jobs in their heavy lane, `gateway.deps.HeavyLane`; checks,
scoring, reads and the audit middleware in the rest of the pool): a gateway whose lane, queue and pool threads are
all busy still answers them (`tests/system/http/gateway/test_health_ready.py`, `test_lanes.py`).

- ``/health`` (liveness) answers from the event loop alone: no store, engine or file access.
- ``/ready`` (readiness) runs its checks (`Probes`) on one small executor of its own, never the shared pool,
  bounded by `READY_TIMEOUT_S`, and single-flight (concurrent callers share the probe under way). The store and
  audit checks open a connection of their own for each probe (an engine without a pool, `probe_engine`), never
  one of the request pool's: a gateway whose pool is taken by requests (on PostgreSQL, ``VEILBOX_DB_POOL_SIZE`` +
  overflow) still answers, and a store that went away is seen at once, not through a stale pooled connection.
  This costs the store at most one extra connection per process, for milliseconds:

  - ``store``: the metadata store answers a trivial query;
  - ``audit``: the signed audit head is readable and consistent with the chain (one statement, one snapshot:
    the head's ``seq`` is the newest entry's and its hash is that entry's hash);
  - ``engines``: the query engines can start (the Parquet copies' directory is there and readable; engine
    processes are started per dataset on first need, a pool of them for queries and one for checks, and
    replaced when they die: `sandbox.jobs.query.QueryEngines`);
  - ``worker``: the embedded job worker's thread is alive (``off`` when this process runs none,
    ``VEILBOX_WORKER=false``: workers then run as separate processes).

  A failing check is ``UNAVAILABLE`` (503) with ``Retry-After`` and the failing checks named by fixed words
  (``unreachable``, ``timeout``, ``inconsistent``, ``missing``, ``not_running``), never a store message or path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, literal, select
from sqlalchemy.pool import NullPool

from gateway import _tables as t
from gateway.context import AppContext

log = logging.getLogger("veilbox.gateway")

__all__ = ["READY_TIMEOUT_S", "RETRY_AFTER_S", "Probes", "failing", "probe_engine"]

#: The longest ``/ready`` waits for the store and audit checks before it answers ``timeout``.
READY_TIMEOUT_S = 2.0
#: The ``Retry-After`` of a 503 from ``/ready`` (seconds).
RETRY_AFTER_S = 5


def probe_engine(engine: Engine, timeout_s: float = READY_TIMEOUT_S) -> Engine:
    """An engine on ``engine``'s store without a pool: each use opens (and closes) a connection of its own, so
    the readiness checks never wait for the request pool; on PostgreSQL connecting gives up after about
    ``timeout_s`` (a server that does not answer leaves no probe thread stuck)."""
    if engine.dialect.name == "sqlite":
        return create_engine(
            engine.url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": timeout_s}
        )
    return create_engine(engine.url, poolclass=NullPool, connect_args={"connect_timeout": max(1, math.ceil(timeout_s))})


class Probes:
    """The readiness checks of one app, on a one-thread executor of their own (closed with the app)."""

    def __init__(self, ctx: AppContext, worker: Any = None, timeout_s: float = READY_TIMEOUT_S) -> None:
        self.ctx, self.worker, self.timeout_s = ctx, worker, timeout_s
        self.engine = probe_engine(ctx.engine, timeout_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="veilbox-ready")
        self._pending: concurrent.futures.Future[dict[str, str]] | None = None
        self._guard = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    async def ready(self) -> dict[str, str]:
        """Each check's word: ``ok`` (or ``off`` for a worker this process does not run) or what failed."""
        checks = {"store": "timeout", "audit": "timeout"}
        with self._guard:
            fut = self._pending
            if fut is None or fut.done():
                fut = self._pending = self._pool.submit(self._store_checks)
        try:
            checks = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), self.timeout_s)
        except TimeoutError:
            pass
        checks["engines"] = self._engines()
        checks["worker"] = self._worker()
        return checks

    def _store_checks(self) -> dict[str, str]:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(literal(1))).scalar_one()
                audit = self._audit(conn)
        except Exception:
            log.warning("readiness: the store is unreachable", exc_info=True)
            return {"store": "unreachable", "audit": "unreachable"}
        return {"store": "ok", "audit": audit}

    def _audit(self, conn: Connection) -> str:
        head, log_ = t.audit_head, t.audit_entries
        newest = select(func.max(log_.c.seq)).scalar_subquery()
        at_head = select(log_.c.hash).where(log_.c.seq == head.c.seq).scalar_subquery()
        try:  # one statement: one snapshot of the head and the chain
            row = conn.execute(
                select(head.c.seq, head.c.hash, at_head.label("entry_hash"), newest.label("newest")).where(
                    head.c.id == 1
                )
            ).first()
            if row is None:  # a fresh store: no entry, no head
                empty = conn.execute(select(func.count()).select_from(log_)).scalar_one() == 0
                return "ok" if empty else "missing"
        except Exception:
            log.warning("readiness: the audit head is unreadable", exc_info=True)
            return "unreachable"
        return "ok" if row.entry_hash == row.hash and row.newest == row.seq else "inconsistent"

    def _engines(self) -> str:
        data = self.ctx.settings.data_dir
        return "ok" if data.is_dir() and os.access(data, os.R_OK | os.X_OK) else "missing"

    def _worker(self) -> str:
        if self.worker is None:
            return "off"
        return "ok" if self.worker.alive else "not_running"


def failing(checks: dict[str, str]) -> list[dict[str, str]]:
    """The checks that keep the service from being ready, as error details."""
    return [{"check": name, "problem": word} for name, word in checks.items() if word not in ("ok", "off")]
