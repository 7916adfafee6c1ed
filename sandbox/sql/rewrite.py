"""Rewriting: canonical SQL emitted from a `VettedQuery` and its public `KeySet` (never the submitted text).

The canonical query has three parts:

1. ``__rows``: the dataset filtered by ``TRY(<vetted WHERE>)``, then *per-unit bounded*: each unit keeps at most
   ``max_rows_per_unit`` rows, a uniformly random subset chosen by the keyed order
   ``ROW_NUMBER() OVER (PARTITION BY <id> ORDER BY hash(<id>, rowid, $salt))``. ``$salt`` is a per-query
   secret from the CSPRNG bound as a parameter, so it never appears in the SQL (DuckDB refuses volatile
   window orderings; a keyed hash is deterministic per query and unpredictable to the analyst).
2. ``__groups``: one row per group present in the data, grouped by ``TRY(CAST(<key> AS <public key type>))``,
   with one *integer* column per noise vector: ``COUNT(*)``, ``COUNT(col)``, ``COUNT(DISTINCT id)``,
   ``COUNT(TRY(e))`` or ``SUM(TRY(CAST(ROUND(e / g) AS BIGINT)))`` — sums are taken on an integer grid of
   granularity ``g`` so that integer (discrete Laplace) noise applies. Measures are clamped again with
   ``LEAST/GREATEST`` (they were clamped at ingest; this is defence in depth).
3. the public key table ``__keys`` (``VALUES`` with a key index) LEFT JOINed to ``__groups``: the result has
   exactly one row per public key, absent groups as zeros; groups outside the declared domain are dropped.

Failure-freedom: no part of this SQL can raise on any row, so whether a run fails never depends on the data.

- Every row-level expression (the WHERE predicate, each group key, each aggregate argument, and so every CASE
  branch inside them) runs under DuckDB's ``TRY(...)``: a row whose expression would raise gets NULL (a NULL
  predicate drops the row). `sandbox.sql.vet` already types arithmetic in DOUBLE and checks literals, so this
  is the by-construction backstop, not the only line.
- Group keys are cast to the public key table's types (under the same ``TRY``), so the join compares equal
  types: it cannot raise a conversion error, and grouping after the cast leaves at most one ``__groups`` row
  per key, so the result never has more rows than public keys (the worker's row check cannot trip on data).
- Fixed-point sums cannot overflow: a SUM argument is clamped to ``|e| <= B`` with ``B <= 1e15`` (the
  vetter's interval arithmetic), ``g = 10^(floor(log10 B) - 6)``, so each row contributes an integer of at
  most ``B / g < 10^7`` (BIGINT holds 9.2e18), and DuckDB sums BIGINT into HUGEINT (±1.7e38): overflowing it
  would need more than 10^31 rows.
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

from sandbox.engine.hardening import quote_ident
from sandbox.sql.keys import KeySet, sql_literal
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

    units_sql = "COUNT(*)" if m == 1 else f"COUNT(DISTINCT {unit})"
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
        s = add(NoiseVector(f"SUM(TRY(CAST(ROUND(({arg}) / {_grid_sql(g)}) AS BIGINT)))", "sum", sens, g))
        if a.func == "sum":
            return (s,)
        c = add(NoiseVector(f"COUNT(TRY({arg}))", "count", m, Fraction(1)))
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
        gsel = ", ".join(f"TRY(CAST({_sql(k)} AS {t})) AS {n}"
                         for k, t, n in zip(q.keys, keys.types, knames, strict=True))
        vsel = ", ".join(f'{v.sql} AS "__v{i}"' for i, v in enumerate(vectors))
        groups = (f'"__groups" AS (SELECT {gsel}, {vsel} FROM "__rows" GROUP BY '
                  f'{", ".join(str(i + 1) for i in range(len(q.keys)))})')
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


def _grid_sql(g: Fraction) -> str:
    if g.denominator == 1:
        return f"{g.numerator}.0"
    digits = len(str(g.denominator)) - 1
    return f"{float(g):.{digits}f}"
