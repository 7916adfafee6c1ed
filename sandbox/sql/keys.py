"""Public group keys: the set of key tuples a grouped query releases, derived from declarations only.

Guarantee: the key set depends on the dataset's *declared* domains and bounds and on the query text, never on
the data, so every key appears in the release (absent groups as noisy zeros, small ones suppressed) and the
presence of a group reveals nothing. Keys are computed by evaluating the canonical key expressions in a locked,
table-less DuckDB over the Cartesian product of their *leaves*:

- a dimension with a declared ``domain`` → its values; an integer column with ``bounds`` → every integer in
  them (at most ``MAX_LEAF_VALUES``);
- a rounding function (FLOOR/CEIL/ROUND/TRUNC/TRY_CAST to an integer type) of a linear form of one bounded
  column (e.g. ``FLOOR(monthly_income / 200)``) → every integer between its values at the two bounds (a
  superset of its image: monotone functions of a continuous variable hit each of them or none);
- a CASE whose results are all literals, over columns that cannot be enumerated → those literals (+ NULL).

Anything else (a float dimension used bare, dates without declared values) is *not enumerable* and the query
is refused: Veilbox does not run DP partition selection. A key (or a WHERE-side key expression) that raises on
some declared value is refused too (``key_expression``): the analyst learns it from declarations alone. The
number of keys is capped at ``MAX_GROUPS``. Whatever the expression, enumeration raises nothing but
`NotEnumerable` (a refusal), never an engine or conversion error.

Enumeration is a refusal rule, not the failure-freedom guarantee: values outside the declared domain (kept at
ingest), NULLs and expressions that cannot be enumerated are covered by the rewriter evaluating every
row-level expression under ``TRY`` (`sandbox.sql.rewrite`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
from sqlglot import exp

from catalog.columns import ColumnInfo, Kind, Role
from sandbox.engine.hardening import connect_locked
from sandbox.sql.tables import TableView

__all__ = ["MAX_GROUPS", "KeySet", "NotEnumerable", "enumerate_keys", "sql_literal"]

MAX_GROUPS = 10_000
MAX_LEAF_VALUES = 100_000
MAX_PRODUCT = 2_000_000
_INT_TYPES = (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
              exp.DataType.Type.BIGINT)
_DUCK_TYPE = {Kind.INTEGER: "BIGINT", Kind.FLOAT: "DOUBLE", Kind.STRING: "VARCHAR", Kind.BOOLEAN: "BOOLEAN",
              Kind.DATE: "DATE", Kind.TIMESTAMP: "TIMESTAMP"}


class NotEnumerable(Exception):
    """A key expression whose values cannot be derived from declarations (rule, hint)."""

    def __init__(self, rule: str, hint: str) -> None:
        super().__init__(hint)
        self.rule = rule
        self.hint = hint


@dataclass(frozen=True)
class KeySet:
    """The public key tuples (sorted) and the DuckDB type of each key column."""

    rows: tuple[tuple[Any, ...], ...]
    types: tuple[str, ...]


def sql_literal(value: Any, duck_type: str) -> str:
    """A typed SQL literal for a key value (keys come from declarations, not from data)."""
    if value is None:
        return f"CAST(NULL AS {duck_type})"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return f"CAST('{value!r}' AS {duck_type})"
    if isinstance(value, decimal.Decimal):
        return f"CAST('{value}' AS {duck_type})"
    if isinstance(value, dt.date | dt.datetime):
        return f"CAST('{value.isoformat()}' AS {duck_type})"
    return "'" + str(value).replace("'", "''") + "'"


def _column_values(info: ColumnInfo) -> list[Any] | None:
    if info.role is not Role.DIMENSION and info.role is not Role.MEASURE:
        return None
    if info.domain is not None and info.role is Role.DIMENSION:
        return list(info.domain)
    if info.bounds is not None and info.kind is Kind.INTEGER:
        lo, hi = int(info.bounds[0]), int(info.bounds[1])
        if hi - lo + 1 <= MAX_LEAF_VALUES:
            return list(range(lo, hi + 1))
    return None


def _constant(node: exp.Expr | None) -> bool:
    """True for a literal, possibly negated or cast (the vetter emits non-integers as DOUBLE casts)."""
    return node is not None and not any(isinstance(n, exp.Column) for n in node.walk())


def _linear_column(node: exp.Expr) -> exp.Column | None:
    """The single column of a linear form (+ - * / with literals, casts to DOUBLE), else None."""
    cols = [n for n in node.walk() if isinstance(n, exp.Column)]
    if len(cols) != 1:
        return None
    for n in node.walk():
        if isinstance(n, exp.Mul) and not (_constant(n.this) or _constant(n.expression)):
            return None
        if isinstance(n, exp.Cast) and not (isinstance(n.to, exp.DataType)
                                            and n.to.this is exp.DataType.Type.DOUBLE):
            return None
        if not isinstance(n, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Neg | exp.Paren | exp.Literal | exp.Column
                          | exp.Identifier | exp.Cast | exp.DataType):
            return None
    return cols[0]


def _is_rounding(node: exp.Expr) -> bool:
    if isinstance(node, exp.Floor | exp.Ceil | exp.Round | exp.Trunc):
        return node.args.get("decimals") is None
    if isinstance(node, exp.TryCast):
        to = node.args.get("to")
        return isinstance(to, exp.DataType) and to.this in _INT_TYPES
    return False


@dataclass
class _Leaves:
    view: TableView
    con: duckdb.DuckDBPyConnection
    tables: dict[str, str]  # leaf name -> SQL relation producing it
    sizes: dict[str, int]

    def column_leaf(self, name: str) -> None:
        if name in self.tables:
            return
        info = self.view.dataset.columns[name]
        values = _column_values(info)
        if values is None:
            raise NotEnumerable(
                "group_keys_not_enumerable",
                f"{name} has no enumerable declared values: bucket it, e.g. FLOOR({name} / 10) * 10",
            )
        t = _DUCK_TYPE[info.kind]
        if info.domain is None and info.bounds is not None:
            rel = f'(SELECT CAST(range AS {t}) AS "{name}" FROM range({int(info.bounds[0])}, ' \
                  f"{int(info.bounds[1]) + 1}))"
        else:
            lits = ", ".join(sql_literal(v, t) for v in values)
            rel = f'(SELECT UNNEST([{lits}]) AS "{name}")'
        self.tables[name] = rel
        self.sizes[name] = len(values)

    def range_leaf(self, node: exp.Expr, col: exp.Column) -> exp.Expr:
        info = self.view.dataset.columns[col.name]
        if info.bounds is None:
            raise NotEnumerable("group_keys_not_enumerable", f"{col.name} has no declared bounds to bucket")
        t = _DUCK_TYPE[info.kind]
        ends = []
        for b in info.bounds:
            probe = node.transform(
                lambda n, b=b: exp.Cast(this=exp.Literal.number(repr(b)), to=exp.DataType.build(t))
                if isinstance(n, exp.Column) else n
            )
            try:
                ends.append(self.con.execute(f"SELECT {probe.sql(dialect='duckdb')}").fetchone())
            except (duckdb.Error, ValueError, OverflowError, TypeError):
                raise NotEnumerable("key_expression", "the expression fails on declared values") from None
        lo_hi = [float(e[0]) for e in ends
                 if e is not None and isinstance(e[0], int | float | decimal.Decimal) and not isinstance(e[0], bool)]
        if len(lo_hi) != 2 or not all(math.isfinite(v) and abs(v) <= 2**62 for v in lo_hi):
            raise NotEnumerable("group_keys_not_enumerable", "the bucket expression has no finite range")
        lo, hi = int(min(lo_hi)), int(max(lo_hi))
        if hi - lo + 1 > MAX_LEAF_VALUES:
            raise NotEnumerable("too_many_groups", "the buckets are too fine: use a wider bucket width")
        name = f"__leaf{len(self.tables)}"
        self.tables[name] = f'(SELECT range AS "{name}" FROM range({lo}, {hi + 1}))'
        self.sizes[name] = hi - lo + 1
        return exp.column(name, quoted=True)

    def literal_leaf(self, node: exp.Case) -> exp.Expr:
        values = [i.args["true"] for i in node.args.get("ifs") or []]
        default = node.args.get("default")
        values.append(default if default is not None else exp.Null())
        name = f"__leaf{len(self.tables)}"
        sql = ", ".join(v.sql(dialect="duckdb") for v in values)
        self.tables[name] = f'(SELECT UNNEST([{sql}]) AS "{name}")'
        self.sizes[name] = len(values)
        return exp.column(name, quoted=True)

    def rewrite(self, node: exp.Expr) -> exp.Expr:
        def enumerable(n: exp.Expr) -> bool:
            return all(
                _column_values(self.view.dataset.columns[c.name]) is not None
                for c in n.find_all(exp.Column)
            )

        def fn(n: exp.Expr) -> exp.Expr:
            if isinstance(n, exp.Column):
                self.column_leaf(n.name)
                return n
            if _is_rounding(n) and not enumerable(n):
                col = _linear_column(n.this)
                if col is None:
                    raise NotEnumerable("group_keys_not_enumerable",
                                        "bucket one column at a time, e.g. FLOOR(col / width) * width")
                return self.range_leaf(n, col)
            if isinstance(n, exp.Case) and not enumerable(n):
                ifs = n.args.get("ifs") or []
                outs = [i.args.get("true") for i in ifs] + [n.args.get("default")]
                if all(o is None or _constant(o) for o in outs):
                    return self.literal_leaf(n)
            return n

        return node.transform(fn)


def _sort_key(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v).__name__), v if v is not None else 0) for v in row)


def enumerate_keys(view: TableView, keys: Sequence[exp.Expr],
                   checks: Sequence[exp.Expr] = ()) -> KeySet:
    """The public key set of ``keys`` over ``view``'s declarations; raise NotEnumerable when impossible.

    ``checks`` (WHERE-side key expressions) are evaluated over their declared values too, to prove they do
    not fail; they need not be enumerable.
    """
    con = connect_locked()
    try:
        for term in checks:
            leaves = _Leaves(view, con, {}, {})
            try:
                expr = leaves.rewrite(term)
            except NotEnumerable:
                continue  # static typing already rules out errors; enumeration is a bonus check
            _run(con, [expr], leaves, distinct=False)
        if not keys:
            return KeySet(rows=((),), types=())
        leaves = _Leaves(view, con, {}, {})
        exprs = [leaves.rewrite(k) for k in keys]
        rows, types = _run(con, exprs, leaves, distinct=True)
        if len(rows) > MAX_GROUPS:
            raise NotEnumerable("too_many_groups", f"the keys span more than {MAX_GROUPS} groups")
        return KeySet(rows=tuple(sorted(rows, key=_sort_key)), types=types)
    finally:
        con.close()


def _run(con: duckdb.DuckDBPyConnection, exprs: list[exp.Expr], leaves: _Leaves,
         distinct: bool) -> tuple[list[tuple[Any, ...]], tuple[str, ...]]:
    product = 1
    for size in leaves.sizes.values():
        product *= size
    if product > MAX_PRODUCT:
        raise NotEnumerable("too_many_groups", "the keys combine too many declared values")
    rels = list(leaves.tables.values()) or ["(SELECT 1)"]
    sel = ", ".join(f'{e.sql(dialect="duckdb")} AS "k{i}"' for i, e in enumerate(exprs))
    sql = f"SELECT {'DISTINCT ' if distinct else ''}{sel} FROM {' CROSS JOIN '.join(rels)}"
    try:
        cur = con.execute(sql)
        rows = cur.fetchall()
        types = tuple(str(d[1]) for d in cur.description or [])
    except (duckdb.Error, ValueError, OverflowError, TypeError):  # engine error, or a value Python cannot hold
        raise NotEnumerable("key_expression", "the expression fails on declared values") from None
    # Released keys must be JSON values: a DECIMAL key is released (and joined) as DOUBLE; a non-NULL date or
    # time key cannot arise from the allow-list (no date columns are groupable, text casts are refused), so one
    # is refused rather than released in a form the release cannot encode.
    out_types = list(types)
    for j, t in enumerate(types):
        column = [r[j] for r in rows]
        if t.startswith("DECIMAL"):
            out_types[j] = "DOUBLE"
            rows = [(*r[:j], float(r[j]) if r[j] is not None else None, *r[j + 1:]) for r in rows]
        elif any(isinstance(v, dt.date | dt.time | dt.timedelta) for v in column):
            raise NotEnumerable("key_expression", "date and time group keys are not supported")
    return [tuple(r) for r in rows], tuple(out_types)

