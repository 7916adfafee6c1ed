"""Expression rules of SQL vetting: literals, columns, allow-listed scalar functions, casts and arithmetic.

`ExpressionRules` rebuilds a scalar expression node by node from an allow-list (the rules listed in
`sandbox.sql.vet`): columns the agreement grants, literals within range, arithmetic by literals, FLOOR / CEIL /
ROUND / TRUNC, ABS, CAST (re-emitted as TRY_CAST), CASE / IF, COALESCE, UPPER / LOWER / SUBSTRING and date parts.
Every operand of arithmetic, unary minus, ABS and the rounding functions is re-emitted in DOUBLE (`double`), so
no integer or decimal overflow can raise on a row.

The module also holds the expression rules that the verification-predicate vetter (`sandbox.verify`) shares with
SQL vetting, each taking the caller's own limits: the literal rule (`read_literal` with a `LiteralRules`), the
non-zero-divisor rule (`nonzero_literal`), the comparison and arithmetic allow-lists (`COMPARISON_SQL`,
`ARITHMETIC_SQL`), the column-kind map (`KIND_OF`) and the rejection error (`rejection`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlglot import exp

from catalog.columns import ColumnInfo, Kind, Role
from catalog.errors import QUERY_REJECTED, DomainError
from sandbox.sql.tables import TableView

#: Syntax nodes a query may have (also the bound on GROUP BY / ORDER BY positions).
MAX_AST_NODES = 800
MAX_LITERAL_CHARS = 256
MAX_ABS_BOUND = 1e15
MIN_ABS_LITERAL = 1e-15
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

ValueKind = Literal["num", "str", "bool", "date", "null"]

CAST_KINDS: dict[Any, ValueKind] = {
    **{t: "num" for t in (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
                          exp.DataType.Type.BIGINT, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT,
                          exp.DataType.Type.DECIMAL)},
    exp.DataType.Type.VARCHAR: "str",
    exp.DataType.Type.TEXT: "str",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.BOOLEAN: "bool",
}
INT_TYPES = (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
             exp.DataType.Type.BIGINT)
ROUNDING = (exp.Floor, exp.Ceil, exp.Round, exp.Trunc)
DATE_PARTS = (exp.Year, exp.Month, exp.Day, exp.Quarter, exp.DayOfWeek, exp.Week)
ALLOWED_AGGS = (exp.Count, exp.Sum, exp.Avg)
ALLOWED_FUNCS = (exp.Count, exp.Sum, exp.Avg, *ROUNDING, exp.Abs, exp.Cast, exp.TryCast, exp.Case, exp.If,
                 exp.Coalesce, exp.Upper, exp.Lower, exp.Substring, exp.Extract, *DATE_PARTS)
#: The six comparisons, with their SQL operator.
COMPARISON_SQL: dict[type[exp.Expr], str] = {
    exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">=",
}
COMPARISONS = tuple(COMPARISON_SQL)
#: The linear arithmetic operators, with their SQL operator.
ARITHMETIC_SQL: dict[type[exp.Expr], str] = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
#: The value kind of a declared column kind.
KIND_OF: dict[Kind, ValueKind] = {
    Kind.INTEGER: "num", Kind.FLOAT: "num", Kind.STRING: "str", Kind.BOOLEAN: "bool",
    Kind.DATE: "date", Kind.TIMESTAMP: "date",
}


def rejection(violations: list[dict[str, str]], what: str = "query") -> DomainError:
    """``QUERY_REJECTED`` listing ``violations`` (each ``{"rule", "at", "hint"}``) for the rejected ``what``."""
    n = len(violations)
    return DomainError(QUERY_REJECTED, f"the {what} was rejected ({n} violation{'s' if n != 1 else ''})",
                       violations)


# ---------------------------------------------------------------------- the literal rule (shared)
@dataclass(frozen=True)
class LiteralRules:
    """A vetter's limits on literals.

    ``max_chars`` bounds string literals. A numeric literal must be 0 or have a magnitude within
    [``min_abs``, ``max_abs``] (no lower bound when ``min_abs`` is None). With ``as_double`` the number is read
    and range-checked as the DOUBLE it will be bound as; otherwise it is read exactly as a decimal.
    """

    max_chars: int
    max_abs: float
    min_abs: float | None = None
    as_double: bool = False


@dataclass(frozen=True)
class LiteralRead:
    """A literal as read by `read_literal`: its ``kind`` and ``value``, or why it was refused (``error``)."""

    kind: Literal["num", "str"]
    value: Decimal | float | str | None
    error: Literal["too_long", "invalid", "range"] | None = None


#: SQL vetting's literals: exact decimals, 0 or within [1e-15, 1e15] in magnitude.
SQL_LITERALS = LiteralRules(max_chars=MAX_LITERAL_CHARS, max_abs=MAX_ABS_BOUND, min_abs=MIN_ABS_LITERAL)


def parse_number(text: str, *, as_double: bool = False) -> Decimal | float | None:
    """The number written as ``text`` (a float when ``as_double``), or None when it is not a number."""
    try:
        return float(text) if as_double else Decimal(text)
    except (InvalidOperation, ValueError):
        return None


def read_literal(node: exp.Literal, rules: LiteralRules) -> LiteralRead:
    """Read a string or numeric literal under ``rules`` (the literal rule both vetters apply)."""
    if node.is_string:
        text = str(node.this)
        if len(text) > rules.max_chars:
            return LiteralRead("str", None, "too_long")
        return LiteralRead("str", text)
    value = parse_number(str(node.this), as_double=rules.as_double)
    if value is None:
        return LiteralRead("num", None, "invalid")
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > rules.max_abs or (
                rules.min_abs is not None and value != 0 and abs(value) < rules.min_abs):
            return LiteralRead("num", None, "range")
        return LiteralRead("num", value)
    if not value.is_finite() or not _decimal_in_range(value, rules):
        return LiteralRead("num", None, "range")
    return LiteralRead("num", value)


def _decimal_in_range(d: Decimal, rules: LiteralRules) -> bool:
    """0, or ``min_abs <= |d| <= max_abs`` (``copy_abs`` uses no context: cannot overflow)."""
    mag = d.copy_abs()
    low = Decimal(repr(rules.min_abs)) if rules.min_abs is not None else Decimal(0)
    return mag == 0 or low <= mag <= Decimal(rules.max_abs)


def nonzero_literal(node: exp.Expr, *, as_double: bool = False) -> bool:
    """True when ``node`` (parentheses aside) is a numeric literal whose value is not zero (the divisor rule)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Literal) or node.is_string:
        return False
    value = parse_number(str(node.this), as_double=as_double)
    return value is not None and value != 0


# ---------------------------------------------------------------------- helpers of SQL vetting
def number(node: exp.Literal) -> Decimal | None:
    """The finite decimal a numeric literal writes, or None."""
    d = parse_number(node.this)
    return d if isinstance(d, Decimal) and d.is_finite() else None


def frag(node: exp.Expr | None) -> str:
    """``node`` as short SQL text for a violation's ``at`` (at most 80 characters)."""
    if node is None:
        return ""
    try:
        text = node.sql(dialect="duckdb", comments=False)
    except Exception:
        text = type(node).__name__
    return text if len(text) <= 80 else text[:77] + "..."


_DOUBLE = exp.DataType.Type.DOUBLE


def num_literal(value: Decimal) -> exp.Expr:
    """``value`` as SQL: integer digits when integral and at most ``MAX_ABS_BOUND``, else a DOUBLE literal.

    (A long decimal literal would be a DECIMAL whose arithmetic can overflow, or not bind at all.)
    """
    mag = value.copy_abs()
    if mag <= Decimal(MAX_ABS_BOUND) and mag == mag.to_integral_value():
        lit: exp.Expr = exp.Literal.number(str(int(mag)))
    else:
        lit = exp.Cast(this=exp.Literal.number(repr(float(mag))), to=exp.DataType.build("DOUBLE"))
    return exp.Neg(this=lit) if value < 0 else lit


def small_int(d: Decimal | None, limit: int) -> int | None:
    """``d`` as an int if it is integral and ``|d| <= limit`` (checked before converting: 1E+999999999)."""
    if d is None or d.copy_abs() > limit or d != d.to_integral_value():
        return None
    return int(d)


def is_double(node: exp.Expr) -> bool:
    """True when ``node`` is DOUBLE by construction (a cast to DOUBLE, or arithmetic built on DOUBLEs)."""
    if isinstance(node, exp.Cast):  # Cast and TryCast
        to = node.args.get("to")
        return isinstance(to, exp.DataType) and to.this is _DOUBLE
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv | exp.Mod):
        return is_double(node.this) and is_double(node.expression)
    if isinstance(node, exp.Paren | exp.Neg | exp.Abs | exp.Floor | exp.Ceil | exp.Round | exp.Trunc):
        return is_double(node.this)
    return False


def double(node: exp.Expr) -> exp.Expr:
    """``node`` typed DOUBLE (casting a number to DOUBLE never fails; DOUBLE arithmetic never raises)."""
    return node if is_double(node) else exp.Cast(this=node, to=exp.DataType.build("DOUBLE"))



def flip(node: exp.Expr) -> exp.Expr:
    """``lit op x`` as ``x op' lit``."""
    flipped: dict[type[exp.Expr], type[exp.Expr]] = {
        exp.LT: exp.GT, exp.GT: exp.LT, exp.LTE: exp.GTE, exp.GTE: exp.LTE, exp.EQ: exp.EQ, exp.NEQ: exp.NEQ,
    }
    return flipped[type(node)](this=node.expression, expression=node.this)


@dataclass
class ExpressionRules:
    """Vetting state and the expression rules: columns, literals and scalar (key) expressions.

    Subclasses add the aggregate and clause rules; `pred` (a predicate inside CASE WHEN) is provided by
    `sandbox.sql.rules.clauses.ClauseRules`.
    """

    tables: Mapping[str, TableView]
    violations: list[dict[str, str]] = field(default_factory=list)
    view: TableView | None = None
    alias: str | None = None
    columns: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ reporting
    def bad(self, rule: str, at: str, node: exp.Expr | None, hint: str) -> None:
        """Record one violation (``rule``, where, a short fragment of ``node``, ``hint``), once."""
        text = frag(node)
        v = {"rule": rule, "at": f"{at}: {text}" if text else at, "hint": hint}
        if v not in self.violations:
            self.violations.append(v)


    def column(self, node: exp.Column, at: str) -> tuple[str, ColumnInfo] | None:
        """Resolve a column reference to (name, granted column info); None after reporting why not."""
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
        if not isinstance(node.this, exp.Identifier) or not IDENT.match(node.this.this):
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
        """The canonical (quoted) reference to column ``name``; records that the query reads it."""
        self.columns.add(name)
        return exp.column(name, quoted=True)


    def literal(self, node: exp.Expr, at: str) -> tuple[exp.Expr, ValueKind, Any] | None:
        """A literal rebuilt canonically as (SQL, kind, value); None when ``node`` is no literal or was refused."""
        if isinstance(node, exp.Paren):
            return self.literal(node.this, at)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            inner = self.literal(node.this, at)
            if inner is None:
                return None
            return num_literal(-inner[2]), "num", -inner[2]
        if isinstance(node, exp.Literal):
            read = read_literal(node, SQL_LITERALS)
            if read.error == "too_long":
                self.bad("literal", at, node, f"string literals are limited to {MAX_LITERAL_CHARS} chars")
                return None
            if read.error is not None:
                self.bad("literal", at, node, "numeric literals must be 0 or between 1e-15 and 1e15 in magnitude")
                return None
            if read.kind == "str":
                return exp.Literal.string(node.this), "str", node.this
            assert isinstance(read.value, Decimal)
            return num_literal(read.value), "num", read.value
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this)), "bool", bool(node.this)
        if isinstance(node, exp.Null):
            return exp.Null(), "null", None
        return None

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
            kind = KIND_OF[info.kind]
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
            return exp.Neg(this=double(inner[0])), "num"
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv | exp.Mod):
            return self.arith(node, at, measure_ok)
        if isinstance(node, ROUNDING):
            return self.rounding(node, at)
        if isinstance(node, exp.Abs):
            inner = self.key(node.this, at, arith=True)
            if inner is None:
                return None
            if inner[1] != "num":
                self.bad("type", at, node, "ABS needs a numeric operand")
                return None
            return exp.Abs(this=double(inner[0])), "num"
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
            if (inner is None or s is None or s[1] != "num" or small_int(s[2], int(MAX_ABS_BOUND)) is None
                    or (length is not None and (n is None or n[1] != "num"
                                                or small_int(n[2], int(MAX_ABS_BOUND)) is None))):
                if inner is not None:
                    self.bad("function", at, node, "SUBSTRING(col, <int literal>[, <int literal>])")
                return None
            if inner[1] != "str":
                self.bad("type", at, node, "SUBSTRING needs a string operand")
                return None
            return exp.Substring(this=inner[0], start=s[0], length=n[0] if n else None), "str"
        if isinstance(node, (*DATE_PARTS, exp.Extract)):
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
            if isinstance(node, ALLOWED_AGGS):
                self.bad("aggregate", at, node, "aggregates are allowed only as select items or in HAVING")
            return None
        if isinstance(node, exp.Func):
            return None  # not on the allow-list: reported once by the statement walk
        if isinstance(node, exp.Column | exp.Star):
            return None
        self.bad("syntax_feature", at, node, "this construct is not supported in a key expression")
        return None

    def arith(self, node: exp.Binary, at: str, measure_ok: bool) -> tuple[exp.Expr, ValueKind] | None:
        """Arithmetic on numeric key expressions, operands in DOUBLE; divisors are non-zero literals."""
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
        lhs, rhs = double(left[0]), double(right[0])
        if isinstance(node, exp.Div):
            return exp.Div(this=lhs, expression=rhs, typed=False, safe=False), "num"
        return type(node)(this=lhs, expression=rhs), "num"

    def rounding(self, node: exp.Func, at: str) -> tuple[exp.Expr, ValueKind] | None:
        """FLOOR / CEIL / ROUND / TRUNC of a numeric expression in DOUBLE (a bucketed measure is allowed)."""
        decimals = node.args.get("decimals")
        extra = [k for k, v in node.args.items() if v and k not in ("this", "decimals")]
        if extra:
            self.bad("function", at, node, "FLOOR/CEIL/ROUND/TRUNC take one argument (ROUND: optional digits)")
            return None
        dec = None
        if decimals is not None:
            lit = self.literal(decimals, at)
            if lit is None or lit[1] != "num" or small_int(lit[2], 12) is None:
                self.bad("function", at, node, "the digits of ROUND/TRUNC must be a small integer literal")
                return None
            dec = lit[0]
        inner = self.key(node.this, at, arith=True, measure_ok=decimals is None)
        if inner is None:
            return None
        if inner[1] != "num":
            self.bad("type", at, node, "rounding needs a numeric operand")
            return None
        out = type(node)(this=double(inner[0]))
        if dec is not None:
            out.set("decimals", dec)
        return out, "num"

    def cast(self, node: exp.Cast, at: str, measure_ok: bool) -> tuple[exp.Expr, ValueKind] | None:
        """A CAST re-emitted as TRY_CAST to an allow-listed type; casts from text to non-text are refused."""
        to = node.args.get("to")
        kind = CAST_KINDS.get(to.this) if isinstance(to, exp.DataType) else None
        if kind is None or not isinstance(to, exp.DataType) or to.expressions:
            self.bad("cast", at, node, "CAST to INTEGER, BIGINT, DOUBLE, DECIMAL, VARCHAR, DATE or BOOLEAN")
            return None
        to_int = to.this in INT_TYPES
        inner = self.key(node.this, at, measure_ok=measure_ok and to_int)
        if inner is None:
            return None
        if inner[1] == "str" and kind != "str":
            self.bad("cast", at, node, "casts from text to numbers, dates or booleans are refused (cast oracles)")
            return None
        return exp.TryCast(this=inner[0], to=exp.DataType.build(to.this)), kind

    def case(self, node: exp.Expr, at: str) -> tuple[exp.Expr, ValueKind] | None:
        """A searched CASE / IF whose THEN / ELSE values share one kind; the conditions are predicates."""
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


    # ------------------------------------------------------------------ predicates (see ClauseRules)
    def pred(self, node: exp.Expr, at: str, in_case: bool = False) -> exp.Expr | None:
        """A predicate rebuilt from the allow-list; provided by the clause rules."""
        raise NotImplementedError

    @staticmethod
    def _is_literal(node: exp.Expr | None) -> bool:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Neg):
            node = node.this
            return isinstance(node, exp.Literal) and not node.is_string
        return isinstance(node, exp.Literal | exp.Boolean | exp.Null)

