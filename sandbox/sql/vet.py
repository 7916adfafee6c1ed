"""SQL vetting: parse one statement with sqlglot (DuckDB dialect) and accept only DP-answerable aggregates.

Guarantee: `vet` either returns a `VettedQuery` — an intermediate form rebuilt node by node from an
allow-list, from which the rewriter emits canonical SQL — or raises ``DomainError("QUERY_REJECTED")`` whose
``details`` list *every* violation found, each ``{"rule", "at", "hint"}``. The submitted text is never run.

Accepted shape (one dataset of the agreement, no joins, no CTEs or subqueries)::

    SELECT <group keys and aggregates> FROM <dataset> [WHERE <predicate>] [GROUP BY <keys> | ALL]
    [HAVING <predicate on aggregates or keys>] [ORDER BY <outputs>] [LIMIT n]

- Aggregates: ``COUNT(*)``, ``COUNT(col)``, ``COUNT(DISTINCT <id>)``, ``SUM(e)``, ``AVG(e)`` where ``e`` is a
  bounded column (measure, or numeric dimension with declared bounds/domain) or ``+ - * /``-by-literal
  combinations of them whose derived bounds stay within ``MAX_AMPLIFICATION`` × the declared ones.
- Group keys: dimension columns or allow-listed scalar functions of them (arithmetic by literals, FLOOR /
  CEIL / ROUND / TRUNC, CAST (re-emitted as TRY_CAST), CASE / IF, COALESCE, UPPER / LOWER / SUBSTRING, date
  parts); a measure may appear only inside a rounding function of a linear form (histogram buckets).
- WHERE: comparisons, IN, BETWEEN, IS [NOT] NULL, LIKE (string dimensions), AND / OR / NOT; one side a
  column or key expression, the other a literal of the same kind (no implicit casts, so no cast oracles).
- HAVING, ORDER BY and LIMIT are applied after noise, on released values only.
- The id column is allowed only in ``COUNT(DISTINCT id)``; ``never_output`` and ``join_key`` columns nowhere.

Failure-freedom (the canonical SQL cannot raise on any row, so a failed run reveals nothing about a row):

- every operand of ``+ - * / // %``, unary minus, ABS and the rounding functions is re-emitted in DOUBLE
  (``CAST(x AS DOUBLE)``: columns, literals, CASE/COALESCE/TRY_CAST results alike), so integer and decimal
  overflow cannot happen (DOUBLE overflows to ±inf, never raises); divisors are non-zero literals;
- numeric literals are 0 or within [``MIN_ABS_LITERAL``, ``MAX_ABS_BOUND``] in magnitude; integral ones are
  emitted as integer digits, others as DOUBLE, so no literal or literal arithmetic fails when DuckDB binds or
  constant-folds it; integer-only arguments (SUBSTRING positions, ROUND digits, GROUP BY/ORDER BY positions,
  LIMIT) must be integral and are range-checked before any conversion;
- every cast is a TRY_CAST (text to numbers, dates or booleans stays refused);
- the rewriter (`sandbox.sql.rewrite`) evaluates every row-level expression — the WHERE predicate, each group
  key, each aggregate argument, with every CASE branch inside them — under DuckDB's ``TRY(...)``, so an error
  left on some row (a function's domain error, an out-of-range SUBSTRING position, a value outside the
  declared domain) becomes NULL for that row only. The rules above make that guard a backstop, not the rule.

The vetter itself raises nothing but ``QUERY_REJECTED`` on any text (`tests/sandbox/sql/test_sql_fuzz.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from catalog.columns import ColumnInfo, Kind, Role
from catalog.errors import QUERY_REJECTED, DomainError
from sandbox.sql.tables import TableView

__all__ = [
    "MAX_AST_NODES",
    "MAX_SQL_CHARS",
    "Aggregate",
    "Cond",
    "Output",
    "VettedQuery",
    "reject",
    "vet",
]

MAX_SQL_CHARS = 8_000
MAX_AST_NODES = 800
MAX_LITERAL_CHARS = 256
MAX_IN_LIST = 200
MAX_LIMIT = 10_000
MAX_NESTING = 64
MAX_AMPLIFICATION = 1_000
MAX_ABS_BOUND = 1e15
MIN_ABS_LITERAL = 1e-15
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

ValueKind = Literal["num", "str", "bool", "date", "null"]
AggFunc = Literal["count_star", "count", "count_units", "sum", "avg"]

_CAST_KINDS: dict[Any, ValueKind] = {
    **{t: "num" for t in (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
                          exp.DataType.Type.BIGINT, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT,
                          exp.DataType.Type.DECIMAL)},
    exp.DataType.Type.VARCHAR: "str",
    exp.DataType.Type.TEXT: "str",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.BOOLEAN: "bool",
}
_INT_TYPES = (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
              exp.DataType.Type.BIGINT)
_ROUNDING = (exp.Floor, exp.Ceil, exp.Round, exp.Trunc)
_LINEAR = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Paren)
_DATE_PARTS = (exp.Year, exp.Month, exp.Day, exp.Quarter, exp.DayOfWeek, exp.Week)
_ALLOWED_AGGS = (exp.Count, exp.Sum, exp.Avg)
_ALLOWED_FUNCS = (exp.Count, exp.Sum, exp.Avg, *_ROUNDING, exp.Abs, exp.Cast, exp.TryCast, exp.Case, exp.If,
                  exp.Coalesce, exp.Upper, exp.Lower, exp.Substring, exp.Extract, *_DATE_PARTS)
_CMP = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
_SELECT_ARGS = {"expressions", "from_", "where", "group", "having", "order", "limit"}
_SELECT_ARG_RULES = {
    "joins": ("join", "joins are refused: query one dataset at a time"),
    "with_": ("cte", "CTEs are refused: write a single SELECT"),
    "offset": ("offset", "OFFSET is not supported; use ORDER BY with LIMIT"),
    "distinct": ("distinct", "SELECT DISTINCT is not supported; use GROUP BY"),
    "qualify": ("window", "window functions and QUALIFY are refused"),
    "windows": ("window", "window functions are refused"),
    "laterals": ("join", "LATERAL is refused"),
    "sample": ("sample", "TABLESAMPLE is refused: sampling is done by the engine"),
}
_KIND_OF: dict[Kind, ValueKind] = {
    Kind.INTEGER: "num", Kind.FLOAT: "num", Kind.STRING: "str", Kind.BOOLEAN: "bool",
    Kind.DATE: "date", Kind.TIMESTAMP: "date",
}


@dataclass(frozen=True)
class Aggregate:
    """One aggregate to compute and noise. ``arg`` is canonical (clamped for SUM/AVG)."""

    func: AggFunc
    arg: exp.Expr | None = None
    bounds: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        return f"{self.func}:{self.arg.sql(dialect='duckdb') if self.arg is not None else ''}"


@dataclass(frozen=True)
class Output:
    """One output column: a group key (``index`` into keys) or an aggregate (into aggregates)."""

    name: str
    kind: Literal["key", "agg"]
    index: int


@dataclass(frozen=True)
class Cond:
    """A HAVING predicate evaluated in Python on released values.

    ``op`` is ``and``/``or``/``not`` (``args`` are Conds), ``cmp`` (``args`` = (operator, ref, literal)),
    ``between`` (ref, low, high), ``in`` (ref, tuple of literals) or ``isnull`` (ref,). A ref is
    ``("key", i)`` or ``("agg", i)``.
    """

    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class VettedQuery:
    """The allow-listed content of a query; everything the rewriter needs, nothing of the submitted text."""

    table: TableView
    keys: tuple[exp.Expr, ...]
    outputs: tuple[Output, ...]
    aggregates: tuple[Aggregate, ...]
    where: exp.Expr | None
    where_terms: tuple[exp.Expr, ...]
    having: Cond | None
    order: tuple[tuple[int, bool], ...]
    limit: int | None
    columns: frozenset[str]


def reject(violations: list[dict[str, str]]) -> DomainError:
    n = len(violations)
    return DomainError(QUERY_REJECTED, f"the query was rejected ({n} violation{'s' if n != 1 else ''})",
                       violations)


def _frag(node: exp.Expr | None) -> str:
    if node is None:
        return ""
    try:
        text = node.sql(dialect="duckdb", comments=False)
    except Exception:
        text = type(node).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _number(node: exp.Literal) -> Decimal | None:
    try:
        d = Decimal(node.this)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


_DOUBLE = exp.DataType.Type.DOUBLE


def _num_literal(value: Decimal) -> exp.Expr:
    """``value`` as SQL: integer digits when integral and at most ``MAX_ABS_BOUND``, else a DOUBLE literal.

    (A long decimal literal would be a DECIMAL whose arithmetic can overflow, or not bind at all.)
    """
    mag = value.copy_abs()
    if mag <= Decimal(MAX_ABS_BOUND) and mag == mag.to_integral_value():
        lit: exp.Expr = exp.Literal.number(str(int(mag)))
    else:
        lit = exp.Cast(this=exp.Literal.number(repr(float(mag))), to=exp.DataType.build("DOUBLE"))
    return exp.Neg(this=lit) if value < 0 else lit


def _literal_in_range(d: Decimal) -> bool:
    """0, or ``MIN_ABS_LITERAL <= |d| <= MAX_ABS_BOUND`` (``copy_abs`` uses no context: cannot overflow)."""
    mag = d.copy_abs()
    return mag == 0 or Decimal(repr(MIN_ABS_LITERAL)) <= mag <= Decimal(MAX_ABS_BOUND)


def _small_int(d: Decimal | None, limit: int) -> int | None:
    """``d`` as an int if it is integral and ``|d| <= limit`` (checked before converting: 1E+999999999)."""
    if d is None or d.copy_abs() > limit or d != d.to_integral_value():
        return None
    return int(d)


def _is_double(node: exp.Expr) -> bool:
    """True when ``node`` is DOUBLE by construction (a cast to DOUBLE, or arithmetic built on DOUBLEs)."""
    if isinstance(node, exp.Cast):  # Cast and TryCast
        to = node.args.get("to")
        return isinstance(to, exp.DataType) and to.this is _DOUBLE
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv | exp.Mod):
        return _is_double(node.this) and _is_double(node.expression)
    if isinstance(node, exp.Paren | exp.Neg | exp.Abs | exp.Floor | exp.Ceil | exp.Round | exp.Trunc):
        return _is_double(node.this)
    return False


def _double(node: exp.Expr) -> exp.Expr:
    """``node`` typed DOUBLE (casting a number to DOUBLE never fails; DOUBLE arithmetic never raises)."""
    return node if _is_double(node) else exp.Cast(this=node, to=exp.DataType.build("DOUBLE"))


@dataclass
class _Vetter:
    tables: Mapping[str, TableView]
    violations: list[dict[str, str]] = field(default_factory=list)
    view: TableView | None = None
    alias: str | None = None
    aggregates: list[Aggregate] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    where_terms: list[exp.Expr] = field(default_factory=list)

    # ------------------------------------------------------------------ reporting
    def bad(self, rule: str, at: str, node: exp.Expr | None, hint: str) -> None:
        frag = _frag(node)
        v = {"rule": rule, "at": f"{at}: {frag}" if frag else at, "hint": hint}
        if v not in self.violations:
            self.violations.append(v)

    # ------------------------------------------------------------------ statement
    def statement(self, sql: str) -> VettedQuery | None:
        if not sql.strip():
            self.bad("empty", "statement", None, "submit one SELECT statement")
            return None
        if len(sql) > MAX_SQL_CHARS:
            self.bad("too_long", "statement", None, f"queries are limited to {MAX_SQL_CHARS} characters")
            return None
        if _nesting(sql) > MAX_NESTING:
            self.bad("too_complex", "statement", None, f"parentheses nest deeper than {MAX_NESTING} levels")
            return None
        try:
            parsed = [p for p in sqlglot.parse(sql, read="duckdb") if p is not None]
        except Exception:
            self.bad("syntax", "statement", None, "the text is not valid SQL in the supported subset")
            return None
        if not parsed:
            self.bad("empty", "statement", None, "submit one SELECT statement")
            return None
        if len(parsed) > 1:
            self.bad("multiple_statements", "statement", None, "submit exactly one statement, no ';' chains")
        root = parsed[0]
        nodes = sum(1 for _ in root.walk())
        if nodes > MAX_AST_NODES:
            self.bad("too_complex", "statement", None, f"queries are limited to {MAX_AST_NODES} syntax nodes")
            return None
        if not isinstance(root, exp.Select):
            if isinstance(root, exp.SetOperation):
                self.bad("set_operation", "statement", root, "UNION/INTERSECT/EXCEPT are refused: one SELECT")
            else:
                self.bad("statement", "statement", root, "only SELECT statements are accepted")
            return None
        for node in root.walk():
            if isinstance(node, exp.Window):
                self.bad("window", "statement", node, "window functions are refused")
            elif isinstance(node, exp.Subquery | exp.Exists) or (
                isinstance(node, exp.Select) and node is not root
            ):
                self.bad("subquery", "statement", node, "subqueries are refused: write a single SELECT")
            elif isinstance(node, exp.Placeholder | exp.Parameter):
                self.bad("parameter", "statement", node, "parameters are refused: write literals")
            elif isinstance(node, exp.AggFunc) and not isinstance(node, _ALLOWED_AGGS):
                self.bad("aggregate", "statement", node, "only COUNT, SUM and AVG are released (no MIN/MAX/LIST/...)")
            elif (isinstance(node, exp.Func) and not isinstance(node, (*_ALLOWED_FUNCS, exp.Connector))
                  and not isinstance(node.parent, exp.Table)):
                self.bad("function", "statement", node, "this function is not on the allow-list")
        return self.select(root)

    def select(self, sel: exp.Select) -> VettedQuery | None:
        for name, value in sel.args.items():
            if name in _SELECT_ARGS or not value:
                continue
            rule, hint = _SELECT_ARG_RULES.get(name, ("syntax_feature", "this SELECT clause is not supported"))
            self.bad(rule, name.rstrip("_"), None, hint)
        self.from_clause(sel.args.get("from_"))
        if self.view is None:
            return None
        where = None
        if sel.args.get("where") is not None:
            where = self.pred(sel.args["where"].this, "where")
        keys, key_names = self.group(sel)
        outputs = self.outputs(sel, keys, key_names)
        having = self.having(sel.args.get("having"), keys, outputs)
        order = self.order(sel.args.get("order"), keys, outputs)
        limit = self.limit(sel.args.get("limit"))
        if outputs is not None and not any(o.kind == "agg" for o in outputs):
            self.bad("no_aggregate", "select", None, "select at least one COUNT, SUM or AVG")
        if self.violations or outputs is None:
            return None
        return VettedQuery(
            table=self.view,
            keys=tuple(keys),
            outputs=tuple(outputs),
            aggregates=tuple(self.aggregates),
            where=where,
            where_terms=tuple(self.where_terms),
            having=having,
            order=tuple(order),
            limit=limit,
            columns=frozenset(self.columns),
        )

    # ------------------------------------------------------------------ FROM
    def from_clause(self, frm: exp.From | None) -> None:
        if frm is None:
            self.bad("from", "from", None, "read exactly one dataset of the agreement: FROM <dataset>")
            return
        t = frm.this
        if not isinstance(t, exp.Table) or not isinstance(t.this, exp.Identifier):
            if isinstance(t, exp.Table) and isinstance(t.this, exp.Func):
                self.bad("table_function", "from", t, "table functions are refused: FROM <dataset>")
            else:
                self.bad("from", "from", t, "read exactly one dataset of the agreement: FROM <dataset>")
            return
        extra = [k for k, v in t.args.items() if v and k not in ("this", "alias")]
        name = t.this.this
        if extra:
            self.bad("unknown_table", "from", t, "name a dataset of the agreement, without schema or options")
            return
        if "/" in name or "." in name or "\\" in name:
            self.bad("file_path", "from", t, "file paths are refused: name a dataset of the agreement")
            return
        if not _IDENT.match(name) or name.lower() not in self.tables:
            self.bad("unknown_table", "from", t, f"datasets of this agreement: {sorted(self.tables)}")
            return
        self.view = self.tables[name.lower()]
        alias = t.args.get("alias")
        if alias is not None:
            a = alias.this.this if isinstance(alias.this, exp.Identifier) else None
            if a is None or alias.args.get("columns") or not _IDENT.match(a):
                self.bad("identifier", "from", t, "table aliases must be plain identifiers")
            else:
                self.alias = a.lower()

    # ------------------------------------------------------------------ columns
    def column(self, node: exp.Column, at: str) -> tuple[str, ColumnInfo] | None:
        assert self.view is not None
        if node.args.get("db") or node.args.get("catalog"):
            self.bad("unknown_column", at, node, "qualify columns with the dataset name or alias only")
            return None
        tbl = node.args.get("table")
        if tbl is not None:
            tname = tbl.this.lower() if isinstance(tbl, exp.Identifier) else None
            if tname not in (self.view.name, self.alias):
                self.bad("unknown_column", at, node, "qualify columns with the dataset name or alias only")
                return None
        if isinstance(node.this, exp.Star):
            self.bad("star", at, node, "name the columns; * is refused")
            return None
        if not isinstance(node.this, exp.Identifier) or not _IDENT.match(node.this.this):
            self.bad("identifier", at, node, "column names are ASCII identifiers")
            return None
        name = node.this.this.lower()
        declared = self.view.dataset.columns.get(name)
        if declared is not None and declared.role is Role.NEVER_OUTPUT:
            self.bad("never_output", at, node, f"{name} is never_output: it may not appear anywhere")
            return None
        if declared is not None and declared.role is Role.JOIN_KEY:
            self.bad("join_key", at, node, f"{name} is a join key: joins are refused and keys are not output")
            return None
        info = self.view.info(name)
        if info is None:
            self.bad("unknown_column", at, node, "use columns the agreement grants on this dataset")
            return None
        return name, info

    def col_expr(self, name: str) -> exp.Column:
        self.columns.add(name)
        return exp.column(name, quoted=True)

    # ------------------------------------------------------------------ literals
    def literal(self, node: exp.Expr, at: str) -> tuple[exp.Expr, ValueKind, Any] | None:
        if isinstance(node, exp.Paren):
            return self.literal(node.this, at)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            inner = self.literal(node.this, at)
            if inner is None:
                return None
            return _num_literal(-inner[2]), "num", -inner[2]
        if isinstance(node, exp.Literal):
            if node.is_string:
                if len(node.this) > MAX_LITERAL_CHARS:
                    self.bad("literal", at, node, f"string literals are limited to {MAX_LITERAL_CHARS} chars")
                    return None
                return exp.Literal.string(node.this), "str", node.this
            d = _number(node)
            if d is None or not _literal_in_range(d):
                self.bad("literal", at, node, "numeric literals must be 0 or between 1e-15 and 1e15 in magnitude")
                return None
            return _num_literal(d), "num", d
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this)), "bool", bool(node.this)
        if isinstance(node, exp.Null):
            return exp.Null(), "null", None
        return None

    # ------------------------------------------------------------------ key expressions
    def key(self, node: exp.Expr, at: str, *, arith: bool = False,
            measure_ok: bool = False) -> tuple[exp.Expr, ValueKind] | None:
        """Rebuild a scalar expression over dimension columns; None after reporting violations."""
        lit = self.literal(node, at)
        if lit is not None:
            return lit[0], lit[1]
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
            return None  # literal() reported it
        if isinstance(node, exp.Column):
            res = self.column(node, at)
            if res is None:
                return None
            name, info = res
            if info.role is Role.ID:
                self.bad("id_column", at, node, f"{name} is the privacy unit: only COUNT(DISTINCT {name})")
                return None
            if info.role is Role.MEASURE and not measure_ok:
                self.bad("group_on_measure", at, node,
                         f"{name} is a measure: aggregate it, or bucket it, e.g. FLOOR({name} / 100) * 100")
                return None
            kind = _KIND_OF[info.kind]
            col: exp.Expr = self.col_expr(name)
            if arith and kind == "num":
                col = exp.Cast(this=col, to=exp.DataType.build("DOUBLE"))
            return col, kind
        if isinstance(node, exp.Paren):
            inner = self.key(node.this, at, arith=arith, measure_ok=measure_ok)
            return (exp.Paren(this=inner[0]), inner[1]) if inner else None
        if isinstance(node, exp.Neg):
            inner = self.key(node.this, at, arith=True, measure_ok=measure_ok)
            if inner is None:
                return None
            if inner[1] != "num":
                self.bad("type", at, node, "arithmetic needs numeric operands")
                return None
            return exp.Neg(this=_double(inner[0])), "num"
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv | exp.Mod):
            return self.arith(node, at, measure_ok)
        if isinstance(node, _ROUNDING):
            return self.rounding(node, at)
        if isinstance(node, exp.Abs):
            inner = self.key(node.this, at, arith=True)
            if inner is None:
                return None
            if inner[1] != "num":
                self.bad("type", at, node, "ABS needs a numeric operand")
                return None
            return exp.Abs(this=_double(inner[0])), "num"
        if isinstance(node, exp.Cast | exp.TryCast):
            return self.cast(node, at, measure_ok)
        if isinstance(node, exp.Case | exp.If):
            return self.case(node, at)
        if isinstance(node, exp.Coalesce):
            parts = [node.this, *node.expressions]
            built = [self.key(p, at) for p in parts]
            if any(b is None for b in built):
                return None
            kinds = {b[1] for b in built if b is not None and b[1] != "null"}
            if len(kinds) > 1:
                self.bad("type", at, node, "COALESCE arguments must have one kind")
                return None
            vals = [b[0] for b in built if b is not None]
            return exp.Coalesce(this=vals[0], expressions=vals[1:]), (kinds.pop() if kinds else "null")
        if isinstance(node, exp.Upper | exp.Lower):
            inner = self.key(node.this, at)
            if inner is None:
                return None
            if inner[1] != "str":
                self.bad("type", at, node, "UPPER/LOWER need a string operand")
                return None
            return type(node)(this=inner[0]), "str"
        if isinstance(node, exp.Substring):
            inner = self.key(node.this, at)
            start = node.args.get("start")
            length = node.args.get("length")
            s = self.literal(start, at) if start is not None else None
            n = self.literal(length, at) if length is not None else None
            if (inner is None or s is None or s[1] != "num" or _small_int(s[2], int(MAX_ABS_BOUND)) is None
                    or (length is not None and (n is None or n[1] != "num"
                                                or _small_int(n[2], int(MAX_ABS_BOUND)) is None))):
                if inner is not None:
                    self.bad("function", at, node, "SUBSTRING(col, <int literal>[, <int literal>])")
                return None
            if inner[1] != "str":
                self.bad("type", at, node, "SUBSTRING needs a string operand")
                return None
            return exp.Substring(this=inner[0], start=s[0], length=n[0] if n else None), "str"
        if isinstance(node, (*_DATE_PARTS, exp.Extract)):
            target = node.expression if isinstance(node, exp.Extract) else node.this
            inner = self.key(target, at)
            if inner is None:
                return None
            if inner[1] != "date":
                self.bad("type", at, node, "date parts need a date or timestamp column")
                return None
            if isinstance(node, exp.Extract):
                unit = node.this.name.upper() if isinstance(node.this, exp.Var | exp.Identifier) else ""
                if unit not in ("YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "DOW", "DAYOFWEEK", "HOUR"):
                    self.bad("function", at, node, "EXTRACT(YEAR|QUARTER|MONTH|WEEK|DAY|DOW|HOUR FROM col)")
                    return None
                return exp.Extract(this=exp.var(unit), expression=inner[0]), "num"
            return type(node)(this=inner[0]), "num"
        if isinstance(node, exp.AggFunc):
            if isinstance(node, _ALLOWED_AGGS):
                self.bad("aggregate", at, node, "aggregates are allowed only as select items or in HAVING")
            return None
        if isinstance(node, exp.Func):
            return None  # not on the allow-list: reported once by the statement walk
        if isinstance(node, exp.Column | exp.Star):
            return None
        self.bad("syntax_feature", at, node, "this construct is not supported in a key expression")
        return None

    def arith(self, node: exp.Binary, at: str, measure_ok: bool) -> tuple[exp.Expr, ValueKind] | None:
        linear = isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div)
        left = self.key(node.this, at, arith=True, measure_ok=measure_ok and linear)
        if isinstance(node, exp.Div | exp.IntDiv | exp.Mod):
            lit = self.literal(node.expression, at)
            if lit is None or lit[1] != "num" or lit[2] == 0:
                self.bad("divisor", at, node, "divide only by a non-zero numeric literal")
                return None
            right: tuple[exp.Expr, ValueKind] | None = (lit[0], "num")
        else:
            right = self.key(node.expression, at, arith=True, measure_ok=measure_ok and linear)
        if left is None or right is None:
            return None
        if left[1] != "num" or right[1] != "num":
            self.bad("type", at, node, "arithmetic needs numeric operands")
            return None
        lhs, rhs = _double(left[0]), _double(right[0])
        if isinstance(node, exp.Div):
            return exp.Div(this=lhs, expression=rhs, typed=False, safe=False), "num"
        return type(node)(this=lhs, expression=rhs), "num"

    def rounding(self, node: exp.Func, at: str) -> tuple[exp.Expr, ValueKind] | None:
        decimals = node.args.get("decimals")
        extra = [k for k, v in node.args.items() if v and k not in ("this", "decimals")]
        if extra:
            self.bad("function", at, node, "FLOOR/CEIL/ROUND/TRUNC take one argument (ROUND: optional digits)")
            return None
        dec = None
        if decimals is not None:
            lit = self.literal(decimals, at)
            if lit is None or lit[1] != "num" or _small_int(lit[2], 12) is None:
                self.bad("function", at, node, "the digits of ROUND/TRUNC must be a small integer literal")
                return None
            dec = lit[0]
        inner = self.key(node.this, at, arith=True, measure_ok=decimals is None)
        if inner is None:
            return None
        if inner[1] != "num":
            self.bad("type", at, node, "rounding needs a numeric operand")
            return None
        out = type(node)(this=_double(inner[0]))
        if dec is not None:
            out.set("decimals", dec)
        return out, "num"

    def cast(self, node: exp.Cast, at: str, measure_ok: bool) -> tuple[exp.Expr, ValueKind] | None:
        to = node.args.get("to")
        kind = _CAST_KINDS.get(to.this) if isinstance(to, exp.DataType) else None
        if kind is None or not isinstance(to, exp.DataType) or to.expressions:
            self.bad("cast", at, node, "CAST to INTEGER, BIGINT, DOUBLE, DECIMAL, VARCHAR, DATE or BOOLEAN")
            return None
        to_int = to.this in _INT_TYPES
        inner = self.key(node.this, at, measure_ok=measure_ok and to_int)
        if inner is None:
            return None
        if inner[1] == "str" and kind != "str":
            self.bad("cast", at, node, "casts from text to numbers, dates or booleans are refused (cast oracles)")
            return None
        return exp.TryCast(this=inner[0], to=exp.DataType.build(to.this)), kind

    def case(self, node: exp.Expr, at: str) -> tuple[exp.Expr, ValueKind] | None:
        if isinstance(node, exp.If):
            ifs = [(node.this, node.args.get("true"))]
            default = node.args.get("false")
            operand = None
        else:
            ifs = [(i.this, i.args.get("true")) for i in node.args.get("ifs") or []]
            default = node.args.get("default")
            operand = node.this
        if operand is not None:
            self.bad("syntax_feature", at, node, "write CASE WHEN <predicate> THEN ... (searched CASE)")
            return None
        kinds: set[ValueKind] = set()
        built_ifs: list[exp.Expr] = []
        ok = True
        for cond, value in ifs:
            c = self.pred(cond, at, in_case=True)
            v = self.key(value, at) if value is not None else None
            if c is None or v is None:
                ok = False
                continue
            kinds.add(v[1])
            built_ifs.append(exp.If(this=c, true=v[0]))
        d = self.key(default, at) if default is not None else None
        if default is not None and d is None:
            ok = False
        if not ok:
            return None
        if d is not None:
            kinds.add(d[1])
        kinds.discard("null")
        if len(kinds) > 1:
            self.bad("type", at, node, "all THEN/ELSE values of a CASE must have one kind")
            return None
        return exp.Case(ifs=built_ifs, default=d[0] if d else None), (kinds.pop() if kinds else "null")

    # ------------------------------------------------------------------ predicates
    def pred(self, node: exp.Expr, at: str, in_case: bool = False) -> exp.Expr | None:
        if isinstance(node, exp.Paren):
            inner = self.pred(node.this, at, in_case)
            return exp.Paren(this=inner) if inner is not None else None
        if isinstance(node, exp.And | exp.Or):
            left = self.pred(node.this, at, in_case)
            right = self.pred(node.expression, at, in_case)
            if left is None or right is None:
                return None
            return type(node)(this=left, expression=right)
        if isinstance(node, exp.Not):
            inner = self.pred(node.this, at, in_case)
            return exp.Not(this=inner) if inner is not None else None
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        if isinstance(node, _CMP):
            a, b = node.this, node.expression
            lit_b = self.literal(b, at) if self._is_literal(b) else None
            lit_a = self.literal(a, at) if self._is_literal(a) else None
            if lit_b is None and lit_a is None:
                self.bad("where_operand", at, node, "compare a column or key expression with a literal")
                return None
            if lit_b is None:
                a, b = b, a
                lit_b = lit_a
                node = _flip(node)
            assert lit_b is not None
            side = self.operand(a, at)
            if side is None:
                return None
            if lit_b[1] == "null" or lit_b[1] != side[1]:
                self.bad("literal_type", at, node, "the literal must have the column's kind (use IS NULL for nulls)")
                return None
            return type(node)(this=side[0], expression=lit_b[0])
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                self.bad("subquery", at, node, "IN takes a list of literals")
                return None
            side = self.operand(node.this, at)
            vals = node.expressions
            if not vals or len(vals) > MAX_IN_LIST:
                self.bad("in_list", at, node, f"IN takes 1..{MAX_IN_LIST} literals")
                return None
            lits = [self.literal(v, at) if self._is_literal(v) else None for v in vals]
            if any(x is None for x in lits):
                self.bad("where_operand", at, node, "IN takes a list of literals")
                return None
            if side is None:
                return None
            if any(x is not None and x[1] != side[1] for x in lits):
                self.bad("literal_type", at, node, "IN literals must have the column's kind")
                return None
            return exp.In(this=side[0], expressions=[x[0] for x in lits if x is not None])
        if isinstance(node, exp.Between):
            side = self.operand(node.this, at)
            lo = self.literal(node.args["low"], at) if self._is_literal(node.args.get("low")) else None
            hi = self.literal(node.args["high"], at) if self._is_literal(node.args.get("high")) else None
            if lo is None or hi is None:
                self.bad("where_operand", at, node, "BETWEEN takes two literals")
                return None
            if side is None:
                return None
            if lo[1] != side[1] or hi[1] != side[1]:
                self.bad("literal_type", at, node, "BETWEEN literals must have the column's kind")
                return None
            return exp.Between(this=side[0], low=lo[0], high=hi[0])
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                self.bad("where_operand", at, node, "only IS [NOT] NULL is supported")
                return None
            side = self.operand(node.this, at)
            return exp.Is(this=side[0], expression=exp.Null()) if side is not None else None
        if isinstance(node, exp.Like | exp.ILike):
            if node.args.get("escape"):
                self.bad("where_operand", at, node, "LIKE ... ESCAPE is not supported")
                return None
            side = self.operand(node.this, at)
            pat = self.literal(node.expression, at) if self._is_literal(node.expression) else None
            if pat is None or pat[1] != "str":
                self.bad("where_operand", at, node, "LIKE takes a string literal pattern")
                return None
            if side is None:
                return None
            if side[1] != "str":
                self.bad("literal_type", at, node, "LIKE applies to string columns")
                return None
            return type(node)(this=side[0], expression=pat[0])
        if isinstance(node, exp.Column):
            side = self.operand(node, at)
            if side is None:
                return None
            if side[1] != "bool":
                self.bad("where_operand", at, node, "a bare column is a predicate only if it is boolean")
                return None
            return side[0]
        if isinstance(node, exp.Func):
            if isinstance(node, _ALLOWED_AGGS):
                self.bad("aggregate", at, node, "aggregates belong in HAVING, not in WHERE")
            elif isinstance(node, _ALLOWED_FUNCS):
                self.bad("where_operand", at, node, "compare the expression with a literal")
            return None
        self.bad("syntax_feature", at, node, "this predicate is not supported")
        return None

    @staticmethod
    def _is_literal(node: exp.Expr | None) -> bool:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Neg):
            node = node.this
            return isinstance(node, exp.Literal) and not node.is_string
        return isinstance(node, exp.Literal | exp.Boolean | exp.Null)

    def operand(self, node: exp.Expr, at: str) -> tuple[exp.Expr, ValueKind] | None:
        """The non-literal side of a predicate: a bare measure column or a key expression."""
        bare = node
        while isinstance(bare, exp.Paren):
            bare = bare.this
        if isinstance(bare, exp.Column):
            res = self.column(bare, at)
            if res is None:
                return None
            name, info = res
            if info.role is Role.ID:
                self.bad("id_column", at, bare, f"{name} is the privacy unit: it may not be filtered on")
                return None
            return self.col_expr(name), _KIND_OF[info.kind]
        built = self.key(node, at)
        if built is not None:
            self.where_terms.append(built[0])
        return built

    # ------------------------------------------------------------------ aggregates
    def aggregate(self, node: exp.Expr, at: str) -> int | None:
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
            clamped = exp.func(
                "LEAST",
                exp.func("GREATEST", exp.Cast(this=self.col_expr(name), to=exp.DataType.build("DOUBLE")),
                         _num_literal(Decimal(repr(lo)))),
                _num_literal(Decimal(repr(hi))),
            )
            return clamped, lo, hi, max(abs(lo), abs(hi))
        if isinstance(node, exp.Neg):
            inner = self._interval(node.this, at)
            if inner is None:
                return None
            return exp.Neg(this=_double(inner[0])), -inner[2], -inner[1], inner[3]
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
            le, re_ = _double(le), _double(re_)
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

    # ------------------------------------------------------------------ GROUP BY / select list
    def group(self, sel: exp.Select) -> tuple[list[exp.Expr], list[str | None]]:
        keys: list[exp.Expr] = []
        names: list[str | None] = []
        grp = sel.args.get("group")
        if grp is None:
            return keys, names
        items = list(sel.expressions)
        aliases = {}
        for it in items:
            if isinstance(it, exp.Alias) and isinstance(it.args.get("alias"), exp.Identifier):
                aliases[it.alias.lower()] = it.this
        if grp.args.get("all"):
            sources: list[tuple[exp.Expr, str | None]] = []
            for it in items:
                inner = it.this if isinstance(it, exp.Alias) else it
                if not _has_agg(inner):
                    sources.append((inner, it.alias.lower() if isinstance(it, exp.Alias) else None))
        else:
            for k in ("rollup", "cube", "grouping_sets", "totals"):
                if grp.args.get(k):
                    self.bad("group_by", "group", None, "ROLLUP/CUBE/GROUPING SETS are not supported")
            sources = []
            for e in grp.expressions:
                if isinstance(e, exp.Literal) and not e.is_string:
                    pos = _small_int(_number(e), MAX_AST_NODES)
                    idx = pos - 1 if pos is not None else -1
                    if not 0 <= idx < len(items):
                        self.bad("group_by", "group", e, "GROUP BY position is out of range")
                        continue
                    it = items[idx]
                    sources.append((it.this if isinstance(it, exp.Alias) else it,
                                    it.alias.lower() if isinstance(it, exp.Alias) else None))
                elif (isinstance(e, exp.Column) and not e.args.get("table") and isinstance(e.this, exp.Identifier)
                      and e.name.lower() in aliases and self.view is not None
                      and self.view.dataset.columns.get(e.name.lower()) is None):
                    sources.append((aliases[e.name.lower()], e.name.lower()))
                elif isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)):
                    self.bad("group_by", "group", e, "ROLLUP/CUBE/GROUPING SETS are not supported")
                else:
                    sources.append((e, None))
        for i, (src, name) in enumerate(sources):
            if _has_agg(src):
                self.bad("group_by", f"group[{i}]", src, "aggregates cannot be grouped on")
                continue
            built = self.key(src, f"group[{i}]")
            if built is None:
                continue
            if any(_same(built[0], k) for k in keys):
                continue
            keys.append(built[0])
            names.append(name)
        return keys, names

    def outputs(self, sel: exp.Select, keys: list[exp.Expr],
                key_names: list[str | None]) -> list[Output] | None:
        outs: list[Output] = []
        ok = True
        for i, it in enumerate(sel.expressions):
            at = f"select[{i}]"
            alias = None
            inner = it
            if isinstance(it, exp.Alias):
                ident = it.args.get("alias")
                if not isinstance(ident, exp.Identifier) or not _IDENT.match(ident.this):
                    self.bad("identifier", at, it, "output names are ASCII identifiers")
                    ok = False
                    continue
                alias = ident.this
                inner = it.this
            if isinstance(inner, exp.Star):
                self.bad("star", at, inner, "name the columns and aggregates; * is refused")
                ok = False
                continue
            idx = self.aggregate(inner, at)
            if idx is not None:
                if idx < 0:
                    ok = False
                    continue
                outs.append(Output(alias or _default_name(inner), "agg", idx))
                continue
            if _has_agg(inner):
                self.bad("aggregate_expression", at, inner,
                         "select aggregates bare (e.g. SUM(x) AS s) and combine released values client-side")
                ok = False
                continue
            n_before = len(self.violations)
            built = self.key(inner, at)
            if built is None:
                if len(self.violations) == n_before:
                    self.bad("not_grouped", at, inner, "select group keys and aggregates only")
                ok = False
                continue
            match = next((j for j, k in enumerate(keys) if _same(built[0], k)), None)
            if match is None:
                self.bad("not_grouped", at, inner, "every non-aggregate output must be a GROUP BY key")
                ok = False
                continue
            name = alias or key_names[match] or (inner.name if isinstance(inner, exp.Column) else _frag(inner))
            outs.append(Output(name, "key", match))
        return outs if ok else None

    # ------------------------------------------------------------------ HAVING / ORDER BY / LIMIT
    def ref(self, node: exp.Expr, at: str, keys: list[exp.Expr],
            outputs: list[Output] | None) -> tuple[str, int] | None:
        inner = node.this if isinstance(node, exp.Paren) else node
        if isinstance(inner, exp.Column) and not inner.args.get("table") and outputs is not None:
            for o in outputs:
                if o.name.lower() == inner.name.lower():
                    return o.kind, o.index
        if isinstance(inner, exp.AggFunc | exp.Filter):
            idx = self.aggregate(inner, at)
            return ("agg", idx) if idx is not None and idx >= 0 else None
        n_before = len(self.violations)
        built = self.key(inner, at)
        if built is not None:
            for j, k in enumerate(keys):
                if _same(built[0], k):
                    return "key", j
        if len(self.violations) == n_before:
            self.bad("having", at, node, "refer to outputs (by name), group keys or aggregates")
        return None

    def having(self, hv: exp.Having | None, keys: list[exp.Expr],
               outputs: list[Output] | None) -> Cond | None:
        if hv is None:
            return None
        return self.cond(hv.this, "having", keys, outputs)

    def cond(self, node: exp.Expr, at: str, keys: list[exp.Expr],
             outputs: list[Output] | None) -> Cond | None:
        if isinstance(node, exp.Paren):
            return self.cond(node.this, at, keys, outputs)
        if isinstance(node, exp.And | exp.Or):
            a = self.cond(node.this, at, keys, outputs)
            b = self.cond(node.expression, at, keys, outputs)
            return Cond("and" if isinstance(node, exp.And) else "or", (a, b)) if a and b else None
        if isinstance(node, exp.Not):
            a = self.cond(node.this, at, keys, outputs)
            return Cond("not", (a,)) if a else None
        if isinstance(node, _CMP):
            a, b = node.this, node.expression
            n: exp.Expr = node
            if not self._is_literal(b) and self._is_literal(a):
                a, b, n = b, a, _flip(node)
            lit = self.literal(b, at) if self._is_literal(b) else None
            if lit is None or lit[1] == "null":
                self.bad("having", at, node, "compare an aggregate or output with a literal")
                return None
            r = self.ref(a, at, keys, outputs)
            return Cond("cmp", (type(n).__name__, r, _py(lit[2]))) if r else None
        if isinstance(node, exp.Between):
            lo = self.literal(node.args["low"], at) if self._is_literal(node.args.get("low")) else None
            hi = self.literal(node.args["high"], at) if self._is_literal(node.args.get("high")) else None
            if lo is None or hi is None:
                self.bad("having", at, node, "BETWEEN takes two literals")
                return None
            r = self.ref(node.this, at, keys, outputs)
            return Cond("between", (r, _py(lo[2]), _py(hi[2]))) if r else None
        if isinstance(node, exp.In) and not node.args.get("query"):
            lits = [self.literal(v, at) if self._is_literal(v) else None for v in node.expressions]
            if not lits or any(x is None for x in lits):
                self.bad("having", at, node, "IN takes a list of literals")
                return None
            r = self.ref(node.this, at, keys, outputs)
            return Cond("in", (r, tuple(_py(x[2]) for x in lits if x is not None))) if r else None
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            r = self.ref(node.this, at, keys, outputs)
            return Cond("isnull", (r,)) if r else None
        self.bad("having", at, node, "HAVING supports comparisons, BETWEEN, IN, IS NULL, AND/OR/NOT")
        return None

    def order(self, order: exp.Order | None, keys: list[exp.Expr],
              outputs: list[Output] | None) -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        if order is None:
            return out
        for i, o in enumerate(order.expressions):
            at = f"order[{i}]"
            target = o.this if isinstance(o, exp.Ordered) else o
            desc = bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False
            if isinstance(target, exp.Func) and not isinstance(target, exp.AggFunc) and not _has_col(target):
                self.bad("order_by", at, target, "ORDER BY output columns only (no RANDOM() or constants)")
                continue
            if outputs is None:
                continue
            if isinstance(target, exp.Literal) and not target.is_string:
                pos = _small_int(_number(target), MAX_AST_NODES)
                if pos is None or not 1 <= pos <= len(outputs):
                    self.bad("order_by", at, target, "ORDER BY position is out of range")
                else:
                    out.append((pos - 1, desc))
                continue
            if isinstance(target, exp.Column) and not target.args.get("table"):
                j = next((k for k, oo in enumerate(outputs) if oo.name.lower() == target.name.lower()), None)
                if j is not None:
                    out.append((j, desc))
                    continue
            n_before = len(self.violations)
            r = self.ref(target, at, keys, outputs)
            if r is None:
                if len(self.violations) == n_before:
                    self.bad("order_by", at, target, "ORDER BY output columns only")
                continue
            j = next((k for k, oo in enumerate(outputs) if (oo.kind, oo.index) == r), None)
            if j is None:
                self.bad("order_by", at, target, "ORDER BY output columns only")
                continue
            out.append((j, desc))
        return out

    def limit(self, lim: exp.Limit | None) -> int | None:
        if lim is None:
            return None
        e = lim.args.get("expression")
        extra = [k for k, v in lim.args.items() if v and k != "expression"]
        n = _small_int(_number(e), MAX_LIMIT) if isinstance(e, exp.Literal) and not e.is_string else None
        if extra or n is None or n < 0:
            self.bad("limit", "limit", lim, f"LIMIT takes an integer literal in 0..{MAX_LIMIT}")
            return None
        return n


def _nesting(sql: str) -> int:
    """Deepest parenthesis nesting outside string literals and quoted identifiers (checked before parsing)."""
    depth = best = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
            best = max(best, depth)
        elif ch == ")":
            depth -= 1
    return best


def _flip(node: exp.Expr) -> exp.Expr:
    """``lit op x`` as ``x op' lit``."""
    flipped: dict[type[exp.Expr], type[exp.Expr]] = {
        exp.LT: exp.GT, exp.GT: exp.LT, exp.LTE: exp.GTE, exp.GTE: exp.LTE, exp.EQ: exp.EQ, exp.NEQ: exp.NEQ,
    }
    return flipped[type(node)](this=node.expression, expression=node.this)


def _has_agg(node: exp.Expr) -> bool:
    return any(isinstance(n, exp.AggFunc) for n in node.walk())


def _has_col(node: exp.Expr) -> bool:
    return any(isinstance(n, exp.Column) for n in node.walk())


def _same(a: exp.Expr, b: exp.Expr) -> bool:
    return a.sql(dialect="duckdb") == b.sql(dialect="duckdb")


def _py(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == int(v) else float(v)
    return v


def _default_name(node: exp.Expr) -> str:
    text = node.sql(dialect="duckdb", comments=False).lower()
    text = re.sub(r"[^a-z0-9_]+", "_", text).strip("_")
    return text[:63] or "value"


def vet(sql: str, tables: Mapping[str, TableView]) -> VettedQuery:
    """Vet ``sql`` against the agreement's ``tables``; raise QUERY_REJECTED listing every violation."""
    if not isinstance(sql, str):
        raise reject([{"rule": "syntax", "at": "statement", "hint": "submit the query as text"}])
    v = _Vetter({k.lower(): t for k, t in tables.items()})
    try:
        out = v.statement(sql)
    except RecursionError:
        v.bad("too_complex", "statement", None, "the query nests too deeply")
        out = None
    if out is None or v.violations:
        if not v.violations:  # pragma: no cover - defensive: never return without a reason
            v.bad("syntax", "statement", None, "the query is not supported")
        raise reject(v.violations)
    return out
