"""Vetting: every public attack refused, our own attacks refused with the right rule, every violation listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import QUERY_REJECTED, DomainError
from sandbox import prepare
from sandbox.sql.vet import MAX_SQL_CHARS, vet

ATTACKS = Path(__file__).resolve().parents[3] / "data" / "attacks"


def load_corpus(name: str) -> list[dict[str, Any]]:
    """The attack corpus ``name`` (tests/data/attacks: the public corpora, copied into the repository)."""
    return [json.loads(line) for line in (ATTACKS / name).read_text().splitlines() if line.strip()]


ENGINE_WORDS = ("duckdb", "sqlglot", "Traceback", "Binder Error", "Catalog Error", "Parser Error",
                "Unexpected token", "Line 1", "Invalid expression")


def rejected(sql: str, tables: dict) -> DomainError:
    with pytest.raises(DomainError) as info:
        prepare(sql, tables, epsilon=1.0, delta=0, min_group_units=20)
    err = info.value
    assert err.code == QUERY_REJECTED
    assert err.details, "a rejection must list its violations"
    for d in err.details:
        assert set(d) == {"rule", "at", "hint"}
        assert all(isinstance(v, str) and v for v in d.values())
    blob = err.message + json.dumps([d["hint"] for d in err.details])  # "at" echoes the analyst's own SQL
    assert not any(w in blob for w in ENGINE_WORDS), blob
    return err


def rules(err: DomainError) -> set[str]:
    return {d["rule"] for d in err.details}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "attack" in metafunc.fixturenames:
        corpus = load_corpus("sql.jsonl")
        metafunc.parametrize("attack", corpus, ids=[c["name"] for c in corpus])


def test_public_corpus_is_refused(attack: dict, tables: dict) -> None:
    assert attack["expect"] == "rejected"
    rejected(attack["sql"], tables)


OWN_ATTACKS = [
    ("quoted_never_output", 'SELECT COUNT(*) FROM "tax_income" WHERE "ID_NUMBER" = \'x\'', "never_output"),
    ("case_games_id", "select count(*) from TAX_INCOME where Person_Id = 'P0000001'", "id_column"),
    ("union_of_aggregates", "SELECT COUNT(*) FROM tax_income UNION SELECT COUNT(*) FROM tax_income",
     "set_operation"),
    ("nested_aggregates", "SELECT SUM(COUNT(*)) FROM tax_income", "unbounded_expression"),
    ("having_max_leak", "SELECT district, COUNT(*) FROM tax_income GROUP BY district "
     "HAVING MAX(monthly_income) > 100000", "aggregate"),
    ("having_raw_measure", "SELECT district, COUNT(*) FROM tax_income GROUP BY district "
     "HAVING monthly_income > 5", "group_on_measure"),
    ("division_by_zero_oracle", "SELECT COUNT(*) FROM tax_income WHERE age / 0 = 1", "divisor"),
    ("division_by_column", "SELECT FLOOR(age / age) AS x, COUNT(*) FROM tax_income GROUP BY x", "divisor"),
    ("offset_game", "SELECT district, COUNT(*) FROM tax_income GROUP BY district LIMIT 1 OFFSET 3", "offset"),
    ("limit_subquery", "SELECT COUNT(*) FROM tax_income LIMIT (SELECT COUNT(*) FROM tax_income)", "subquery"),
    ("system_table", "SELECT COUNT(*) FROM duckdb_tables", "unknown_table"),
    ("qualified_system", "SELECT COUNT(*) FROM system.main.tax_income", "unknown_table"),
    ("information_schema_columns", "SELECT COUNT(*) FROM information_schema.columns", "unknown_table"),
    ("pg_catalog", "SELECT COUNT(*) FROM pg_catalog.pg_class", "unknown_table"),
    ("semicolon_chain", "SELECT COUNT(*) FROM tax_income WHERE district = 'a'; DROP TABLE tax_income; --'",
     "multiple_statements"),
    ("homoglyph_column", "SELECT COUNT(*) FROM tax_income WHERE \"dіstrict\" = 'Binhu'", "identifier"),
    ("homoglyph_quoted_table", 'SELECT COUNT(*) FROM "tax_іncome"', "unknown_table"),
    ("json_function", "SELECT COUNT(*) FROM tax_income WHERE json_extract(district, '$.a') = '1'", "function"),
    ("list_literal", "SELECT [monthly_income] AS l, COUNT(*) FROM tax_income GROUP BY l", "function"),
    ("struct_literal", "SELECT {'a': age} AS s, COUNT(*) FROM tax_income GROUP BY s", "function"),
    ("lambda", "SELECT COUNT(*) FROM tax_income WHERE list_filter([age], x -> x > 3) = [4]", "function"),
    ("generate_series", "SELECT COUNT(*) FROM generate_series(1, 10)", "table_function"),
    ("range_cross_join", "SELECT COUNT(*) FROM tax_income, range(10)", "join"),
    ("recursive_cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
     "cte"),
    ("count_distinct_dimension", "SELECT COUNT(DISTINCT district) FROM tax_income", "count_distinct"),
    ("sum_of_id", "SELECT SUM(person_id) FROM tax_income", "id_column"),
    ("count_never_output", "SELECT COUNT(id_number) FROM tax_income", "never_output"),
    ("column_vs_column", "SELECT COUNT(*) FROM tax_income WHERE age > social_insurance_months", "where_operand"),
    ("implicit_cast_oracle", "SELECT COUNT(*) FROM tax_income WHERE district = 5", "literal_type"),
    ("tablesample", "SELECT COUNT(*) FROM tax_income USING SAMPLE 10", "sample"),
    ("parameter", "SELECT COUNT(*) FROM tax_income WHERE age = $1", "parameter"),
    ("aggregate_arithmetic", "SELECT COUNT(*) * 2 FROM tax_income", "aggregate_expression"),
    ("filter_clause", "SELECT COUNT(*) FILTER (WHERE age > 30) FROM tax_income", "aggregate"),
    ("two_column_bucket", "SELECT FLOOR(monthly_income + tax_paid) AS b, COUNT(*) FROM tax_income GROUP BY b",
     "group_keys_not_enumerable"),
    ("too_many_groups", "SELECT FLOOR(monthly_income) AS b, COUNT(*) FROM tax_income GROUP BY b",
     "too_many_groups"),
    ("getenv_in_where", "SELECT COUNT(*) FROM tax_income WHERE getenv('HOME') = '/root'", "function"),
    ("current_setting_in_key", "SELECT current_setting('threads') AS s, COUNT(*) FROM tax_income GROUP BY s",
     "function"),
    ("call_pragma", "CALL pragma_version()", "statement"),
    ("star_exclude", "SELECT * EXCLUDE (person_id) FROM tax_income", "star"),
    ("describe", "DESCRIBE tax_income", "statement"),
    ("deep_nesting", "SELECT COUNT(*) FROM tax_income WHERE " + "(" * 2000 + "age = 1" + ")" * 2000,
     "too_complex"),
    ("text_to_number_cast", "SELECT COUNT(*) FROM tax_income WHERE CAST(district AS INTEGER) = 1", "cast"),
    ("exists_subquery", "SELECT COUNT(*) FROM tax_income WHERE EXISTS (SELECT 1 FROM tax_income)", "subquery"),
    ("order_by_random", "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district ORDER BY random()",
     "order_by"),
    ("group_on_bare_measure_int", "SELECT social_insurance_months, COUNT(*) FROM tax_income GROUP BY 1",
     "group_on_measure"),
    ("sum_distinct", "SELECT SUM(DISTINCT monthly_income) FROM tax_income", "aggregate_argument"),
    ("regexp_on_dimension", "SELECT COUNT(*) FROM tax_income WHERE regexp_matches(district, '^B')", "function"),
    ("string_agg_in_having", "SELECT district, COUNT(*) FROM tax_income GROUP BY district "
     "HAVING string_agg(district, ',') = 'x'", "aggregate"),
    ("like_escape", "SELECT COUNT(*) FROM tax_income WHERE district LIKE 'a!%' ESCAPE '!'", "syntax_feature"),
    ("long_literal", "SELECT COUNT(*) FROM tax_income WHERE district = '" + "x" * 300 + "'", "literal"),
    ("no_from", "SELECT 1", "from"),
]


@pytest.mark.parametrize(("name", "sql", "rule"), OWN_ATTACKS, ids=[a[0] for a in OWN_ATTACKS])
def test_own_attacks_are_refused(name: str, sql: str, rule: str, tables: dict) -> None:
    err = rejected(sql, tables)
    assert rule in rules(err), err.details


def test_every_violation_is_reported(tables: dict) -> None:
    err = rejected(
        "SELECT person_id, MAX(monthly_income), id_number FROM tax_income WHERE employer_id = 'E000001' "
        "ORDER BY RANDOM() LIMIT 5 OFFSET 1", tables)
    assert {"id_column", "aggregate", "never_output", "join_key", "order_by", "offset"} <= rules(err)
    assert len(err.details) >= 6


def test_joins_are_refused(two_tables: dict) -> None:
    err = rejected("SELECT COUNT(*) FROM tax_income t JOIN enterprise_registry e ON t.employer_id = e.employer_id",
                   two_tables)
    assert "join" in rules(err)


def test_syntax_errors_carry_no_parser_internals(tables: dict) -> None:
    err = rejected("SELEC COUNT(* FROM", tables)
    assert rules(err) == {"syntax"}
    assert err.details[0]["at"] == "statement"


def test_length_limit_is_checked_before_parsing(tables: dict) -> None:
    err = rejected("SELECT COUNT(*) FROM tax_income WHERE " + " OR ".join(["age = 1"] * 2000), tables)
    assert rules(err) == {"too_long"}
    assert MAX_SQL_CHARS < 20_000


ACCEPTED = [
    "SELECT COUNT(*) FROM tax_income WHERE district = 'a;b'",
    'SELECT "District", COUNT(*) AS n FROM "TAX_INCOME" t GROUP BY t."District"',
    "SELECT district, COUNT(DISTINCT person_id) AS units FROM tax_income GROUP BY ALL",
    "SELECT CASE WHEN age < 30 THEN 'young' WHEN age < 60 THEN 'middle' ELSE 'senior' END AS g, "
    "AVG(monthly_income) AS a FROM tax_income GROUP BY 1 ORDER BY a DESC",
    "SELECT CASE WHEN monthly_income > 10000 THEN 'high' ELSE 'low' END AS g, COUNT(*) FROM tax_income GROUP BY g",
    "SELECT FLOOR(social_insurance_months / 12) AS years, SUM(tax_paid) FROM tax_income GROUP BY years",
    "SELECT COUNT(*) FROM tax_income WHERE NOT (age BETWEEN 20 AND 30) AND industry LIKE 'fin%' "
    "AND gender IS NOT NULL AND monthly_income >= 5000.5",
    "SELECT SUM(monthly_income / 12 + tax_paid) AS s FROM tax_income",
    "SELECT upper(substring(district, 1, 3)) AS d, COUNT(*) FROM tax_income GROUP BY d LIMIT 3",
    "SELECT TRY_CAST(age AS VARCHAR) AS a, COUNT(*) FROM tax_income WHERE age < 20 GROUP BY a",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_supported_queries_are_vetted(sql: str, tables: dict) -> None:
    plan = prepare(sql, tables, epsilon=1.0, delta=0, min_group_units=10)
    assert plan.cost[0] == 1
    assert "$salt" in plan.canonical_sql


def test_casts_are_rewritten_to_try_cast(tables: dict) -> None:
    q = vet("SELECT CAST(age AS VARCHAR) AS a, COUNT(*) FROM tax_income GROUP BY a", tables)
    assert q.keys[0].sql(dialect="duckdb").startswith("TRY_CAST(")


def test_canonical_sql_is_rebuilt_not_copied(tables: dict) -> None:
    plan = prepare("SELECT /* hint: leak */ district, COUNT(*) AS n -- trailing\nFROM tax_income t "
                   "WHERE t.age >= 18 GROUP BY district;", tables, epsilon=1.0)
    sql = plan.canonical_sql
    assert "leak" not in sql and "trailing" not in sql and "--" not in sql and "/*" not in sql
    assert '"age" >= 18' in sql and "t." not in sql
    assert sql.count("SELECT") == 3  # bounded rows, groups, keys join: nothing else


def test_unknown_dataset_and_empty_agreement(tables: dict) -> None:
    assert "unknown_table" in rules(rejected("SELECT COUNT(*) FROM enterprise_registry", tables))
    assert "unknown_table" in rules(rejected("SELECT COUNT(*) FROM tax_income", {}))


def test_arithmetic_is_emitted_in_double(tables: dict) -> None:
    """Literal × literal and TRY_CAST(… AS BIGINT) × literal cannot overflow: every operand is DOUBLE."""
    q = vet("SELECT COUNT(*) FROM tax_income WHERE CASE WHEN age > 30 THEN 999999999999999 * 999999999999999 "
            "ELSE TRY_CAST(FLOOR(monthly_income) AS BIGINT) * 999999999999999 END = 0", tables)
    assert q.where is not None
    where = q.where.sql(dialect="duckdb")
    assert "CAST(999999999999999 AS DOUBLE) * CAST(999999999999999 AS DOUBLE)" in where
    assert "CAST(TRY_CAST(FLOOR(CAST(\"monthly_income\" AS DOUBLE)) AS BIGINT) AS DOUBLE) * " in where
    neg = vet("SELECT COUNT(*) FROM tax_income WHERE ABS(-TRY_CAST(age AS BIGINT)) > 1", tables)
    assert "ABS(-CAST(TRY_CAST(\"age\" AS BIGINT) AS DOUBLE))" in neg.where.sql(dialect="duckdb")


@pytest.mark.parametrize("lit", ["1e-400", "1e-16", "0.0000000000000001", "1000000000000001", "1E+999999999",
                                 "-1E+999999999"])
def test_literals_outside_the_range_are_refused(lit: str, tables: dict) -> None:
    assert "literal" in rules(rejected(f"SELECT SUM(tax_paid / {lit}) AS s FROM tax_income", tables))
    assert "literal" in rules(rejected(f"SELECT COUNT(*) FROM tax_income WHERE age * {lit} > 1", tables))


@pytest.mark.parametrize("sql", [
    "SELECT district, COUNT(*) FROM tax_income GROUP BY 1E+999999999",
    "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district ORDER BY 1E+999999999",
    "SELECT COUNT(*) FROM tax_income LIMIT 1E+999999999",
    "SELECT SUBSTRING(district, 1.5) AS d, COUNT(*) FROM tax_income GROUP BY d",
])
def test_integer_arguments_are_range_checked_before_conversion(sql: str, tables: dict) -> None:
    rejected(sql, tables)  # returns at once (no billion-digit integer) and only with QUERY_REJECTED


def test_a_key_that_fails_on_declared_values_is_refused(tables: dict) -> None:
    """SUBSTRING beyond DuckDB's range on a declared district: refused from declarations, before any data."""
    err = rejected("SELECT COUNT(*) FROM tax_income WHERE SUBSTRING(district, 999999999999999) = 'x'", tables)
    assert rules(err) == {"key_expression"}


def test_canonical_sql_evaluates_rows_under_try(tables: dict) -> None:
    plan = prepare("SELECT CASE WHEN monthly_income > 5000 THEN 'high' ELSE 'low' END AS g, AVG(tax_paid) AS a "
                   "FROM tax_income WHERE CASE WHEN monthly_income > 1 THEN SUBSTRING(district, 999999999999999) "
                   "ELSE district END = 'x' OR age > 20 GROUP BY g", tables, epsilon=1, min_group_units=5)
    for sql in (plan.canonical.sql, plan.canonical.unbounded_sql):
        assert " WHERE TRY(CASE WHEN " in sql
        assert "TRY(CAST(CASE WHEN " in sql and " AS VARCHAR)) AS \"__k0\"" in sql
        # one measure column ingest clamped: neither clamped again nor guarded (its values are finite, bounded)
        assert 'SUM(CAST(ROUND((CAST("tax_paid" AS DOUBLE)) / ' in sql and 'COUNT(CAST("tax_paid" AS DOUBLE))' in sql
