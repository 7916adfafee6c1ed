"""Select rules of SQL vetting: the statement's shape and the projection (group keys and aggregates).

`SelectRules.statement` takes the parsed root SELECT (`sandbox.sql.vet` checks the text, parses it and
refuses anything but one SELECT) and refuses, anywhere in the tree, windows, subqueries, parameters,
aggregates other than COUNT / SUM / AVG and functions off the allow-list; `SelectRules.select` refuses the
clauses the vetter does not support (joins, CTEs, OFFSET, DISTINCT, QUALIFY, TABLESAMPLE, ...) and assembles
the `VettedQuery`. Every output is a GROUP BY key or a bare aggregate (`SelectRules.outputs`), and at least one
is an aggregate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

from sandbox.sql.rules.aggregates import Aggregate
from sandbox.sql.rules.clauses import ClauseRules, Cond, Output, has_agg, same
from sandbox.sql.rules.expressions import ALLOWED_AGGS, ALLOWED_FUNCS, IDENT, frag
from sandbox.sql.tables import TableView

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



def default_name(node: exp.Expr) -> str:
    """An output name for an unaliased aggregate, derived from its SQL text."""
    text = node.sql(dialect="duckdb", comments=False).lower()
    text = re.sub(r"[^a-z0-9_]+", "_", text).strip("_")
    return text[:63] or "value"



@dataclass
class SelectRules(ClauseRules):
    """The whole vetter: statement-wide refusals, the projection, and the clause rules it inherits."""

    def statement(self, root: exp.Select) -> VettedQuery | None:
        """Vet a parsed SELECT; None after recording violations."""
        for node in root.walk():
            if isinstance(node, exp.Window):
                self.bad("window", "statement", node, "window functions are refused")
            elif isinstance(node, exp.Subquery | exp.Exists) or (
                isinstance(node, exp.Select) and node is not root
            ):
                self.bad("subquery", "statement", node, "subqueries are refused: write a single SELECT")
            elif isinstance(node, exp.Placeholder | exp.Parameter):
                self.bad("parameter", "statement", node, "parameters are refused: write literals")
            elif isinstance(node, exp.AggFunc) and not isinstance(node, ALLOWED_AGGS):
                self.bad("aggregate", "statement", node, "only COUNT, SUM and AVG are released (no MIN/MAX/LIST/...)")
            elif (isinstance(node, exp.Func) and not isinstance(node, (*ALLOWED_FUNCS, exp.Connector))
                  and not isinstance(node.parent, exp.Table)):
                self.bad("function", "statement", node, "this function is not on the allow-list")
        return self.select(root)

    def select(self, sel: exp.Select) -> VettedQuery | None:
        """Refuse unsupported clauses, vet every clause and assemble the `VettedQuery`."""
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


    def outputs(self, sel: exp.Select, keys: list[exp.Expr],
                key_names: list[str | None]) -> list[Output] | None:
        """The select list as outputs (GROUP BY keys or bare aggregates); None when any is refused."""
        outs: list[Output] = []
        ok = True
        for i, it in enumerate(sel.expressions):
            at = f"select[{i}]"
            alias = None
            inner = it
            if isinstance(it, exp.Alias):
                ident = it.args.get("alias")
                if not isinstance(ident, exp.Identifier) or not IDENT.match(ident.this):
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
                outs.append(Output(alias or default_name(inner), "agg", idx))
                continue
            if has_agg(inner):
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
            match = next((j for j, k in enumerate(keys) if same(built[0], k)), None)
            if match is None:
                self.bad("not_grouped", at, inner, "every non-aggregate output must be a GROUP BY key")
                ok = False
                continue
            name = alias or key_names[match] or (inner.name if isinstance(inner, exp.Column) else frag(inner))
            outs.append(Output(name, "key", match))
        return outs if ok else None

