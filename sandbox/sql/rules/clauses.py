"""Clause rules of SQL vetting: FROM, WHERE, GROUP BY, HAVING, ORDER BY and LIMIT.

- FROM names exactly one dataset of the agreement (optionally aliased): no joins, table functions or paths.
- WHERE: comparisons, IN, BETWEEN, IS [NOT] NULL, LIKE (string dimensions), AND / OR / NOT; one side a column
  or key expression, the other a literal of the same kind (no implicit casts, so no cast oracles).
- GROUP BY: key expressions (`sandbox.sql.rules.expressions`), output aliases, positions or ALL.
- HAVING, ORDER BY and LIMIT refer to outputs and are applied after noise, on released values only (`Cond`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlglot import exp

from catalog.columns import Role
from sandbox.sql.rules.aggregates import AggregateRules
from sandbox.sql.rules.expressions import (
    ALLOWED_AGGS,
    ALLOWED_FUNCS,
    COMPARISONS,
    IDENT,
    KIND_OF,
    MAX_AST_NODES,
    ValueKind,
    flip,
    number,
    small_int,
)

MAX_IN_LIST = 200
MAX_LIMIT = 10_000


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




def has_agg(node: exp.Expr) -> bool:
    """True when ``node`` contains an aggregate."""
    return any(isinstance(n, exp.AggFunc) for n in node.walk())


def has_col(node: exp.Expr) -> bool:
    """True when ``node`` reads a column."""
    return any(isinstance(n, exp.Column) for n in node.walk())


def same(a: exp.Expr, b: exp.Expr) -> bool:
    """True when two rebuilt expressions are the same canonical SQL."""
    return a.sql(dialect="duckdb") == b.sql(dialect="duckdb")


def py(v: Any) -> Any:
    """A literal's value as a Python number (int when integral) for HAVING on released values."""
    if isinstance(v, Decimal):
        return int(v) if v == int(v) else float(v)
    return v


@dataclass
class ClauseRules(AggregateRules):
    """The FROM / WHERE / GROUP BY / HAVING / ORDER BY / LIMIT rules on top of the aggregate rules."""

    where_terms: list[exp.Expr] = field(default_factory=list)

    def from_clause(self, frm: exp.From | None) -> None:
        """Resolve FROM to exactly one dataset of the agreement (and its alias), or report why not."""
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
        if not IDENT.match(name) or name.lower() not in self.tables:
            self.bad("unknown_table", "from", t, f"datasets of this agreement: {sorted(self.tables)}")
            return
        self.view = self.tables[name.lower()]
        alias = t.args.get("alias")
        if alias is not None:
            a = alias.this.this if isinstance(alias.this, exp.Identifier) else None
            if a is None or alias.args.get("columns") or not IDENT.match(a):
                self.bad("identifier", "from", t, "table aliases must be plain identifiers")
            else:
                self.alias = a.lower()


    def pred(self, node: exp.Expr, at: str, in_case: bool = False) -> exp.Expr | None:
        """A WHERE (or CASE WHEN) predicate rebuilt from the allow-list; None after reporting violations."""
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
        if isinstance(node, COMPARISONS):
            a, b = node.this, node.expression
            lit_b = self.literal(b, at) if self._is_literal(b) else None
            lit_a = self.literal(a, at) if self._is_literal(a) else None
            if lit_b is None and lit_a is None:
                self.bad("where_operand", at, node, "compare a column or key expression with a literal")
                return None
            if lit_b is None:
                a, b = b, a
                lit_b = lit_a
                node = flip(node)
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
            if isinstance(node, ALLOWED_AGGS):
                self.bad("aggregate", at, node, "aggregates belong in HAVING, not in WHERE")
            elif isinstance(node, ALLOWED_FUNCS):
                self.bad("where_operand", at, node, "compare the expression with a literal")
            return None
        self.bad("syntax_feature", at, node, "this predicate is not supported")
        return None

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
            return self.col_expr(name), KIND_OF[info.kind]
        built = self.key(node, at)
        if built is not None:
            self.where_terms.append(built[0])
        return built


    def group(self, sel: exp.Select) -> tuple[list[exp.Expr], list[str | None]]:
        """The GROUP BY keys (rebuilt, deduplicated) and their output names, if aliased."""
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
                if not has_agg(inner):
                    sources.append((inner, it.alias.lower() if isinstance(it, exp.Alias) else None))
        else:
            for k in ("rollup", "cube", "grouping_sets", "totals"):
                if grp.args.get(k):
                    self.bad("group_by", "group", None, "ROLLUP/CUBE/GROUPING SETS are not supported")
            sources = []
            for e in grp.expressions:
                if isinstance(e, exp.Literal) and not e.is_string:
                    pos = small_int(number(e), MAX_AST_NODES)
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
            if has_agg(src):
                self.bad("group_by", f"group[{i}]", src, "aggregates cannot be grouped on")
                continue
            built = self.key(src, f"group[{i}]")
            if built is None:
                continue
            if any(same(built[0], k) for k in keys):
                continue
            keys.append(built[0])
            names.append(name)
        return keys, names


    def ref(self, node: exp.Expr, at: str, keys: list[exp.Expr],
            outputs: list[Output] | None) -> tuple[str, int] | None:
        """What a HAVING / ORDER BY operand refers to: ``("key", i)`` or ``("agg", i)``; None after reporting."""
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
                if same(built[0], k):
                    return "key", j
        if len(self.violations) == n_before:
            self.bad("having", at, node, "refer to outputs (by name), group keys or aggregates")
        return None

    def having(self, hv: exp.Having | None, keys: list[exp.Expr],
               outputs: list[Output] | None) -> Cond | None:
        """The HAVING predicate as a `Cond` on released values, or None."""
        if hv is None:
            return None
        return self.cond(hv.this, "having", keys, outputs)

    def cond(self, node: exp.Expr, at: str, keys: list[exp.Expr],
             outputs: list[Output] | None) -> Cond | None:
        """One HAVING (sub)predicate as a `Cond`; None after reporting violations."""
        if isinstance(node, exp.Paren):
            return self.cond(node.this, at, keys, outputs)
        if isinstance(node, exp.And | exp.Or):
            a = self.cond(node.this, at, keys, outputs)
            b = self.cond(node.expression, at, keys, outputs)
            return Cond("and" if isinstance(node, exp.And) else "or", (a, b)) if a and b else None
        if isinstance(node, exp.Not):
            a = self.cond(node.this, at, keys, outputs)
            return Cond("not", (a,)) if a else None
        if isinstance(node, COMPARISONS):
            a, b = node.this, node.expression
            n: exp.Expr = node
            if not self._is_literal(b) and self._is_literal(a):
                a, b, n = b, a, flip(node)
            lit = self.literal(b, at) if self._is_literal(b) else None
            if lit is None or lit[1] == "null":
                self.bad("having", at, node, "compare an aggregate or output with a literal")
                return None
            r = self.ref(a, at, keys, outputs)
            return Cond("cmp", (type(n).__name__, r, py(lit[2]))) if r else None
        if isinstance(node, exp.Between):
            lo = self.literal(node.args["low"], at) if self._is_literal(node.args.get("low")) else None
            hi = self.literal(node.args["high"], at) if self._is_literal(node.args.get("high")) else None
            if lo is None or hi is None:
                self.bad("having", at, node, "BETWEEN takes two literals")
                return None
            r = self.ref(node.this, at, keys, outputs)
            return Cond("between", (r, py(lo[2]), py(hi[2]))) if r else None
        if isinstance(node, exp.In) and not node.args.get("query"):
            lits = [self.literal(v, at) if self._is_literal(v) else None for v in node.expressions]
            if not lits or any(x is None for x in lits):
                self.bad("having", at, node, "IN takes a list of literals")
                return None
            r = self.ref(node.this, at, keys, outputs)
            return Cond("in", (r, tuple(py(x[2]) for x in lits if x is not None))) if r else None
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            r = self.ref(node.this, at, keys, outputs)
            return Cond("isnull", (r,)) if r else None
        self.bad("having", at, node, "HAVING supports comparisons, BETWEEN, IN, IS NULL, AND/OR/NOT")
        return None

    def order(self, order: exp.Order | None, keys: list[exp.Expr],
              outputs: list[Output] | None) -> list[tuple[int, bool]]:
        """ORDER BY as (output index, descending) pairs; only outputs can be ordered on."""
        out: list[tuple[int, bool]] = []
        if order is None:
            return out
        for i, o in enumerate(order.expressions):
            at = f"order[{i}]"
            target = o.this if isinstance(o, exp.Ordered) else o
            desc = bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False
            if isinstance(target, exp.Func) and not isinstance(target, exp.AggFunc) and not has_col(target):
                self.bad("order_by", at, target, "ORDER BY output columns only (no RANDOM() or constants)")
                continue
            if outputs is None:
                continue
            if isinstance(target, exp.Literal) and not target.is_string:
                pos = small_int(number(target), MAX_AST_NODES)
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
        """The LIMIT as an integer in 0..MAX_LIMIT, or None (reported when it is anything else)."""
        if lim is None:
            return None
        e = lim.args.get("expression")
        extra = [k for k, v in lim.args.items() if v and k != "expression"]
        n = small_int(number(e), MAX_LIMIT) if isinstance(e, exp.Literal) and not e.is_string else None
        if extra or n is None or n < 0:
            self.bad("limit", "limit", lim, f"LIMIT takes an integer literal in 0..{MAX_LIMIT}")
            return None
        return n


