"""DP SQL jobs: ``{"sql", "epsilon"}`` vetted and calibrated by `sandbox.sql`, run on a locked DuckDB worker.

A query job sees one dataset of its agreement narrowed to the columns the agreement grants; the agreement's
``min_group_units`` drives suppression. Submission vets and prices the query (``plan``); the owner's review
shows the canonical SQL, the cost, the expected error and the exact answer on the mock; ``execute`` re-vets the
same SQL against the agreement as it stands when the job runs, then runs it with fresh noise.

Failures: a spec the current agreement no longer allows (``query.<code>``), a changed cost
(``query.cost_changed``) or a worker that cannot start (``worker.unavailable_before_read``) fail before any data
is read and are refunded. Once the data query is sent nothing fails: a residual engine failure releases the
answer over an empty input (`sandbox.sql.run`) and `Output.incident` tells the data owner; if the release gate
refuses an answer, `Output.fallback` draws the empty-input answer with fresh noise instead. ``epsilon`` below the
service's minimum per query is refused at submission (`require_min_epsilon`, ``INVALID_REQUEST``).

SQL length: one limit, ``VEILBOX_MAX_SQL_CHARS`` (default `sandbox.sql.vet.MAX_SQL_CHARS`, which is also its
ceiling). The gateway checks it at submission and preview (`require_sql_length`, ``QUERY_REJECTED`` rule
``too_long``, exactly as the vetter reports it) and passes it in ``JobEnv.extra["max_sql_chars"]`` to the
review and the run; `prepare_for` takes it as ``max_sql_chars``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from catalog.errors import INVALID_REQUEST, DomainError
from catalog.registry import Dataset
from policies import Agreement, Budget, Job
from sandbox.dp import as_fraction
from sandbox.engine import EngineFailure, QueryWorker
from sandbox.jobs.base import BEFORE_READ, JobEnv, JobFailed, Output, Plan
from sandbox.sql import QueryPlan, QueryResult, TableView, prepare, preview, run
from sandbox.sql.service import release_empty
from sandbox.sql.vet import MAX_SQL_CHARS, check_length

__all__ = ["QueryEngines", "QueryHandler", "parse_query_spec", "prepare_for", "require_min_epsilon",
           "require_sql_length"]

_SPEC_KEYS = frozenset({"sql", "epsilon", "delta"})


class QueryEngines:
    """One locked DuckDB worker process per dataset, started on first use and restarted when the dataset's
    fingerprint changes (a worker only ever holds the Parquet copy it was started over)."""

    def __init__(self, threads: int = 2, memory_limit: str = "2GB", timeout_s: float = 30.0) -> None:
        self.threads, self.memory_limit, self.timeout_s = threads, memory_limit, timeout_s
        self._workers: dict[str, tuple[str, QueryWorker]] = {}
        self._lock = threading.Lock()

    def worker_for(self, ds: Dataset) -> QueryWorker:
        """The running worker over ``ds`` at its current fingerprint (a stale one is stopped and replaced)."""
        with self._lock:
            current = self._workers.get(ds.name)
            if current is not None and current[0] == ds.fingerprint:
                return current[1]
            if current is not None:
                current[1].stop()
            w = QueryWorker({ds.name: ds.path}, threads=self.threads, memory_limit=self.memory_limit,
                            timeout_s=self.timeout_s)
            w.start()
            self._workers[ds.name] = (ds.fingerprint, w)
            return w

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            for _, w in self._workers.values():
                w.stop()
            self._workers.clear()


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
    with _PLANS_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _PLANS_MAX:
            _PLANS.popitem(last=False)
    return plan


class QueryHandler:
    """``kind: "query"`` (see the module docstring)."""

    kind = "query"

    def plan(self, spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset]) -> Plan:
        """The vetted query's table and columns, its (ε, δ) cost, canonical SQL and expected error."""
        qp = prepare_for(spec, agreement, datasets)
        eps, delta = qp.cost
        name = qp.query.table.name
        cols = tuple(sorted(qp.query.columns - {qp.query.table.id_column}))
        return Plan(datasets=(name,), columns={name: cols}, cost=Budget(eps, delta),
                    summary={"canonical_sql": qp.canonical_sql, "expected_error": qp.expected_error()})

    def review(self, spec: Mapping[str, Any], plan: Plan, datasets: Mapping[str, Dataset],
               env: JobEnv) -> dict[str, Any]:
        """`sandbox.sql.preview`: the canonical SQL, cost, expected error and exact answer on the mock."""
        assert env.agreement is not None
        return preview(prepare_for(spec, env.agreement, datasets, max_sql_chars=_max_sql_chars(env)))

    def execute(self, job: Job, datasets: Mapping[str, Dataset], env: JobEnv) -> Output:
        """Re-vet the SQL against the current agreement, then run it with fresh noise on the dataset's worker."""
        assert env.agreement is not None and env.query_engines is not None
        try:
            qp = prepare_for(job.spec, env.agreement, datasets, max_sql_chars=_max_sql_chars(env))
        except DomainError as e:  # the agreement or the data changed since submission; nothing read
            raise JobFailed(f"query.{e.code.lower()}", before_read=True) from None
        if (Budget(*qp.cost)) != job.cost:
            raise JobFailed("query.cost_changed", before_read=True)
        try:
            worker = env.query_engines.worker_for(qp.query.table.dataset)
        except EngineFailure:
            raise JobFailed(BEFORE_READ, "the query worker could not start", before_read=True) from None
        try:
            res = run(qp, worker, latency_bucket_ms=int(env.extra.get("latency_bucket_ms", 0)))
        except DomainError as e:  # raised only before the data query is sent
            reason = str((e.details or [{}])[0].get("reason", ""))
            if reason == BEFORE_READ:
                raise JobFailed(BEFORE_READ, "the query worker could not start", before_read=True) from None
            raise JobFailed("query.failed", cause=f"query.{e.code.lower()}") from None
        return _output(res, lambda: _output(release_empty(qp, "release.refused")))


def _output(res: QueryResult, fallback: Any = None) -> Output:
    return Output(kind="aggregate", result=res.as_dict(), output_digest=res.output_digest, incident=res.incident,
                  fallback=fallback)
