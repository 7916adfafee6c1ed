"""DP SQL jobs: ``{"sql", "epsilon"}`` vetted and calibrated by `sandbox.sql`, run on a locked DuckDB worker lent
from the dataset's pool (`QueryEngines`: several worker processes per dataset, so queries on one dataset run side
by side).

A query job sees one dataset of its agreement narrowed to the columns the agreement grants; the agreement's
``min_group_units`` drives suppression. Submission vets and prices the query (``plan``); the owner's review
shows the canonical SQL, the cost, the expected error and the exact answer on the mock; ``execute`` re-vets the
same SQL against the agreement as it stands when the job runs, then runs it with fresh noise.

Failures: a spec the current agreement no longer allows (``query.<code>``), a changed cost
(``query.cost_changed``) or a worker that cannot start or come free in time (``worker.unavailable_before_read``)
fail before any data is read and are refunded. Once the data query is sent nothing fails: a residual engine
failure releases the answer over an empty input (`sandbox.sql.run`) and `Output.incident` tells the data owner; if
the release gate refuses an answer, `Output.fallback` draws the empty-input answer with fresh noise instead.
``epsilon`` below the service's minimum per query is refused at submission (`require_min_epsilon`,
``INVALID_REQUEST``).

SQL length: one limit, ``VEILBOX_MAX_SQL_CHARS`` (default `sandbox.sql.vet.MAX_SQL_CHARS`, which is also its
ceiling). The gateway checks it at submission and preview (`require_sql_length`, ``QUERY_REJECTED`` rule
``too_long``, exactly as the vetter reports it) and passes it in ``JobEnv.extra["max_sql_chars"]`` to the
review and the run; `prepare_for` takes it as ``max_sql_chars``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

from catalog.errors import INVALID_REQUEST, DomainError
from catalog.fingerprint import HashAlg
from catalog.registry import Dataset
from catalog.sealed import Sealer
from policies import Agreement, Budget, Job
from sandbox.dp import as_fraction
from sandbox.engine import EngineFailure, QueryWorker
from sandbox.engine.spark import DEFAULT_MASTER as SPARK_MASTER
from sandbox.engine.spark import SparkWorker, check_plan, require_available
from sandbox.jobs.base import BEFORE_READ, JobEnv, JobFailed, Output, Plan
from sandbox.sql import QueryPlan, QueryResult, TableView, prepare, preview, run
from sandbox.sql.service import release_empty
from sandbox.sql.vet import MAX_SQL_CHARS, check_length

__all__ = ["EnginePool", "QueryEngines", "QueryHandler", "parse_query_spec", "prepare_for", "require_min_epsilon",
           "require_sql_length"]

_SPEC_KEYS = frozenset({"sql", "epsilon", "delta"})


class EnginePool:
    """The engine processes over one dataset at one fingerprint: at most ``size`` `QueryWorker` s, each started
    on first need and lent to one query at a time (`QueryEngines.lease`)."""

    def __init__(self, name: str, path: Path, fingerprint: str, size: int) -> None:
        self.name, self.path, self.fingerprint, self.size = name, path, fingerprint, size
        self.free: list[QueryWorker] = []
        self.members: list[QueryWorker] = []  # started (or starting) workers, free or lent
        self.retired = False


class QueryEngines:
    """Locked DuckDB worker processes per dataset: a pool of at most ``per_dataset`` workers, each started on
    first need and lent to one query at a time, so that many queries on one dataset run ``per_dataset`` at once.

    - ``lease(ds)`` lends a worker over ``ds`` at its current fingerprint: a free one, else a new one while the
      pool has fewer than ``per_dataset``, else it waits up to ``wait_s`` for one to come back, then raises
      `EngineFailure` (``busy``) — before any data is read, so the caller fails the job refunded
      (``worker.unavailable_before_read``), never a 500.
    - A changed fingerprint retires the dataset's pool: its free workers stop now, lent ones when they come
      back (a worker only ever holds the Parquet copy it was started over).
    - A worker that died (a crash, a kill after a timeout) is dropped when it comes back; the query it was
      running failed closed (`sandbox.sql.run`), and the next lease starts a fresh worker in its place.

    Short calls (plain, encrypted and anonymous checks, PSI) never wait behind queries: `worker_for` gives them
    one more worker per dataset, of their own, shared (each call is one short request; they take turns on it),
    never lent to a query, restarted like the pool's when the fingerprint changes.

    Memory: each worker holds its own DuckDB over the dataset, so a dataset costs up to ``per_dataset + 1``
    times one worker's memory (``memory_limit`` each), the short calls' worker only once they are used."""

    def __init__(self, threads: int = 2, memory_limit: str = "2GB", timeout_s: float = 30.0, *,
                 per_dataset: int = 2, wait_s: float = 60.0, spark_master: str = SPARK_MASTER,
                 sealer: Sealer | None = None) -> None:
        if per_dataset < 1:
            raise ValueError("per_dataset must be at least 1")
        self.sealer = sealer  # opens the datasets sealed at rest (catalog.sealed); None: plain files only
        self.threads, self.memory_limit, self.timeout_s = threads, memory_limit, timeout_s
        self.spark_master = spark_master
        self.per_dataset, self.wait_s = per_dataset, wait_s
        self._pools: dict[str, EnginePool] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._short: dict[str, tuple[str, QueryWorker]] = {}
        self._short_lock = threading.Lock()

    def worker_for(self, ds: Dataset) -> QueryWorker:
        """The short calls' running worker over ``ds`` at its current fingerprint (a stale one is stopped and
        replaced); never one of the queries' pool."""
        with self._short_lock:
            current = self._short.get(ds.name)
            if current is not None and current[0] == ds.fingerprint:
                return current[1]
            if current is not None:
                current[1].stop()
            w = QueryWorker({ds.name: ds.path}, threads=self.threads, memory_limit=self.memory_limit,
                            timeout_s=self.timeout_s, sealer=self.sealer)
            w.start()
            self._short[ds.name] = (ds.fingerprint, w)
            return w

    @contextmanager
    def lease(self, ds: Dataset) -> Iterator[QueryWorker]:
        """A worker over ``ds`` for the caller alone until the block ends (see the class docstring)."""
        pool, worker = self._take(ds)
        try:
            yield worker
        finally:
            self._give_back(pool, worker)

    def in_use(self, name: str) -> int:
        """How many of the dataset's workers are lent out now."""
        with self._cond:
            pool = self._pools.get(name)
            return 0 if pool is None else len(pool.members) - len(pool.free)

    def retire(self, name: str) -> int:
        """Retire every worker over dataset ``name`` (it was withdrawn): idle ones stop now, lent ones when they
        come back, so no process keeps its plaintext in memory. The number stopped now."""
        with self._short_lock:
            short = self._short.pop(name, None)
        with self._cond:
            pool = self._pools.pop(name, None)
            idle: list[QueryWorker] = []
            if pool is not None:
                pool.retired = True
                idle = list(pool.free)
                for w in idle:
                    pool.members.remove(w)
                pool.free.clear()
            self._cond.notify_all()
        stopping = idle + ([short[1]] if short is not None else [])
        for w in stopping:
            w.stop()
        return len(stopping)

    def _pool(self, ds: Dataset, stale: list[QueryWorker]) -> EnginePool:
        pool = self._pools.get(ds.name)
        if pool is None or pool.fingerprint != ds.fingerprint:
            if pool is not None:  # retired: its free workers stop now, lent ones when they come back
                pool.retired = True
                stale.extend(pool.free)
                for w in pool.free:
                    pool.members.remove(w)
                pool.free.clear()
            pool = self._pools[ds.name] = EnginePool(ds.name, Path(ds.path), ds.fingerprint, self.per_dataset)
        return pool

    def _take(self, ds: Dataset) -> tuple[EnginePool, QueryWorker]:
        deadline = time.monotonic() + self.wait_s
        stale: list[QueryWorker] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise EngineFailure("unavailable")
                    pool = self._pool(ds, stale)
                    if pool.free:
                        return pool, pool.free.pop()
                    if len(pool.members) < pool.size:
                        worker = self._new_worker(ds)
                        pool.members.append(worker)  # counted now: a concurrent lease does not start one more
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise EngineFailure("busy")
                    self._cond.wait(left)
        finally:
            for w in stale:
                w.stop()
        try:  # outside the lock: starting loads the dataset while other leases and returns go on
            worker.start()
        except BaseException:
            with self._cond:
                pool.members.remove(worker)
                self._cond.notify_all()
            raise
        return pool, worker

    def _new_worker(self, ds: Dataset) -> QueryWorker:
        """The engine a query on ``ds`` runs on: its declared engine (``duckdb`` or ``spark``)."""
        if ds.engine == "spark":  # same interface (start, execute, stop, alive): sandbox.engine.spark
            return cast(QueryWorker, SparkWorker({ds.name: ds.path}, master=self.spark_master,
                                                 timeout_s=self.timeout_s, sealer=self.sealer))
        return QueryWorker({ds.name: ds.path}, threads=self.threads, memory_limit=self.memory_limit,
                           timeout_s=self.timeout_s, sealer=self.sealer)

    def _give_back(self, pool: EnginePool, worker: QueryWorker) -> None:
        with self._cond:
            keep = worker.alive and not pool.retired and not self._closed
            if keep:
                pool.free.append(worker)
            else:
                pool.members.remove(worker)
            self._cond.notify_all()
        if not keep:
            worker.stop()

    def close(self) -> None:
        """Stop every worker (lent ones when they come back)."""
        with self._cond:
            self._closed = True
            pools = list(self._pools.values())
            self._pools.clear()
            idle = [w for p in pools for w in p.free]
            for p in pools:
                p.retired = True
                for w in p.free:
                    p.members.remove(w)
                p.free.clear()
            self._cond.notify_all()
        with self._short_lock:
            idle.extend(w for _, w in self._short.values())
            self._short.clear()
        for w in idle:
            w.stop()


def parse_query_spec(spec: Mapping[str, Any]) -> tuple[str, Any, Any]:
    """(sql, epsilon, delta) of a query spec; INVALID_REQUEST on unknown or malformed fields."""
    unknown = sorted(set(spec) - _SPEC_KEYS)
    problems = [{"field": k, "problem": "unknown field"} for k in unknown]
    sql = spec.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        problems.append({"field": "sql", "problem": "a non-empty SQL string is required"})
    eps = spec.get("epsilon")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, str)):
        problems.append({"field": "epsilon", "problem": "a positive number is required"})
    delta = spec.get("delta", 0)
    if isinstance(delta, bool) or not isinstance(delta, (int, float, str)):
        problems.append({"field": "delta", "problem": "a number in [0, 1) is required"})
    if problems:
        raise DomainError(INVALID_REQUEST, "the query spec is not valid", problems)
    assert isinstance(sql, str)
    return sql, eps, delta


def require_sql_length(spec: Mapping[str, Any], max_sql_chars: int = MAX_SQL_CHARS) -> None:
    """``QUERY_REJECTED`` (rule ``too_long``) when the spec's SQL is longer than ``max_sql_chars``."""
    sql, _, _ = parse_query_spec(spec)
    check_length(sql, max_sql_chars)


def _max_sql_chars(env: JobEnv) -> int:
    return int(env.extra.get("max_sql_chars", MAX_SQL_CHARS))


def require_min_epsilon(spec: Mapping[str, Any], minimum: Fraction) -> None:
    """``INVALID_REQUEST`` (reason ``epsilon.below_minimum``) when the spec asks for less ε than ``minimum``:
    every query answer costs at least that much, so no observation of a run is nearly free."""
    _, eps, _ = parse_query_spec(spec)
    try:
        value = as_fraction(eps, "epsilon")
    except ValueError as e:
        raise DomainError(INVALID_REQUEST, "the query spec is not valid",
                          [{"field": "epsilon", "problem": str(e)}]) from None
    if value < minimum:
        raise DomainError(INVALID_REQUEST, "epsilon is below the minimum per query",
                          [{"field": "epsilon", "reason": "epsilon.below_minimum",
                            "problem": "below the minimum per query", "minimum": repr(float(minimum))}])


_PLANS: OrderedDict[tuple[Any, ...], QueryPlan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_MAX = 256


def prepare_for(spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset], *,
                max_sql_chars: int = MAX_SQL_CHARS) -> QueryPlan:
    """Vet and calibrate the spec's SQL over the agreement's datasets, narrowed to its granted columns.

    Plans are pure functions of (SQL, ε, δ, agreement version, dataset fingerprints) and are memoised, so the
    plan priced at submission is the plan that runs (and is not rebuilt on the inline path)."""
    sql, eps, delta = parse_query_spec(spec)
    doc = agreement.document
    views = {name: TableView(ds, frozenset(doc.columns.get(name, ()))) for name, ds in datasets.items()
             if name in doc.datasets}
    key = (sql, str(eps), str(delta), max_sql_chars, agreement.id, agreement.document_hash,
           tuple(sorted((n, v.dataset.fingerprint) for n, v in views.items())))
    with _PLANS_LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    plan = prepare(sql, views, eps, delta, min_group_units=doc.min_group_units, max_sql_chars=max_sql_chars)
    if plan.query.table.dataset.engine == "spark":  # emitted for Spark at submission: refused here, not at run
        require_available()
        check_plan(plan.canonical.sql, plan.canonical.unbounded_sql, plan.query.table.name)
    with _PLANS_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _PLANS_MAX:
            _PLANS.popitem(last=False)
    return plan


class QueryHandler:
    """``kind: "query"`` (see the module docstring)."""

    kind = "query"

    def plan(self, spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset],
             hash_alg: HashAlg = "sha256") -> Plan:
        """The vetted query's table and columns, its (ε, δ) cost, canonical SQL and expected error (it names no
        hash: ``hash_alg`` is unused)."""
        qp = prepare_for(spec, agreement, datasets)
        eps, delta = qp.cost
        name = qp.query.table.name
        cols = tuple(sorted(qp.query.columns - {qp.query.table.id_column}))
        return Plan(datasets=(name,), columns={name: cols}, cost=Budget(eps, delta),
                    summary={"canonical_sql": qp.canonical_sql, "expected_error": qp.expected_error(),
                             # what each error figure is of, for the owner's review in plain words
                             "aggregates": {o.name: qp.query.aggregates[o.index].func
                                            for o in qp.query.outputs if o.kind == "agg"},
                             "min_group_units": qp.min_group_units})

    def review(self, spec: Mapping[str, Any], plan: Plan, datasets: Mapping[str, Dataset],
               env: JobEnv) -> dict[str, Any]:
        """`sandbox.sql.preview`: the canonical SQL, cost, expected error and exact answer on the mock."""
        assert env.agreement is not None
        return preview(prepare_for(spec, env.agreement, datasets, max_sql_chars=_max_sql_chars(env)))

    def execute(self, job: Job, datasets: Mapping[str, Dataset], env: JobEnv) -> Output:
        """Re-vet the SQL against the current agreement, then run it with fresh noise on a worker lent from the
        dataset's pool (`QueryEngines.lease`)."""
        assert env.agreement is not None and env.query_engines is not None
        try:
            qp = prepare_for(job.spec, env.agreement, datasets, max_sql_chars=_max_sql_chars(env))
        except DomainError as e:  # the agreement or the data changed since submission; nothing read
            raise JobFailed(f"query.{e.code.lower()}", before_read=True) from None
        if (Budget(*qp.cost)) != job.cost:
            raise JobFailed("query.cost_changed", before_read=True)
        engines: QueryEngines = env.query_engines
        try:
            with engines.lease(qp.query.table.dataset) as worker:
                res = run(qp, worker, latency_bucket_ms=int(env.extra.get("latency_bucket_ms", 0)),
                          hash_alg=env.hash_alg)
        except EngineFailure:  # no worker could start or come free in time: nothing was sent
            raise JobFailed(BEFORE_READ, "the query worker could not start", before_read=True) from None
        except DomainError as e:  # raised only before the data query is sent
            reason = str((e.details or [{}])[0].get("reason", ""))
            if reason == BEFORE_READ:
                raise JobFailed(BEFORE_READ, "the query worker could not start", before_read=True) from None
            raise JobFailed("query.failed", cause=f"query.{e.code.lower()}") from None
        return _output(res, lambda: _output(release_empty(qp, "release.refused", env.hash_alg)))


def _output(res: QueryResult, fallback: Any = None) -> Output:
    return Output(kind="aggregate", result=res.as_dict(), output_digest=res.output_digest, incident=res.incident,
                  fallback=fallback)
