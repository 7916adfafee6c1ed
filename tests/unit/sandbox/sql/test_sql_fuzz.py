"""The vetter on any text: `vet` and `prepare` raise nothing but ``QUERY_REJECTED`` (a catalog DomainError).

Three sources of input, all Hypothesis-driven:

- the corpora (tests/data/attacks/*.jsonl, the oracle templates, accepted queries) mutated token by token:
  insertions from a pool of hostile tokens (literals past every cap and below every floor, ``1E+999999999``,
  INT64 edges, quotes, comments, casts, unlisted functions), deletions, duplications and splices;
- queries drawn from the accepted grammar (`sqlgen.Grammar`), then mutated *as sqlglot trees*: a node is
  replaced by an extreme literal or wrapped in a function, and the tree is rendered back to SQL;
- the regressions found so far, pinned as examples.

For every accepted query the structural guarantees of failure-freedom are checked on the result too
(`test_generated_plans_guard_every_row_level_expression`): each row-level expression of the canonical SQL sits
under ``TRY``, and every arithmetic operand of the vetted form is DOUBLE.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from catalog.errors import QUERY_REJECTED, DomainError
from sandbox import prepare
from sandbox.sql.vet import _is_double, vet
from tests.unit.sandbox.sql.sqlgen import Grammar, Target

ATTACKS = Path(__file__).resolve().parents[3] / "data" / "attacks"
TARGET = Target()
GRAMMAR = Grammar(TARGET, depth=3)


def _corpus() -> list[str]:
    out: list[str] = []
    for name in ("sql.jsonl", "sql_allowed.jsonl"):
        out += [json.loads(line)["sql"] for line in (ATTACKS / name).read_text().splitlines() if line.strip()]
    fill = {"cell": TARGET.cell, "cond": f"{TARGET.cell} AND monthly_income > 4753", "k": 1940642970730123,
            "B": "4753"}
    for name in ("oracles.jsonl", "oracles_own.jsonl"):
        for line in (ATTACKS / name).read_text().splitlines():
            if line.strip():
                t = json.loads(line)
                sql = f"SELECT {t.get('select', 'COUNT(*) AS n')} FROM tax_income"
                for clause, key in (("WHERE", "where"), ("GROUP BY", "group"), ("HAVING", "having")):
                    if key in t:
                        sql += f" {clause} {t[key]}"
                out.append(sql.format(**fill))
    return out


CORPUS = _corpus()
HOSTILE = (
    "(", ")", ",", "*", "+", "-", "/", "//", "%", "'", '"', ";", "--", "/*", "*/", "::", "[", "]", "{", "}",
    "1e-400", "1e-16", "1E+999999999", "-1E+999999999", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "999999999999999", "1e308", "1e309", "0", "-0", "0.0", "NaN", "'inf'", "1e15",
    "1000000000000001", "0.000000000000001", ".", "e", "1_000", "0x1F", "NULL", "TRUE", "FALSE",
    "CASE WHEN", "THEN", "ELSE", "END", "AND", "OR", "NOT", "IS", "IN", "BETWEEN", "LIKE", "AS",
    "CAST(", "TRY_CAST(", "TRY(", "AS BIGINT)", "AS DATE)", "AS DECIMAL(38, 37))", "AS HUGEINT)", "SUM(", "AVG(",
    "COUNT(", "COUNT(DISTINCT", "FLOOR(", "ROUND(", "ABS(", "SUBSTRING(", "COALESCE(", "IF(", "EXTRACT(",
    "YEAR(", "LOG10(", "LN(", "SQRT(", "POW(", "EXP(", "error(", "GROUP BY", "GROUP BY ALL", "HAVING",
    "ORDER BY", "LIMIT", "OFFSET", "UNION", "SELECT", "FROM", "WHERE", "tax_income", "person_id", "id_number",
    "employer_id", "monthly_income", "age", "district", "has_default", "DATE '2026-02-30'", "INTERVAL 1 DAY",
    "$1", "?", "\x00", "é", "𝟙", "\u202e", " " * 3,
)


@st.composite
def mutated_corpus(draw: st.DrawFn) -> str:
    sql = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        n = len(sql)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 30)))
        op = draw(st.sampled_from(("insert", "delete", "replace", "duplicate", "splice")))
        if op == "insert":
            sql = f"{sql[:i]} {draw(st.sampled_from(HOSTILE))} {sql[i:]}"
        elif op == "delete":
            sql = sql[:i] + sql[j:]
        elif op == "replace":
            sql = f"{sql[:i]} {draw(st.sampled_from(HOSTILE))} {sql[j:]}"
        elif op == "duplicate":
            sql = sql[:j] + sql[i:j] + sql[j:]
        else:
            other = draw(st.sampled_from(CORPUS))
            k = draw(st.integers(0, len(other)))
            sql = sql[:i] + other[k:k + 40] + sql[j:]
    return sql


_WRAPPERS = ("LN", "SQRT", "POW", "EXP", "ABS", "FLOOR", "ROUND", "TRY_CAST_BIGINT", "CAST_DATE", "NEG", "TRY",
             "LOG10", "MOD0", "INTDIV_TINY")
_EXTREMES = ("9223372036854775807", "1E+999999999", "1e-400", "1e308", "-999999999999999", "0", "1e-15",
             "4611686018427387904")


def _wrap(node: exp.Expr, how: str) -> exp.Expr:
    if how == "TRY_CAST_BIGINT":
        return exp.TryCast(this=node, to=exp.DataType.build("BIGINT"))
    if how == "CAST_DATE":
        return exp.Cast(this=node, to=exp.DataType.build("DATE"))
    if how == "NEG":
        return exp.Neg(this=node)
    if how == "MOD0":
        return exp.Mod(this=node, expression=exp.Literal.number("0"))
    if how == "INTDIV_TINY":
        return exp.IntDiv(this=node, expression=exp.Literal.number("1e-400"))
    if how == "POW":
        return exp.func("POW", node, exp.Literal.number("1e308"))
    return exp.func(how, node)


@st.composite
def mutated_tree(draw: st.DrawFn) -> str:
    sql = draw(GRAMMAR.query())
    tree = sqlglot.parse_one(sql, read="duckdb")
    nodes = [n for n in tree.walk() if isinstance(n, exp.Column | exp.Literal | exp.Binary | exp.Func)
             and n is not tree]
    for _ in range(draw(st.integers(1, 3))):
        if not nodes:
            break
        node = draw(st.sampled_from(nodes))
        if draw(st.booleans()):
            node.replace(exp.Literal.number(draw(st.sampled_from(_EXTREMES))))
        else:
            node.replace(_wrap(node.copy(), draw(st.sampled_from(_WRAPPERS))))
        nodes = [n for n in tree.walk() if isinstance(n, exp.Column | exp.Literal | exp.Binary | exp.Func)
                 and n is not tree]
    return tree.sql(dialect="duckdb")


def only_rejections(sql: str, tables: dict[str, Any]) -> None:
    """``vet`` and ``prepare`` either succeed or raise QUERY_REJECTED; nothing else escapes."""
    for call in (lambda: vet(sql, tables), lambda: prepare(sql, tables, epsilon=1, min_group_units=3)):
        try:
            call()
        except DomainError as e:
            assert e.code == QUERY_REJECTED, (sql, e.code)
            assert e.details and all(set(d) == {"rule", "at", "hint"} for d in e.details)


FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REGRESSIONS = [
    "SELECT SUM(tax_paid / 1e-400) AS s FROM tax_income",
    "SELECT district, COUNT(*) FROM tax_income GROUP BY 1E+999999999",
    "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district ORDER BY 1E+999999999",
    "SELECT COUNT(*) FROM tax_income LIMIT 1E+999999999",
    "SELECT COUNT(*) FROM tax_income WHERE age = -1E+999999999",
    "SELECT SUM(tax_paid * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999"
    " * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999"
    " * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999"
    " * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 0) AS s FROM tax_income",
    "SELECT FLOOR(monthly_income * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * "
    "999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * "
    "999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * "
    "999999999999999 * 999999999999999 * 999999999999999 * 999999999999999 * 999999999999999) AS b, COUNT(*) "
    "FROM tax_income GROUP BY b",
    "SELECT FLOOR(monthly_income * 0) AS b, COUNT(*) FROM tax_income GROUP BY b",
    "SELECT SUBSTRING(district, 999999999999999) AS d, COUNT(*) FROM tax_income GROUP BY d",
    "SELECT SUBSTRING(district, 1.5) AS d, COUNT(*) FROM tax_income GROUP BY d",
    "SELECT ROUND(age, 1.5) AS d, COUNT(*) FROM tax_income GROUP BY d",
    "SELECT CASE WHEN age > 1 THEN NULL END AS k, COUNT(*) FROM tax_income GROUP BY k",
]


@pytest.mark.parametrize("sql", REGRESSIONS)
def test_regressions_raise_only_rejections(sql: str, tables: dict) -> None:
    only_rejections(sql, tables)


@FUZZ
@given(sql=mutated_corpus())
def test_mutated_corpus_raises_only_rejections(sql: str, tables: dict) -> None:
    only_rejections(sql, tables)


@FUZZ
@given(sql=mutated_tree())
@example(sql="SELECT SUM(x / 1e-400) FROM tax_income")
def test_mutated_trees_raise_only_rejections(sql: str, tables: dict) -> None:
    only_rejections(sql, tables)


def _row_level_guarded(canonical: str) -> None:
    """Every row-level expression of the canonical SQL is under TRY (or is a bare column / COUNT(*))."""
    tree = sqlglot.parse_one(canonical, read="duckdb")
    rows = next(c for c in tree.find_all(exp.CTE) if c.alias == "__rows").this
    where = rows.args.get("where")
    if where is not None:
        assert isinstance(where.this, exp.Try), where.sql()
    groups = next((c for c in tree.find_all(exp.CTE) if c.alias == "__groups"), None)
    select = groups.this if groups is not None else tree
    for item in select.expressions:
        inner = item.this if isinstance(item, exp.Alias) else item
        if isinstance(inner, exp.Alias | exp.Literal):
            continue
        if groups is not None and item.alias.startswith("__k"):  # a bare column is already of the key's type
            assert isinstance(inner, exp.Try | exp.Column), inner.sql()
            continue
        for agg in inner.find_all(exp.AggFunc):
            arg = agg.this
            if isinstance(arg, exp.Distinct):
                arg = arg.expressions[0]
            assert isinstance(arg, exp.Star | exp.Column | exp.Try) or _one_column_cast(arg), agg.sql()


def _one_column_cast(arg: exp.Expr) -> bool:
    """An unguarded aggregate argument: one column, cast, clamped and put on the sum grid, no other arithmetic."""
    cols = list(arg.find_all(exp.Column))
    return (isinstance(arg, exp.Cast) and len(cols) == 1
            and not any(isinstance(n, exp.Add | exp.Sub | exp.Mul)
                        or (isinstance(n, exp.Neg) and any(isinstance(c, exp.Column) for c in n.walk()))
                        or (isinstance(n, exp.Func)
                            and not isinstance(n, exp.Cast | exp.Round | exp.Least | exp.Greatest))
                        for n in arg.walk())
            and all(isinstance(d.expression, exp.Literal | exp.Cast) for d in arg.find_all(exp.Div)))


def _arithmetic_is_double(node: exp.Expr) -> None:
    for n in node.walk():
        if isinstance(n, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.IntDiv | exp.Mod):
            assert _is_double(n.this) and _is_double(n.expression), n.sql()
        elif isinstance(n, exp.Neg | exp.Abs | exp.Floor | exp.Ceil | exp.Round | exp.Trunc):
            assert _is_double(n.this) or (isinstance(n, exp.Neg) and isinstance(n.this, exp.Literal)), n.sql()


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sql=GRAMMAR.query())
def test_generated_plans_guard_every_row_level_expression(sql: str, tables: dict) -> None:
    try:
        plan = prepare(sql, tables, epsilon=1, min_group_units=3)
    except DomainError as e:
        assert e.code == QUERY_REJECTED
        return
    _row_level_guarded(plan.canonical.sql)
    _row_level_guarded(plan.canonical.unbounded_sql)
    q = plan.query
    for node in (q.where, *q.keys, *(a.arg for a in q.aggregates)):
        if node is not None:
            _arithmetic_is_double(node)
