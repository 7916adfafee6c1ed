"""The private SQL facade: ``prepare`` → (gateway charges ``plan.cost``) → ``run``; ``preview`` on mocks.

Unit of privacy: one unit of the dataset's ``id`` column, with all its rows. Neighbouring datasets differ by
adding or removing one unit (at most ``max_rows_per_unit`` rows once bounded). Every released number is
post-processing of discrete Laplace noise vectors (`sandbox.dp.DiscreteLaplace`) whose L1 sensitivities come
from declarations only:

====================  ==============================================================
vector                L1 sensitivity over all groups (m = max_rows_per_unit)
====================  ==============================================================
COUNT(*), COUNT(col)  m
SUM(e)                ceil(max(|lo|, |hi|) / g) · m   on the integer grid of step g
COUNT(DISTINCT id)    1 without GROUP BY (or m = 1), else m
====================  ==============================================================

``AVG(e)`` is noisy ``SUM(e)`` / noisy ``COUNT(e)`` (two vectors). ε is split evenly across the distinct
vectors the query needs plus, when ``min_group_units > 0``, the unit count used for suppression (shared with
``COUNT(*)``/``COUNT(DISTINCT id)`` when they coincide), so ``plan.cost == (ε, 0)`` exactly by basic
composition; δ is not consumed. Groups whose noisy unit count is below ``min_group_units`` are withheld and counted in
``suppressed_groups`` (``min_group_units=0`` disables suppression); a group key on a column flagged ``sensitive`` is
refused unless ``min_group_units`` reaches its grade's minimum (`policies.grades`, rule ``group.sensitive_key``,
decided before anything is read); HAVING, ORDER BY and LIMIT then run on
released values only. Error bars are 95 % half-widths from the noise scale (for AVG a per-row bound from the
released count). With ``latency_bucket_ms`` > 0 a run's duration is rounded up to the next multiple of the bucket.

Residual failures (docs/mechanisms/dp_sql.md, "Residual failures"). `run` asks the worker to start before it
sends anything: a worker that cannot start raises ``INTERNAL`` with reason ``worker.unavailable_before_read``
(nothing was read; the caller refunds). Once the request carrying the data query is sent, a failure (engine
error, timeout, memory, result check, a worker that died) is never raised: the answer is released over an empty
input — every true vector all zeros, the same key set, suppression and error bars, fresh noise — and
`QueryResult.incident` names the failure for the data owner only. The caller sees a release of the same shape
and pays the same ε. `release_empty` draws such an answer on its own (the job flow's fallback when the release
gate refuses an answer computed on data).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
from sqlglot import exp

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from catalog.fingerprint import HashAlg
from catalog.fingerprint import digest as fingerprint_digest
from catalog.mock import mock_table
from policies import grades
from sandbox.dp.budget import MAX_EPSILON, as_fraction, split_epsilon
from sandbox.dp.samplers import DiscreteLaplace
from sandbox.engine.hardening import connect_locked
from sandbox.engine.worker import EngineFailure, ExecRequest, QueryWorker
from sandbox.sql.keys import KeySet, NotEnumerable, enumerate_keys
from sandbox.sql.rewrite import Canonical, rewrite
from sandbox.sql.tables import TableView
from sandbox.sql.vet import MAX_SQL_CHARS, Cond, VettedQuery, reject, vet

__all__ = ["QueryPlan", "QueryResult", "prepare", "preview", "release_empty", "run"]

log = logging.getLogger("veilbox.sandbox.sql")
BEFORE_READ = "worker.unavailable_before_read"

CONFIDENCE = 0.95
MOCK_ROWS = 1_000


@dataclass(frozen=True)
class QueryPlan:
    """A vetted, rewritten, calibrated query. ``cost`` is what the gateway charges before ``run``."""

    sql: str
    query: VettedQuery
    keys: KeySet
    canonical: Canonical
    mechanisms: tuple[DiscreteLaplace, ...]
    epsilon: Fraction
    delta: Fraction
    min_group_units: int
    _widths: dict[int, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cost(self) -> tuple[Fraction, Fraction]:
        """(ε, δ) as exact fractions; δ is 0 (pure ε-DP)."""
        return sum((m.epsilon for m in self.mechanisms), Fraction(0)), Fraction(0)

    @property
    def canonical_sql(self) -> str:
        """The SQL that actually runs (the owner's review shows it instead of the submitted text)."""
        return self.canonical.sql

    @property
    def columns(self) -> list[str]:
        """The result's column names, in output order."""
        return [o.name for o in self.query.outputs]

    def cost_json(self) -> dict[str, float]:
        """`cost` as JSON floats."""
        eps, delta = self.cost
        return {"epsilon": float(eps), "delta": float(delta)}

    def expected_error(self) -> dict[str, float]:
        """95 % half-width per aggregate output (AVG: for a group of ``min_group_units`` units)."""
        out: dict[str, float] = {}
        for o in self.query.outputs:
            if o.kind == "agg":
                out[o.name] = self._half_width(o.index, max(self.min_group_units, 1))
        return out

    def _half_width(self, agg: int, count: float) -> float:
        """95 % half-width of aggregate ``agg`` at ``count``. Except for AVG (whose width depends on a released
        count) it depends on the plan alone (declarations and ε) and is memoised on the plan, which every release
        of a memoised plan asks again."""
        if self.query.aggregates[agg].func == "avg":
            return self._half_width_of(agg, count)
        known = self._widths.get(agg)
        if known is None:
            known = self._widths[agg] = self._half_width_of(agg, count)
        return known

    def _half_width_of(self, agg: int, count: float) -> float:
        a = self.query.aggregates[agg]
        vecs = self.canonical.agg_vectors[agg]
        if a.func != "avg":
            v = vecs[0]
            return self.mechanisms[v].accuracy(1 - CONFIDENCE) * float(self.canonical.vectors[v].granularity)
        s, c = vecs
        alpha = (1 - CONFIDENCE) / 2
        assert a.bounds is not None
        bound = max(abs(a.bounds[0]), abs(a.bounds[1]))
        a_s = self.mechanisms[s].accuracy(alpha) * float(self.canonical.vectors[s].granularity)
        a_c = self.mechanisms[c].accuracy(alpha)
        return (a_s + bound * a_c) / max(count, 1.0)


@dataclass(frozen=True)
class QueryResult:
    """A released answer: what the gateway returns (plus its job id). ``incident`` is set when the answer was
    released over an empty input after a residual failure (``"engine.timeout"``, …): for the data owner only,
    never part of `as_dict`."""

    columns: list[str]
    rows: list[list[Any]]
    suppressed_groups: int
    cost: dict[str, float]
    error_bars: dict[str, Any]
    output_digest: str
    incident: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The answer's JSON body for the grantee (never ``incident``)."""
        return {
            "columns": self.columns,
            "rows": self.rows,
            "suppressed_groups": self.suppressed_groups,
            "cost": self.cost,
            "error_bars": self.error_bars,
            "output_digest": self.output_digest,
        }


def prepare(sql: str, tables: Mapping[str, TableView], epsilon: Fraction | int | float | str | Decimal,
            delta: Fraction | int | float | str | Decimal = 0, min_group_units: int = 0, *,
            max_sql_chars: int = MAX_SQL_CHARS) -> QueryPlan:
    """Vet, rewrite and calibrate ``sql``; raise QUERY_REJECTED (every violation, ``too_long`` beyond
    ``max_sql_chars``) or INVALID_REQUEST."""
    try:
        eps = as_fraction(epsilon, "epsilon")
        dlt = as_fraction(delta, "delta")
    except ValueError as e:
        raise DomainError(INVALID_REQUEST, str(e)) from None
    if not 0 < eps <= MAX_EPSILON:
        raise DomainError(INVALID_REQUEST, f"epsilon must be in (0, {MAX_EPSILON}]")
    if not 0 <= dlt < 1:
        raise DomainError(INVALID_REQUEST, "delta must be in [0, 1)")
    if not isinstance(min_group_units, int) or min_group_units < 0:
        raise DomainError(INVALID_REQUEST, "min_group_units must be a non-negative integer")
    q = vet(sql, tables, max_sql_chars=max_sql_chars)
    _refuse_sensitive_keys(q, min_group_units)
    try:
        keys = enumerate_keys(q.table, q.keys, q.where_terms)
    except NotEnumerable as e:
        raise reject([{"rule": e.rule, "at": "group", "hint": e.hint}]) from None
    canonical = rewrite(q, keys, suppress=min_group_units > 0)
    shares = split_epsilon(eps, len(canonical.vectors))
    try:
        mechs = tuple(DiscreteLaplace.calibrate(v.sensitivity, s)
                      for v, s in zip(canonical.vectors, shares, strict=True))
    except ValueError:  # ε so small the noise scale leaves the exact range (MAX_SCALE): never an OverflowError
        raise DomainError(INVALID_REQUEST, "epsilon is too small for this query",
                          [{"field": "epsilon", "problem": "too small for the query's sensitivity"}]) from None
    return QueryPlan(sql, q, keys, canonical, mechs, eps, dlt, min_group_units)


def _refuse_sensitive_keys(q: VettedQuery, min_group_units: int) -> None:
    """``QUERY_REJECTED`` (rule ``group.sensitive_key``) when a group key uses a column the owner flagged
    sensitive and ``min_group_units`` is below what the dataset's grade requires for such keys (`policies.grades`).
    Decided from the declaration, the vetted SQL and the agreement only, before anything is read."""
    used = {c.name for k in q.keys for c in k.find_all(exp.Column)}
    bad = grades.sensitive_key_violations(q.table.dataset, used, min_group_units)
    if bad:
        need = grades.controls(q.table.dataset.grade).sensitive_key_min_group_units
        raise reject([{"rule": grades.SENSITIVE_KEY_RULE, "at": "group",
                       "hint": f"column {c} is sensitive: grouping on it needs min_group_units of at least {need} "
                               f"(the dataset's grade), the agreement has {min_group_units}"} for c in bad])


def _request(plan: QueryPlan) -> ExecRequest:
    view = plan.query.table
    proved = view.dataset.ingest_report.get("rows_per_unit_max")
    if type(proved) is int and proved <= view.max_rows_per_unit:
        # Ingest counted every unit's rows in this very file: bounding could drop no row, so the worker runs the
        # unbounded twin at once (no bounding pass, no bound check; the same rows either way).
        return ExecRequest(sql=plan.canonical.unbounded_sql, params={}, max_rows=plan.canonical.max_rows,
                           ncols=1 + len(plan.canonical.vectors))
    return ExecRequest(
        sql=plan.canonical.sql,
        params={"salt": secrets.token_hex(16)},
        max_rows=plan.canonical.max_rows,
        ncols=1 + len(plan.canonical.vectors),
        unbounded_sql=plan.canonical.unbounded_sql,
        bound_check=(view.name, view.id_column, view.max_rows_per_unit),
    )


def _vectors(plan: QueryPlan, rows: Sequence[Sequence[Any]]) -> list[list[int]]:
    n = len(plan.keys.rows)
    vecs = [[0] * n for _ in plan.canonical.vectors]
    for r in rows:
        i = int(r[0])
        if not 0 <= i < n:
            raise EngineFailure("result_check")
        for j, v in enumerate(r[1:]):
            vecs[j][i] = int(v or 0)
    return vecs


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="veilbox-noise")
        return _POOL


def run(plan: QueryPlan, worker: QueryWorker, *, latency_bucket_ms: int = 0,
        hash_alg: HashAlg = "sha256") -> QueryResult:
    """Execute ``plan`` on ``worker``, noise, suppress and release. The caller has charged ``plan.cost``; the
    output digest is the home suite's hash (``hash_alg``: ``sha256:`` or ``sm3:``).

    The noise vectors are drawn (OpenDP, data-independent) while the worker computes the true ones. Raises only
    before the data query is sent (``INTERNAL``, reason ``worker.unavailable_before_read``); afterwards every
    failure gives the release over an empty input with ``incident`` set (see the module docstring).
    """
    start = time.monotonic()
    try:
        n = len(plan.keys.rows)
        pending = _pool().submit(lambda: [m.noise(n) for m in plan.mechanisms])
        try:
            worker.start()  # idempotent; decides "could not start" before any request carrying SQL is sent
        except EngineFailure:
            raise DomainError(INTERNAL, "the query could not be started", [{"reason": BEFORE_READ}]) from None
        incident: str | None = None
        try:
            rows = worker.execute(_request(plan))
            true = _vectors(plan, rows)
        except EngineFailure as e:
            incident = "engine." + (e.reason if e.reason in ("timeout", "engine", "result_check") else "unavailable")
            true = _zeros(plan)
        except Exception:  # a defect past the send: still a release, never a different answer
            log.exception("query run failed after the request was sent")
            incident, true = "engine.error", _zeros(plan)
        noise = pending.result()
        noisy = [[t + e for t, e in zip(tv, nv, strict=True)] for tv, nv in zip(true, noise, strict=True)]
        out = _release(plan, noisy, hash_alg=hash_alg)
        return out if incident is None else replace(out, incident=incident)
    finally:
        _pad(start, latency_bucket_ms)


def release_empty(plan: QueryPlan, incident: str, hash_alg: HashAlg = "sha256") -> QueryResult:
    """The answer over an empty input with fresh noise: what leaves instead of an answer computed on data that
    cannot be released (the noise is drawn anew, so nothing of the refused answer's noise is revealed)."""
    n = len(plan.keys.rows)
    return replace(_release(plan, [m.noise(n) for m in plan.mechanisms], hash_alg=hash_alg), incident=incident)


def _zeros(plan: QueryPlan) -> list[list[int]]:
    n = len(plan.keys.rows)
    return [[0] * n for _ in plan.canonical.vectors]


def _pad(start: float, bucket_ms: int) -> None:
    if bucket_ms <= 0:
        return
    elapsed = time.monotonic() - start
    bucket = bucket_ms / 1000.0
    target = math.ceil(elapsed / bucket) * bucket if elapsed > 0 else bucket
    if target - elapsed > 0:
        time.sleep(target - elapsed)


def _aggregate_value(plan: QueryPlan, agg: int, vecs: list[list[int]], i: int) -> Any:
    a = plan.query.aggregates[agg]
    ids = plan.canonical.agg_vectors[agg]
    vs = plan.canonical.vectors
    if a.func in ("count_star", "count", "count_units"):
        return max(0, vecs[ids[0]][i])
    s = Fraction(vecs[ids[0]][i]) * vs[ids[0]].granularity
    if a.func == "sum":
        return float(s)
    assert a.bounds is not None
    c = vecs[ids[1]][i]
    avg = float(s / max(c, 1))
    return min(max(avg, a.bounds[0]), a.bounds[1])


def _release(plan: QueryPlan, vecs: list[list[int]], exact: bool = False,
             hash_alg: HashAlg = "sha256") -> QueryResult:
    q = plan.query
    uv = plan.canonical.unit_vector
    units = vecs[uv] if uv is not None else None
    suppressed = 0
    released: list[tuple[list[Any], list[Any], list[Any]]] = []  # (row, key values, agg values)
    for i, key in enumerate(plan.keys.rows):
        if units is not None and units[i] < plan.min_group_units:
            suppressed += 1
            continue
        aggs = [_aggregate_value(plan, j, vecs, i) for j in range(len(q.aggregates))]
        counts = [vecs[plan.canonical.agg_vectors[j][-1]][i] for j in range(len(q.aggregates))]
        if q.having is not None and not _holds(q.having, key, aggs):
            continue
        row = [key[o.index] if o.kind == "key" else aggs[o.index] for o in q.outputs]
        released.append((row, list(key), counts))
    for col, desc in reversed(q.order):

        def sort_key(r: tuple[list[Any], list[Any], list[Any]], c: int = col) -> tuple[int, Any]:
            return _order_key(r[0][c])

        released.sort(key=sort_key, reverse=desc)
    if q.limit is not None:
        released = released[: q.limit]
    rows = [r[0] for r in released]
    bars: dict[str, Any] = {}
    if not exact:
        for o in q.outputs:
            if o.kind != "agg":
                continue
            if q.aggregates[o.index].func == "avg":
                bars[o.name] = [plan._half_width(o.index, float(r[2][o.index])) for r in released]
            else:
                bars[o.name] = plan._half_width(o.index, 1.0)
    cost = plan.cost_json()
    body = {"columns": plan.columns, "rows": rows, "suppressed_groups": suppressed, "cost": cost,
            "error_bars": bars}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    digest = fingerprint_digest(canon.encode(), hash_alg)
    return QueryResult(plan.columns, rows, suppressed, cost, bars, digest)


def _order_key(v: Any) -> tuple[int, Any]:
    return (1, 0) if v is None else (0, v)


def _value(ref: tuple[str, int], key: Sequence[Any], aggs: Sequence[Any]) -> Any:
    kind, idx = ref
    return key[idx] if kind == "key" else aggs[idx]


_CMPS = {
    "EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b,
}


def _holds(c: Cond, key: Sequence[Any], aggs: Sequence[Any]) -> bool:
    try:
        if c.op == "and":
            return _holds(c.args[0], key, aggs) and _holds(c.args[1], key, aggs)
        if c.op == "or":
            return _holds(c.args[0], key, aggs) or _holds(c.args[1], key, aggs)
        if c.op == "not":
            return not _holds(c.args[0], key, aggs)
        v = _value(c.args[0] if c.op != "cmp" else c.args[1], key, aggs)
        if c.op == "isnull":
            return v is None
        if v is None:
            return False
        if c.op == "cmp":
            return bool(_CMPS[c.args[0]](v, c.args[2]))
        if c.op == "between":
            return bool(c.args[1] <= v <= c.args[2])
        if c.op == "in":
            return v in c.args[1]
    except TypeError:
        return False
    return False


def preview(plan: QueryPlan, mock_tables: Mapping[str, pa.Table] | None = None) -> dict[str, Any]:
    """Run the canonical SQL on mock data in a locked engine; spends nothing.

    ``mock_result`` is exact (the mock is public, generated from declarations only): no noise is added, and
    groups are suppressed on their exact unit counts, so the analyst sees the shape of the answer.
    """
    view = plan.query.table
    tables = dict(mock_tables or {})
    if view.name not in tables:
        tables[view.name] = mock_table(view.name, view.dataset.columns, rows=MOCK_ROWS)
    con = connect_locked({view.name: tables[view.name]})
    try:
        req = _request(plan)
        cur = con.execute(req.sql, req.params)
        rows = cur.fetchall()
        if len(rows) > req.max_rows or len(cur.description or []) != req.ncols:
            raise DomainError(INTERNAL, "the query could not be completed", [{"reason": "result_check"}])
    except Exception as e:
        if isinstance(e, DomainError):
            raise
        raise DomainError(INTERNAL, "the query could not be completed", [{"reason": "engine"}]) from None
    finally:
        con.close()
    result = _release(plan, _vectors(plan, rows), exact=True)
    return {
        "canonical_sql": plan.canonical_sql,
        "cost": plan.cost_json(),
        "expected_error": plan.expected_error(),
        "mock_result": {"columns": result.columns, "rows": result.rows,
                        "suppressed_groups": result.suppressed_groups},
    }
