"""Hypothesis strategies for SQL over ``tax_income``: the grammar the vetter accepts, with extreme literals.

`queries(...)` draws whole SELECT statements: group keys of every role and type (string and numeric dimensions,
bucketed measures, CASE, CAST, SUBSTRING, arithmetic), COUNT/SUM/AVG over bounded expressions, WHERE
predicates (comparisons, IN, BETWEEN, IS NULL, LIKE, AND/OR/NOT, CASE inside), HAVING, ORDER BY and LIMIT.
Literals come from a pool of extremes (the literal cap 1e15 and just beyond it, 1e-15 and below, INT64 edges,
1e308, huge SUBSTRING positions) plus the values of one target person, so that predicates select that person's
cell. A fraction of draws is refused by the vetter; the tests use both kinds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st

STR_DIMS = ("district", "gender", "industry")
NUM_DIMS = ("age", "has_default")
MEASURES = ("monthly_income", "tax_paid", "social_insurance_months")
CAST_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "DOUBLE", "FLOAT", "DECIMAL", "VARCHAR", "BOOLEAN",
              "DATE")
EXTREME_NUMS = ("0", "1", "-1", "2", "7", "10", "0.5", "-0.25", "3.14159", "1e-15", "0.000000000000001",
                "999999999999999", "-999999999999999", "1e15", "1000000000000000", "4611686018427387904",
                "9223372036854775807", "1e-16", "1e-400", "1e308", "123456.789", "16", "100", "200000", "60000",
                "480")
POSITIONS = ("1", "2", "0", "-1", "3", "-3", "12", "13", "-12", "1.5", "999999999999999", "-999999999999999",
             "4294967297", "-4294967297")
STRINGS = ("Binhu", "Liangxi", "F", "M", "construction", "it", "", "x", "B%", "%", "_", "it''s")
BIG = ("999999999999999", "-999999999999999", "1e15", "999999999999999.5")
TINY = ("1e-15", "0.000000000000001", "-1e-15")


@dataclass(frozen=True)
class Target:
    """The person whose presence or values differ between neighbours (literals that select their cell)."""

    district: str = "Binhu"
    age: int = 18
    gender: str = "F"
    industry: str = "construction"
    income: float = 4753.0
    extra: Sequence[str] = field(default_factory=tuple)

    @property
    def cell(self) -> str:
        return (f"district = '{self.district}' AND age = {self.age} AND gender = '{self.gender}' "
                f"AND industry = '{self.industry}'")

    def near_income(self) -> tuple[str, ...]:
        return (f"{self.income - 0.01:.2f}", f"{self.income + 0.01:.2f}", f"{self.income:.2f}")


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


F = TypeVar("F", bound=Callable[..., Any])


def _memo(fn: F) -> F:
    """Build each strategy once per grammar (Hypothesis validates a strategy tree on first use: rebuilding the
    recursive grammar on every draw would cost more than running the query)."""

    @functools.wraps(fn)
    def wrapper(self: Grammar, *args: Any) -> Any:
        key = (fn.__name__, *args)
        if key not in self._memo:
            self._memo[key] = fn(self, *args)
        return self._memo[key]

    return wrapper  # type: ignore[return-value]


class Grammar:
    """Strategies over one target; ``depth`` bounds the nesting of every expression."""

    def __init__(self, target: Target, depth: int = 3) -> None:
        self.t = target
        self.depth = depth
        self._memo: dict[tuple[Any, ...], st.SearchStrategy[str]] = {}
        self.num_lits = st.sampled_from(EXTREME_NUMS + target.near_income() + (str(target.age),) + tuple(target.extra))
        self.str_lits = st.sampled_from((*STRINGS, target.district, target.gender, target.industry))
        self.positions = st.sampled_from(POSITIONS)

    # ---------------------------------------------------------------- hazards
    @_memo
    def hazard(self) -> st.SearchStrategy[str]:
        """Numeric forms that raise in DuckDB unless typed/guarded: overflow, domain errors, huge positions."""
        big = st.sampled_from(BIG + tuple(self.t.extra))
        ints = st.sampled_from(("TRY_CAST(FLOOR(monthly_income) AS BIGINT)", "CAST(age AS BIGINT)",
                                "TRY_CAST(has_default AS BIGINT)", "TRY_CAST(FLOOR(tax_paid) AS INTEGER)",
                                "CAST(age AS INTEGER)"))
        return st.one_of(
            st.builds(lambda a, b: f"{a} * {b}", big, big),
            st.builds(lambda a, b, c: f"{a} * {b} * {c}", ints, big, big),
            st.builds(lambda a, b: f"{a} * {b}", ints, big),
            st.builds(lambda a, b: f"{a} + {b} + {b}", big, big),
            st.builds(lambda a, b: f"-({a} * {b})", ints, big),
            st.builds(lambda a, b: f"ABS({a} * {b})", ints, big),
            st.builds(lambda a, b, d: f"ROUND({a} * {b} * 9223, {d})", ints, big, st.sampled_from(("-12", "-1", "2"))),
            st.builds(lambda a, op, t: f"{a} {op} {t}", ints, st.sampled_from(("%", "//", "/")), st.sampled_from(TINY)),
            st.builds(lambda a, t: f"CAST({a} * 1000 AS {t})", ints,
                      st.sampled_from(("TINYINT", "SMALLINT", "INTEGER"))),
            st.builds(lambda b: f"TRY_CAST(FLOOR(monthly_income) * {b} AS BIGINT) * {b}", big),
        )

    # ---------------------------------------------------------------- numeric expressions
    @_memo
    def num(self, depth: int, measure: bool = False) -> st.SearchStrategy[str]:
        leaves = [self.num_lits, st.sampled_from(NUM_DIMS)]
        if measure:
            leaves.append(st.sampled_from(MEASURES))
        leaf = st.one_of(*leaves)
        if depth <= 0:
            return leaf
        sub = st.deferred(lambda: self.num(depth - 1, measure))
        sub_m = st.deferred(lambda: self.num(depth - 1, True))
        pred = st.deferred(lambda: self.pred(depth - 1))
        guard = st.sampled_from((self.t.cell, *(f"{self.t.cell} AND monthly_income > {b}"
                                                 for b in self.t.near_income())))
        return st.one_of(
            leaf,
            st.builds(lambda g, h, x: f"CASE WHEN {g} THEN {h} ELSE {x} END", guard, self.hazard(), sub),
            self.hazard(),
            st.builds(lambda f, x: f"{f}({x})", st.sampled_from(("FLOOR", "CEIL", "ROUND", "TRUNC")), sub_m),
            st.builds(lambda x, d: f"ROUND({x}, {d})", sub, self.positions),
            st.builds(lambda x: f"ABS({x})", sub),
            st.builds(lambda x: f"-({x})", sub),
            st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(("+", "-", "*")), sub),
            st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(("/", "//", "%")), self.num_lits),
            st.builds(lambda c, x, t: f"{c}({x} AS {t})", st.sampled_from(("CAST", "TRY_CAST")), sub_m,
                      st.sampled_from(CAST_TYPES[:7])),
            st.builds(lambda p, a, b: f"CASE WHEN {p} THEN {a} ELSE {b} END", pred, sub, sub),
            st.builds(lambda p, a: f"CASE WHEN {p} THEN {a} END", pred, sub),
            st.builds(lambda p, a, b: f"IF({p}, {a}, {b})", pred, sub, sub),
            st.builds(lambda a, b: f"COALESCE({a}, {b})", sub, sub),
        )

    # ---------------------------------------------------------------- string expressions
    @_memo
    def text(self, depth: int) -> st.SearchStrategy[str]:
        leaf = st.one_of(st.sampled_from(STR_DIMS), self.str_lits.map(_q))
        if depth <= 0:
            return leaf
        sub = st.deferred(lambda: self.text(depth - 1))
        pred = st.deferred(lambda: self.pred(depth - 1))
        return st.one_of(
            leaf,
            st.builds(lambda f, x: f"{f}({x})", st.sampled_from(("UPPER", "LOWER")), sub),
            st.builds(lambda x, s: f"SUBSTRING({x}, {s})", sub, self.positions),
            st.builds(lambda g, x, s: f"CASE WHEN {g} THEN SUBSTRING({x}, {s}) ELSE {x} END",
                      st.sampled_from((self.t.cell, f"{self.t.cell} AND monthly_income > {self.t.income - 0.01:.2f}")),
                      st.sampled_from(STR_DIMS), st.sampled_from(("999999999999999", "-999999999999999"))),
            st.builds(lambda x, s, n: f"SUBSTRING({x}, {s}, {n})", sub, self.positions, self.positions),
            st.builds(lambda c, x: f"{c}({x} AS VARCHAR)", st.sampled_from(("CAST", "TRY_CAST")),
                      self.num(depth - 1)),
            st.builds(lambda p, a, b: f"CASE WHEN {p} THEN {a} ELSE {b} END", pred, sub, sub),
            st.builds(lambda a, b: f"COALESCE({a}, {b})", sub, sub),
        )

    # ---------------------------------------------------------------- predicates
    @_memo
    def pred(self, depth: int) -> st.SearchStrategy[str]:
        num = self.num(max(depth - 1, 0))
        text = self.text(max(depth - 1, 0))
        cmp = st.sampled_from(("=", "<>", "<", "<=", ">", ">="))
        atoms = st.one_of(
            st.just(self.t.cell),
            st.builds(lambda b: f"{self.t.cell} AND monthly_income > {b}", st.sampled_from(self.t.near_income())),
            st.builds(lambda m, op, b: f"{m} {op} {b}", st.sampled_from(MEASURES), cmp, self.num_lits),
            st.builds(lambda x, op, b: f"{x} {op} {b}", num, cmp, self.num_lits),
            st.builds(lambda x, op, b: f"{x} {op} {_q(b)}", text, cmp, self.str_lits),
            st.builds(lambda x, vs: f"{x} IN ({', '.join(map(_q, vs))})", text,
                      st.lists(self.str_lits, min_size=1, max_size=3)),
            st.builds(lambda x, vs: f"{x} IN ({', '.join(vs)})", num, st.lists(self.num_lits, min_size=1, max_size=3)),
            st.builds(lambda x, a, b: f"{x} BETWEEN {a} AND {b}", num, self.num_lits, self.num_lits),
            st.builds(lambda x, n: f"{x} IS {n}NULL", st.one_of(num, text), st.sampled_from(("", "NOT "))),
            st.builds(lambda x, p: f"{x} LIKE {_q(p)}", text, self.str_lits),
        )
        if depth <= 0:
            return atoms
        sub = st.deferred(lambda: self.pred(depth - 1))
        return st.one_of(
            atoms,
            st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(("AND", "OR")), sub),
            st.builds(lambda a: f"NOT ({a})", sub),
        )

    # ---------------------------------------------------------------- select items
    @_memo
    def key(self) -> st.SearchStrategy[str]:
        d = self.depth - 1
        pred = self.pred(d)
        return st.one_of(
            st.sampled_from((*STR_DIMS, "age")),
            st.builds(lambda m, w: f"FLOOR({m} / {w}) * {w}", st.sampled_from(MEASURES),
                      st.sampled_from(("1000", "50000", "100", "12", "0.5", "1e-15", "999999999999999"))),
            st.builds(lambda p, a, b: f"CASE WHEN {p} THEN {a} ELSE {b} END", pred,
                      st.sampled_from(("'a'", "1", "0.5", "999999999999999", "NULL")),
                      st.sampled_from(("'b'", "0", "-1", "-999999999999999"))),
            st.builds(lambda t: f"TRY_CAST(age AS {t})", st.sampled_from(("VARCHAR", "TINYINT", "BIGINT", "DOUBLE"))),
            self.text(min(d, 1)),
            self.num(min(d, 2)),
        )

    @_memo
    def bounded(self, depth: int) -> st.SearchStrategy[str]:
        leaf = st.one_of(st.sampled_from((*MEASURES, "age")), self.num_lits)
        if depth <= 0:
            return leaf
        sub = st.deferred(lambda: self.bounded(depth - 1))
        return st.one_of(
            leaf,
            st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(("+", "-", "*")), sub),
            st.builds(lambda a, b: f"({a} / {b})", sub, self.num_lits),
            st.builds(lambda a: f"-({a})", sub),
            st.builds(lambda p, a: f"CASE WHEN {p} THEN {a} ELSE 0 END", self.pred(0), sub),
        )

    @_memo
    def aggregate(self) -> st.SearchStrategy[str]:
        return st.one_of(
            st.just("COUNT(*)"),
            st.just("COUNT(DISTINCT person_id)"),
            st.builds(lambda c: f"COUNT({c})", st.sampled_from(MEASURES + STR_DIMS + ("age",))),
            st.builds(lambda f, e: f"{f}({e})", st.sampled_from(("SUM", "AVG")), self.bounded(2)),
        )

    @_memo
    def query(self) -> st.SearchStrategy[str]:
        return st.builds(
            self._assemble,
            st.lists(self.key(), min_size=0, max_size=2),
            st.lists(self.aggregate(), min_size=1, max_size=3),
            st.one_of(st.none(), self.pred(self.depth)),
            st.sampled_from(("alias", "position", "expr", "all")),
            st.one_of(st.none(), st.builds(lambda op, v: f"{op} {v}", st.sampled_from(("=", ">", "<=")),
                                           st.sampled_from(("0", "5", "-1", "999999999999999", "0.5")))),
            st.booleans(),
            st.one_of(st.none(), st.sampled_from(("0", "1", "3", "10000"))),
        )

    @staticmethod
    def _assemble(keys: list[str], aggs: list[str], where: str | None, group_style: str, having: str | None,
                  order: bool, limit: str | None) -> str:
        items = [f"{k} AS k{i}" for i, k in enumerate(keys)] + [f"{a} AS a{i}" for i, a in enumerate(aggs)]
        sql = f"SELECT {', '.join(items)} FROM tax_income"
        if where is not None:
            sql += f" WHERE {where}"
        if keys:
            if group_style == "alias":
                sql += " GROUP BY " + ", ".join(f"k{i}" for i in range(len(keys)))
            elif group_style == "position":
                sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(keys)))
            elif group_style == "expr":
                sql += " GROUP BY " + ", ".join(keys)
            else:
                sql += " GROUP BY ALL"
        if having is not None:
            sql += f" HAVING a0 {having}" if not keys or len(having) % 2 else f" HAVING k0 IS NOT NULL AND a0 {having}"
        if order:
            sql += " ORDER BY 1 DESC"
        if limit is not None:
            sql += f" LIMIT {limit}"
        return sql
