"""Aggregate rules of SQL vetting: which COUNT / SUM / AVG forms are released, and their provable bounds.

- ``COUNT(*)``, ``COUNT(col)`` (not the id column) and ``COUNT(DISTINCT <id column>)`` (the privacy units);
- ``SUM(e)`` / ``AVG(e)`` where ``e`` is a bounded column (a measure, or a numeric dimension with declared
  bounds or a numeric domain) or ``+ - * /``-by-literal combinations of them. `AggregateRules.bounded` derives
  the expression's bounds by interval arithmetic and refuses them beyond ``MAX_AMPLIFICATION`` × the declared
  ones; each column is clamped to its declared bounds in DOUBLE, so the sensitivity the noise is scaled to holds.
  A column that ingest already clamped into its declared bounds (``bounds_enforced`` in the dataset's ingest
  report, `catalog.ingest`: every non-NULL value of the registered copy lies within them, NaN became NULL) is only
  cast to DOUBLE: clamping it again changes no value. Datasets registered without that record keep the clamp.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlglot import exp

from catalog.columns import Role
from sandbox.sql.rules.expressions import MAX_ABS_BOUND, ExpressionRules, double, num_literal

MAX_AMPLIFICATION = 1_000


def _enforced_within(report: Mapping[str, Any], name: str, lo: float, hi: float) -> bool:
    """True when ingest recorded clamping ``name`` into bounds within ``[lo, hi]`` (every non-NULL value of the
    registered copy lies there, a float NaN became NULL): clamping again at query time changes no value."""
    rec = report.get("bounds_enforced")
    got = rec.get(name) if isinstance(rec, Mapping) else None
    if not isinstance(got, list | tuple) or len(got) != 2:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in got):
        return False
    return lo <= float(got[0]) <= float(got[1]) <= hi


AggFunc = Literal["count_star", "count", "count_units", "sum", "avg"]


@dataclass(frozen=True)
class Aggregate:
    """One aggregate to compute and noise. ``arg`` is canonical (clamped for SUM/AVG)."""

    func: AggFunc
    arg: exp.Expr | None = None
    bounds: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """Identity of the aggregate (function and canonical argument): equal keys are computed once."""
        return f"{self.func}:{self.arg.sql(dialect='duckdb') if self.arg is not None else ''}"


@dataclass
class AggregateRules(ExpressionRules):
    """The aggregate rules on top of the expression rules; collects the query's distinct aggregates."""

    aggregates: list[Aggregate] = field(default_factory=list)

    def aggregate(self, node: exp.Expr, at: str) -> int | None:
        """The index of the aggregate ``node`` computes (-1 when refused), or None when it is no aggregate."""
        if isinstance(node, exp.Paren):
            return self.aggregate(node.this, at)
        agg: Aggregate | None = None
        if isinstance(node, exp.Count):
            arg = node.this
            if isinstance(arg, exp.Star):
                agg = Aggregate("count_star")
            elif isinstance(arg, exp.Distinct):
                agg = self.count_distinct(arg, at)
            elif isinstance(arg, exp.Column):
                res = self.column(arg, at)
                if res is not None:
                    name, info = res
                    if info.role is Role.ID:
                        self.bad("id_column", at, arg, f"{name} is the privacy unit: use COUNT(DISTINCT {name})")
                    else:
                        agg = Aggregate("count", self.col_expr(name))
            else:
                self.bad("aggregate_argument", at, node, "COUNT takes *, a column, or DISTINCT <id column>")
        elif isinstance(node, exp.Sum | exp.Avg):
            arg = node.this
            if isinstance(arg, exp.Distinct):
                self.bad("aggregate_argument", at, node, "SUM/AVG(DISTINCT ...) is not supported")
            else:
                bounded = self.bounded(arg, at)
                if bounded is not None:
                    expr, lo, hi = bounded
                    agg = Aggregate("sum" if isinstance(node, exp.Sum) else "avg", expr, (lo, hi))
        elif isinstance(node, exp.Filter):
            self.bad("aggregate", at, node, "FILTER clauses are not supported; use WHERE")
        elif isinstance(node, exp.AggFunc):
            pass  # reported once by the statement walk
        else:
            return None
        if agg is None:
            return -1
        for i, a in enumerate(self.aggregates):
            if a.key == agg.key:
                return i
        self.aggregates.append(agg)
        return len(self.aggregates) - 1

    def count_distinct(self, arg: exp.Distinct, at: str) -> Aggregate | None:
        """COUNT(DISTINCT <id column>) as a count of privacy units; None after reporting anything else."""
        assert self.view is not None
        cols = arg.expressions
        if len(cols) == 1 and isinstance(cols[0], exp.Column):
            res = self.column(cols[0], at)
            if res is None:
                return None
            if res[1].role is Role.ID:
                return Aggregate("count_units")
        self.bad("count_distinct", at, arg, f"only COUNT(DISTINCT {self.view.id_column}) is supported")
        return None

    def bounded(self, node: exp.Expr, at: str) -> tuple[exp.Expr, float, float] | None:
        """A clamped numeric expression with provable bounds (interval arithmetic), or None."""
        res = self._interval(node, at)
        if res is None:
            return None
        expr, lo, hi, scale = res
        big = max(abs(lo), abs(hi))
        if (not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(scale)) or big > MAX_ABS_BOUND
                or big > MAX_AMPLIFICATION * max(scale, 1.0)):
            self.bad("unbounded_expression", at, node,
                     f"the expression's bounds exceed {MAX_AMPLIFICATION}x the declared bounds; aggregate the "
                     "column itself and scale the result client-side")
            return None
        return expr, lo, hi

    def _interval(self, node: exp.Expr, at: str) -> tuple[exp.Expr, float, float, float] | None:
        if isinstance(node, exp.Paren):
            return self._interval(node.this, at)
        if self._is_literal(node):
            lit = self.literal(node, at)
            if lit is None:
                return None
            if lit[1] != "num":
                self.bad("aggregate_argument", at, node, "SUM/AVG need numeric expressions")
                return None
            v = float(lit[2])
            return lit[0], v, v, 0.0
        if isinstance(node, exp.Column):
            res = self.column(node, at)
            if res is None:
                return None
            name, info = res
            if info.role is Role.ID:
                self.bad("id_column", at, node, f"{name} is the privacy unit: it may not be aggregated")
                return None
            bounds = info.bounds
            nums = [float(v) for v in info.domain or () if isinstance(v, int | float) and not isinstance(v, bool)]
            if bounds is None and info.domain is not None and len(nums) == len(info.domain):
                bounds = (min(nums), max(nums))
            if bounds is None or not info.kind.numeric:
                self.bad("aggregate_argument", at, node, f"{name} has no numeric bounds: it cannot be summed")
                return None
            lo, hi = float(bounds[0]), float(bounds[1])
            as_double = exp.Cast(this=self.col_expr(name), to=exp.DataType.build("DOUBLE"))
            assert self.view is not None
            if info.bounds is not None and _enforced_within(self.view.dataset.ingest_report, name, lo, hi):
                return as_double, lo, hi, max(abs(lo), abs(hi))
            clamped = exp.func(
                "LEAST",
                exp.func("GREATEST", as_double,
                         num_literal(Decimal(repr(lo)))),
                num_literal(Decimal(repr(hi))),
            )
            return clamped, lo, hi, max(abs(lo), abs(hi))
        if isinstance(node, exp.Neg):
            inner = self._interval(node.this, at)
            if inner is None:
                return None
            return exp.Neg(this=double(inner[0])), -inner[2], -inner[1], inner[3]
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
            left = self._interval(node.this, at)
            if isinstance(node, exp.Div):
                lit = self.literal(node.expression, at) if self._is_literal(node.expression) else None
                if lit is None or lit[1] != "num" or lit[2] == 0:
                    self.bad("divisor", at, node, "divide only by a non-zero numeric literal")
                    return None
                v = float(lit[2])
                right: tuple[exp.Expr, float, float, float] | None = (lit[0], v, v, 0.0)
            else:
                right = self._interval(node.expression, at)
            if left is None or right is None:
                return None
            (le, llo, lhi, ls), (re_, rlo, rhi, rs) = left, right
            le, re_ = double(le), double(re_)
            scale = max(ls, rs)
            if isinstance(node, exp.Add):
                return exp.Add(this=le, expression=re_), llo + rlo, lhi + rhi, scale
            if isinstance(node, exp.Sub):
                return exp.Sub(this=le, expression=re_), llo - rhi, lhi - rlo, scale
            if isinstance(node, exp.Mul):
                prods = [llo * rlo, llo * rhi, lhi * rlo, lhi * rhi]
                return exp.Mul(this=le, expression=re_), min(prods), max(prods), scale
            quots = [llo / rlo, lhi / rlo]
            return exp.Div(this=le, expression=re_, typed=False, safe=False), min(quots), max(quots), scale
        if isinstance(node, exp.Func):
            self.bad("unbounded_expression", at, node,
                     "inside SUM/AVG only columns and + - * / with literals are allowed")
            return None
        if isinstance(node, exp.Star):
            self.bad("aggregate_argument", at, node, "SUM/AVG take a bounded numeric expression")
            return None
        self.bad("aggregate_argument", at, node, "SUM/AVG take a bounded numeric expression")
        return None

