"""What the canonical SQL leaves out when declarations or ingest prove it changes nothing (`sandbox.sql.rewrite`).

The exact (pre-noise) vectors must be those of the full form: every declared key answered, absent ones as
zeros, keys outside the declared domain and NULL keys dropped, and measures within their declared bounds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.registry import Dataset
from sandbox import TableView, prepare
from sandbox.sql.service import QueryPlan, _vectors

QUERIES = [
    "SELECT district, COUNT(*) AS n FROM tax_income WHERE industry = 'finance' GROUP BY district",
    "SELECT district, gender, AVG(monthly_income) AS a FROM tax_income GROUP BY district, gender",
    "SELECT SUM(tax_paid) AS t FROM tax_income WHERE age BETWEEN 30 AND 39",
    "SELECT FLOOR(monthly_income / 200) AS b, COUNT(*) AS n FROM tax_income WHERE age < 30 GROUP BY b",
    "SELECT FLOOR(monthly_income / 5000) AS b, SUM(tax_paid) AS t, AVG(tax_paid) AS a FROM tax_income "
    "GROUP BY FLOOR(monthly_income / 5000)",
]


def _exact(plan: QueryPlan, path: Any) -> list[list[int]]:
    con = duckdb.connect(":memory:", config={"threads": 1})
    try:
        con.execute(f"CREATE VIEW {plan.query.table.name} AS SELECT * FROM read_parquet('{path}')")
        rows = con.execute(plan.canonical.unbounded_sql).fetchall()
        assert len(rows) <= plan.canonical.max_rows
        return _vectors(plan, rows)
    finally:
        con.close()


def _without_record(ds: Dataset) -> Dataset:
    report = {k: v for k, v in ds.ingest_report.items() if k != "bounds_enforced"}
    return dataclasses.replace(ds, ingest_report=report)


def test_elided_sql_gives_the_exact_vectors_of_the_clamped_form(datasets: dict[str, Dataset],
                                                                tables: dict[str, TableView]) -> None:
    ds = datasets["tax_income"]
    assert set(ds.ingest_report["bounds_enforced"]) >= {"monthly_income", "tax_paid", "age"}
    old = {"tax_income": TableView(_without_record(ds), tables["tax_income"].columns)}
    for sql in QUERIES:
        new_plan = prepare(sql, tables, epsilon=1.0, delta=0, min_group_units=0)
        old_plan = prepare(sql, old, epsilon=1.0, delta=0, min_group_units=0)
        assert ("LEAST" not in new_plan.canonical.sql and "LEAST" in old_plan.canonical.sql) or \
            ("SUM" not in sql and "AVG" not in sql)
        assert new_plan.keys == old_plan.keys
        assert [v.sensitivity for v in new_plan.canonical.vectors] == \
            [v.sensitivity for v in old_plan.canonical.vectors]
        assert _exact(new_plan, ds.path) == _exact(old_plan, ds.path), sql


def test_absent_outside_and_null_keys(home: Any) -> None:
    """Keys outside the declared domain and NULL keys are dropped, absent declared keys are zeros, a histogram's
    buckets are indexed without a key table; the counts are those of the data."""
    region = ["a", "b", "c", None, "a", "a"] * 50
    amount = [5.0, 15.0, 250.0, -3.0, None, 99.0] * 50
    src = home.incoming / "elide_keys.parquet"
    pq.write_table(pa.table({"uid": [f"U{i:04d}" for i in range(len(region))], "region": region,
                             "amount": amount}), src)
    ds = home.register({
        "name": "elide_keys", "source": str(src), "max_rows_per_unit": 1,
        "columns": {"uid": {"role": "id"}, "region": {"role": "dimension", "domain": ["a", "b", "z"]},
                    "amount": {"role": "measure", "bounds": [0, 100]}},
    })
    assert ds.ingest_report["bounds_enforced"] == {"amount": [0, 100]}
    view = {"elide_keys": TableView(ds, frozenset(["region", "amount"]))}
    plan = prepare("SELECT region, COUNT(*) AS n, SUM(amount) AS s FROM elide_keys GROUP BY region", view,
                   epsilon=1.0, delta=0, min_group_units=0)
    assert plan.keys.rows == (("a",), ("b",), ("z",))
    assert '"region" AS "__k0"' in plan.canonical.sql and "LEAST" not in plan.canonical.sql
    counts, sums = _exact(plan, ds.path)
    assert counts == [150, 50, 0]
    g = plan.canonical.vectors[1].granularity
    assert sums == [int((5 + 0 + 99) * 50 / g), int(15 * 50 / g), 0]  # 'c' (250 -> 100) and NULL dropped
    hist = prepare("SELECT FLOOR(amount / 10) AS b, COUNT(*) AS n FROM elide_keys WHERE region = 'a' GROUP BY b",
                   view, epsilon=1.0, delta=0, min_group_units=0)
    assert hist.keys.rows == tuple((i,) for i in range(11)) and "VALUES" not in hist.canonical.sql
    (h,) = _exact(hist, ds.path)
    truth = dict(duckdb.sql(f"SELECT FLOOR(amount / 10)::BIGINT, COUNT(*) FROM read_parquet('{ds.path}') "
                            "WHERE region = 'a' AND amount IS NOT NULL GROUP BY 1").fetchall())
    assert h == [truth.get(i, 0) for i in range(11)] and h[9] == 50 and sum(h) >= 100
