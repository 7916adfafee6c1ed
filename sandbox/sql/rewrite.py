"""Rewriting: canonical SQL emitted from a `VettedQuery` and its public `KeySet` (never the submitted text).

The canonical query has three parts:

1. ``__rows``: the dataset filtered by ``TRY(<vetted WHERE>)``, then *per-unit bounded*: each unit keeps at most
   ``max_rows_per_unit`` rows, a uniformly random subset chosen by the keyed order
   ``ROW_NUMBER() OVER (PARTITION BY <id> ORDER BY hash(<id>, rowid, $salt))``. ``$salt`` is a per-query
   secret from the CSPRNG bound as a parameter, so it never appears in the SQL (DuckDB refuses volatile
   window orderings; a keyed hash is deterministic per query and unpredictable to the analyst).
2. ``__groups``: one row per group present in the data, grouped by ``TRY(CAST(<key> AS <public key type>))``
   (a bare string, boolean or float column already of that type is grouped on as it is: see below), with one
   *integer* column per noise vector: ``COUNT(*)``, ``COUNT(col)``, ``COUNT(DISTINCT id)`` (``COUNT(*)`` when
   the declaration or ingest proves one row per unit), ``COUNT(TRY(e))`` or
   ``SUM(TRY(CAST(ROUND(e / g) AS BIGINT)))`` (without ``TRY`` for one measure column, see below) — sums
   are taken on an integer grid of granularity ``g`` so that
   integer (discrete Laplace) noise applies. A measure is clamped again with ``LEAST/GREATEST`` unless ingest
   recorded clamping it into its declared bounds (``bounds_enforced``, `sandbox.sql.rules.aggregates`).
3. the public key table ``__keys`` (``VALUES`` with a key index) LEFT JOINed to ``__groups``: the result has
   exactly one row per public key, absent groups as zeros; groups outside the declared domain are dropped.
   When the keys are one BIGINT key taking every integer from ``lo`` to ``hi`` (a bucketed measure's
   histogram), there is no key table (DuckDB spends ~0.3 ms per literal parsing one): the query keeps the groups
   with ``__k0 BETWEEN lo AND hi`` and returns ``__i = __k0 - lo``; the service fills every declared key with
   zeros first and writes the rows it receives into their index (`sandbox.sql.service`), so the vectors, and
   the release, are those of the join; its work is O(declared keys) whichever keys are present.

What is elided, and why it changes nothing:

- ``TRY(CAST(col AS T))`` on a bare group-key column whose declared kind is stored as ``T``: ingest
  (`catalog.ingest`) writes string columns as VARCHAR, booleans as BOOLEAN, floats and decimals as FLOAT or
  DOUBLE, so the cast is the identity (or a widening) and a column read cannot raise. Integer columns keep it (a
  file may hold unsigned 64-bit integers, whose cast to BIGINT can overflow).
- the query-time clamp of a measure ingest clamped (integer and 64-bit float columns; the record names the
  bounds, and the elision applies only when they lie within today's declared bounds): every non-NULL value
  already lies within them, so the clamp is the identity. Older registrations have no record and keep it.
- ``COUNT(DISTINCT id)`` becomes ``COUNT(*)`` when ingest counted at most one row per unit in this file (ids
  are never NULL there: ingest drops such rows), where the two are equal.

Failure-freedom: no part of this SQL can raise on any row, so whether a run fails never depends on the data.

- Every row-level expression (the WHERE predicate, each group key, each aggregate argument, and so every CASE
  branch inside them) runs under DuckDB's ``TRY(...)``: a row whose expression would raise gets NULL (a NULL
  predicate drops the row). `sandbox.sql.vet` already types arithmetic in DOUBLE and checks literals, so this
  is the by-construction backstop, not the only line.
- Group keys are cast to the public key table's types (under the same ``TRY``, or are already of that type),
  so the join compares equal types: it cannot raise a conversion error, and grouping after the cast leaves at
  most one ``__groups`` row per key, so the result never has more rows than public keys (the worker's row
  check cannot trip on data).
- Fixed-point sums cannot overflow: a SUM argument is clamped to ``|e| <= B`` with ``B <= 1e15`` (the
  vetter's interval arithmetic), ``g = 10^(floor(log10 B) - 6)``, so each row contributes an integer of at
  most ``B / g < 10^7`` (BIGINT holds 9.2e18), and DuckDB sums BIGINT into HUGEINT (±1.7e38): overflowing it
  would need more than 10^31 rows.
- A sum (and AVG's count) of one measure column, clamped or proven by ingest, has no ``TRY``: every value is
  NULL or finite within ``[-B, B]`` (``LEAST/GREATEST`` maps NaN and infinities to a bound; ingest turned NaN into
  NULL and clamped infinities), so ``CAST(ROUND(x / g) AS BIGINT)`` cannot fail. Any arithmetic keeps the
  ``TRY``: the final interval is bounded, but an intermediate product may overflow to infinity
  (``x * 1e15 * ... * 0`` is NaN), and NaN cannot be cast to BIGINT.
- The histogram index ``TRY(__k0 - lo)`` is computed on the filtered groups and under ``TRY``.
- Counts are ``COUNT`` of rows, columns or ``TRY`` results: they never raise. ``hash(id, rowid, $salt)`` and
  ``ROW_NUMBER`` never raise. ``COALESCE(v, 0)`` of a HUGEINT never raises.

Global aggregates (no GROUP BY) return exactly one row. The *unbounded* twin is identical minus the QUALIFY;
the worker may run it only after verifying that no unit exceeds the bound (then both give the same rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from sqlglot import exp

from catalog.columns import Kind
from sandbox.engine.hardening import quote_ident
from sandbox.sql.keys import KeySet, sql_literal
from sandbox.sql.tables import TableView
from sandbox.sql.vet import Aggregate, VettedQuery

__all__ = ["Canonical", "NoiseVector", "granularity", "rewrite"]

GRID_DIGITS = 6


@dataclass(frozen=True)
class NoiseVector:
    """One integer column of the canonical result, noised as a whole with L1 sensitivity ``sensitivity``."""

    sql: str
    kind: Literal["count", "sum"]
    sensitivity: int
    granularity: Fraction


@dataclass(frozen=True)
class Canonical:
    """The canonical query (per-unit bounded) and its unbounded twin, with the noise vectors its columns feed."""

    sql: str
    unbounded_sql: str
    vectors: tuple[NoiseVector, ...]
    agg_vectors: tuple[tuple[int, ...], ...]  # per aggregate: (vector,) or (sum vector, count vector) for AVG
    unit_vector: int | None  # the noisy unit count used for suppression (None: no suppression)
    max_rows: int


def granularity(bound: float) -> Fraction:
    """Grid step for sums of values within ``[-bound, bound]``: the power of ten leaving ~6-7 digits."""
    if bound <= 0:
        return Fraction(1)
    k = math.floor(math.log10(bound)) - GRID_DIGITS
    return Fraction(10) ** k


def _sql(e: exp.Expr) -> str:
    return e.sql(dialect="duckdb", comments=False)


def rewrite(q: VettedQuery, keys: KeySet, suppress: bool = True) -> Canonical:
    """Canonical SQL for ``q``; with ``suppress`` a noisy unit count per group is added (or shared)."""
    view = q.table
    m = view.max_rows_per_unit
    unit = quote_ident(view.id_column)
    grouped = bool(q.keys)
    vectors: list[NoiseVector] = []

    def add(v: NoiseVector) -> int:
        for i, w in enumerate(vectors):
            if w.sql == v.sql and w.kind == v.kind and w.granularity == v.granularity:
                if v.sensitivity > w.sensitivity:
                    vectors[i] = v
                return i
        vectors.append(v)
        return len(vectors) - 1

    proved = view.dataset.ingest_report.get("rows_per_unit_max")
    one_row_each = m == 1 or (type(proved) is int and proved <= 1)  # ingest counted every unit's rows
    units_sql = "COUNT(*)" if one_row_each else f"COUNT(DISTINCT {unit})"
    units_sens = 1 if (m == 1 or not grouped) else m

    def agg_vectors(a: Aggregate) -> tuple[int, ...]:
        if a.func == "count_star":
            return (add(NoiseVector("COUNT(*)", "count", m, Fraction(1))),)
        if a.func == "count_units":
            return (add(NoiseVector(units_sql, "count", units_sens, Fraction(1))),)
        assert a.arg is not None
        arg = _sql(a.arg)
        if a.func == "count":
            return (add(NoiseVector(f"COUNT({arg})", "count", m, Fraction(1))),)
        assert a.bounds is not None
        bound = max(abs(a.bounds[0]), abs(a.bounds[1]))
        g = granularity(bound)
        sens = max(1, math.ceil(Fraction(repr(bound)) / g)) * m
        grid = f"CAST(ROUND(({arg}) / {_grid_sql(g)}) AS BIGINT)"
        finite = _finite_measure(a.arg)
        s = add(NoiseVector(f"SUM({grid})" if finite else f"SUM(TRY({grid}))", "sum", sens, g))
        if a.func == "sum":
            return (s,)
        c = add(NoiseVector(f"COUNT({arg})" if finite else f"COUNT(TRY({arg}))", "count", m, Fraction(1)))
        return (s, c)

    per_agg = tuple(agg_vectors(a) for a in q.aggregates)
    unit_vector = add(NoiseVector(units_sql, "count", units_sens, Fraction(1))) if suppress else None

    cols = sorted(q.columns | {view.id_column})
    proj = ", ".join(quote_ident(c) for c in cols)
    where = f" WHERE TRY({_sql(q.where)})" if q.where is not None else ""
    base = f"SELECT {proj} FROM {quote_ident(view.name)}{where}"
    qualify = (f" QUALIFY ROW_NUMBER() OVER (PARTITION BY {unit} ORDER BY hash({unit}, rowid, $salt))"
               f" <= {m}")
    vec_sql = [f"COALESCE({v.sql}, 0) AS \"__v{i}\"" for i, v in enumerate(vectors)]
    if not grouped:
        tail = f'SELECT 0 AS "__i", {", ".join(vec_sql)} FROM "__rows"'
        max_rows = 1
    else:
        knames = [f'"__k{i}"' for i in range(len(q.keys))]
        gsel = ", ".join(f"{_key_sql(view, k, t)} AS {n}" for k, t, n in zip(q.keys, keys.types, knames, strict=True))
        vsel = ", ".join(f'{v.sql} AS "__v{i}"' for i, v in enumerate(vectors))
        groups = (f'"__groups" AS (SELECT {gsel}, {vsel} FROM "__rows" GROUP BY '
                  f'{", ".join(str(i + 1) for i in range(len(q.keys)))})')
        span = _integer_span(keys)
        if span is not None:
            lo, hi = span
            outs = ", ".join(f'"__v{i}"' for i in range(len(vectors)))
            tail = (f', {groups} SELECT TRY("__k0" - {lo}) AS "__i", {outs} FROM "__groups" '
                    f'WHERE "__k0" BETWEEN {lo} AND {hi}')
            max_rows = len(keys.rows)
            bounded = f'WITH "__rows" AS ({base}{qualify}) {tail}'
            unbounded = f'WITH "__rows" AS ({base}) {tail}'
            return Canonical(bounded, unbounded, tuple(vectors), per_agg, unit_vector, max_rows)
        values = ", ".join(
            "(" + ", ".join([str(i), *(sql_literal(v, t) for v, t in zip(row, keys.types, strict=True))]) + ")"
            for i, row in enumerate(keys.rows)
        )
        outs = ", ".join(f'COALESCE("__groups"."__v{i}", 0) AS "__v{i}"' for i in range(len(vectors)))
        on = " AND ".join(f'"__groups".{n} IS NOT DISTINCT FROM "__keys".{n}' for n in knames)
        tail = (f', {groups} SELECT "__keys"."__i", {outs} FROM (VALUES {values}) AS "__keys"("__i", '
                f'{", ".join(knames)}) LEFT JOIN "__groups" ON {on}')
        max_rows = len(keys.rows)
    bounded = f'WITH "__rows" AS ({base}{qualify}) {tail}'
    unbounded = f'WITH "__rows" AS ({base}) {tail}'
    return Canonical(bounded, unbounded, tuple(vectors), per_agg, unit_vector, max_rows)


def _finite_measure(arg: exp.Expr) -> bool:
    """True for one measure column cast to DOUBLE, bare (ingest clamped it) or clamped between two literals:
    every value is NULL or finite within the declared bounds, so its grid cast cannot fail (no TRY needed)."""
    node = arg
    if (isinstance(node, exp.Least) and isinstance(node.this, exp.Greatest) and len(node.expressions) == 1
            and len(node.this.expressions) == 1 and _constant(node.expressions[0])
            and _constant(node.this.expressions[0])):
        node = node.this.this
    return (isinstance(node, exp.Cast) and isinstance(node.this, exp.Column)
            and isinstance(node.to, exp.DataType) and node.to.this is exp.DataType.Type.DOUBLE)


def _constant(node: exp.Expr) -> bool:
    return not any(isinstance(n, exp.Column) for n in node.walk())


_SAME_TYPE = {Kind.STRING: "VARCHAR", Kind.BOOLEAN: "BOOLEAN", Kind.FLOAT: "DOUBLE"}


def _key_sql(view: TableView, key: exp.Expr, duck_type: str) -> str:
    """A group key cast to its public type under ``TRY``; a bare column already of that type as it is.

    A registered string column is stored as VARCHAR, a boolean as BOOLEAN and a float as FLOAT or DOUBLE
    (`catalog.ingest` normalises dictionaries, large strings and decimals), so the cast is the identity (or a
    widening that cannot fail) and reading a column cannot raise. Integers keep the guard: a file's integer
    column may be unsigned 64-bit, whose cast to BIGINT can overflow.
    """
    if isinstance(key, exp.Column):
        info = view.dataset.columns.get(key.name)
        if info is not None and _SAME_TYPE.get(info.kind) == duck_type:
            return _sql(key)
    return f"TRY(CAST({_sql(key)} AS {duck_type}))"


def _integer_span(keys: KeySet) -> tuple[int, int] | None:
    """``(lo, hi)`` when the key set is one BIGINT key taking every integer from lo to hi, in order (a bucketed
    measure's histogram): the key index is then ``key - lo``, computed without a key table."""
    if keys.types != ("BIGINT",) or not keys.rows:
        return None
    values = [r[0] for r in keys.rows]
    if not all(type(v) is int for v in values):
        return None
    lo, hi = values[0], values[-1]
    if values != list(range(lo, hi + 1)) or abs(lo) > 2**62 or abs(hi) > 2**62:
        return None
    return lo, hi


def _grid_sql(g: Fraction) -> str:
    if g.denominator == 1:
        return f"{g.numerator}.0"
    digits = len(str(g.denominator)) - 1
    return f"{float(g):.{digits}f}"
