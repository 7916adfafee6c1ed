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

The vetter itself raises nothing but ``QUERY_REJECTED`` on any text (`tests/unit/sandbox/sql/test_sql_fuzz.py`).

Layout: this module checks the text (length, nesting, one parseable SELECT) and is the entry point; the rules
live in `sandbox.sql.rules` — `expressions` (literals, columns, allow-listed functions, casts, DOUBLE
arithmetic; also the rules `sandbox.verify` shares), `aggregates` (COUNT / SUM / AVG and their bounds),
`clauses` (FROM / WHERE / GROUP BY / HAVING / ORDER BY / LIMIT) and `select` (statement-wide refusals and the
projection). The result types and limits are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp

from catalog.errors import DomainError
from sandbox.sql.rules.aggregates import MAX_AMPLIFICATION, Aggregate
from sandbox.sql.rules.clauses import MAX_IN_LIST, MAX_LIMIT, Cond, Output
from sandbox.sql.rules.expressions import (
    MAX_ABS_BOUND,
    MAX_AST_NODES,
    MAX_LITERAL_CHARS,
    MIN_ABS_LITERAL,
    rejection,
)
from sandbox.sql.rules.expressions import is_double as _is_double  # noqa: F401 (tests/unit/sandbox/sql/test_sql_fuzz.py)
from sandbox.sql.rules.select import SelectRules, VettedQuery
from sandbox.sql.tables import TableView

__all__ = [
    "MAX_ABS_BOUND",
    "MAX_AMPLIFICATION",
    "MAX_AST_NODES",
    "MAX_IN_LIST",
    "MAX_LIMIT",
    "MAX_LITERAL_CHARS",
    "MAX_NESTING",
    "MAX_SQL_CHARS",
    "MIN_ABS_LITERAL",
    "Aggregate",
    "Cond",
    "Output",
    "VettedQuery",
    "check_length",
    "reject",
    "vet",
]

MAX_SQL_CHARS = 8_000  # the one default of the SQL length limit (``VEILBOX_MAX_SQL_CHARS`` passes it down)
MAX_NESTING = 64


def reject(violations: list[dict[str, str]]) -> DomainError:
    """``QUERY_REJECTED`` listing every violation (each ``{"rule", "at", "hint"}``)."""
    return rejection(violations, "query")


def _too_long_hint(max_sql_chars: int) -> str:
    return f"queries are limited to {max_sql_chars} characters"


def check_length(sql: str, max_sql_chars: int = MAX_SQL_CHARS) -> None:
    """QUERY_REJECTED (rule ``too_long``, as `vet` reports it) when ``sql`` is longer than ``max_sql_chars``."""
    if len(sql) > max_sql_chars:
        raise reject([{"rule": "too_long", "at": "statement", "hint": _too_long_hint(max_sql_chars)}])


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


def _parse(v: SelectRules, sql: str, max_sql_chars: int = MAX_SQL_CHARS) -> exp.Select | None:
    """The one SELECT ``sql`` holds, or None after recording why not (text checked before parsing)."""
    if not sql.strip():
        v.bad("empty", "statement", None, "submit one SELECT statement")
        return None
    if len(sql) > max_sql_chars:
        v.bad("too_long", "statement", None, _too_long_hint(max_sql_chars))
        return None
    if _nesting(sql) > MAX_NESTING:
        v.bad("too_complex", "statement", None, f"parentheses nest deeper than {MAX_NESTING} levels")
        return None
    try:
        parsed = [p for p in sqlglot.parse(sql, read="duckdb") if p is not None]
    except Exception:
        v.bad("syntax", "statement", None, "the text is not valid SQL in the supported subset")
        return None
    if not parsed:
        v.bad("empty", "statement", None, "submit one SELECT statement")
        return None
    if len(parsed) > 1:
        v.bad("multiple_statements", "statement", None, "submit exactly one statement, no ';' chains")
    root = parsed[0]
    nodes = sum(1 for _ in root.walk())
    if nodes > MAX_AST_NODES:
        v.bad("too_complex", "statement", None, f"queries are limited to {MAX_AST_NODES} syntax nodes")
        return None
    if not isinstance(root, exp.Select):
        if isinstance(root, exp.SetOperation):
            v.bad("set_operation", "statement", root, "UNION/INTERSECT/EXCEPT are refused: one SELECT")
        else:
            v.bad("statement", "statement", root, "only SELECT statements are accepted")
        return None
    return root


def vet(sql: str, tables: Mapping[str, TableView], *, max_sql_chars: int = MAX_SQL_CHARS) -> VettedQuery:
    """Vet ``sql`` against the agreement's ``tables``; raise QUERY_REJECTED listing every violation (a text longer
    than ``max_sql_chars`` is refused with rule ``too_long`` before it is parsed)."""
    if not isinstance(sql, str):
        raise reject([{"rule": "syntax", "at": "statement", "hint": "submit the query as text"}])
    v = SelectRules({k.lower(): t for k, t in tables.items()})
    try:
        root = _parse(v, sql, max_sql_chars)
        out = v.statement(root) if root is not None else None
    except RecursionError:
        v.bad("too_complex", "statement", None, "the query nests too deeply")
        out = None
    if out is None or v.violations:
        if not v.violations:  # pragma: no cover - defensive: never return without a reason
            v.bad("syntax", "statement", None, "the query is not supported")
        raise reject(v.violations)
    return out
