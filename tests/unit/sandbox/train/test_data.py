"""Reading training rows: a locked DuckDB connection, one row per unit, a deterministic id-hash split."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from sandbox.train import encoding_for, parse_spec
from sandbox.train._data import ResourceLimits, Split, open_locked, read_splits, training_sql


def spec_for(dataset: str, features: list[str], label: str):
    return parse_spec({"dataset": dataset, "features": features, "label": label, "model": "logistic_regression",
                       "epochs": 1, "batch_size": 16, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0})


def rows_sorted(split: Split) -> np.ndarray:
    both = np.column_stack([split.x, split.y])
    return both[np.lexsort(both.T[::-1])]


def test_connection_is_locked(tax_income):
    con = open_locked(tax_income, ResourceLimits(threads=1, memory_limit="256MB"))
    try:
        assert con.sql("SELECT count(*) FROM data").fetchall() == [(10_000,)]
        with pytest.raises(duckdb.Error):
            con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
        sibling = tax_income.path.parent / "elsewhere.parquet"
        with pytest.raises(duckdb.Error):
            con.sql(f"SELECT * FROM read_parquet('{sibling}')").fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access=true")
        with pytest.raises(duckdb.Error):
            con.execute("INSTALL httpfs")
    finally:
        con.close()


def test_split_is_deterministic_and_about_80_20(tax_income):
    enc = encoding_for(spec_for("tax_income", ["age", "monthly_income"], "has_default"), tax_income)
    a_train, a_held = read_splits(tax_income, enc)
    b_train, b_held = read_splits(tax_income, enc)
    assert a_train.rows + a_held.rows == 10_000
    assert 0.17 < a_held.rows / 10_000 < 0.23
    # Same rows on the same side every time (row order may differ: it is irrelevant under Poisson sampling).
    np.testing.assert_array_equal(rows_sorted(a_held), rows_sorted(b_held))
    np.testing.assert_array_equal(rows_sorted(a_train), rows_sorted(b_train))
    assert a_train.x.dtype == np.float32 and a_train.x.flags.c_contiguous


def test_one_row_per_unit_even_if_declared_wrongly(register_table):
    """An inaccurate max_rows_per_unit=1 declaration cannot give a unit two training rows."""
    table = pa.table({"uid": ["a", "a", "a", "b", "c", "c"], "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                      "y": [0, 1, 0, 1, 0, 1]})
    ds = register_table("dupes", table, {"uid": {"role": "id"}, "x": {"role": "measure", "bounds": [0, 10]},
                                         "y": {"role": "dimension", "domain": [0, 1]}}, 1)
    enc = encoding_for(spec_for("dupes", ["x"], "y"), ds)
    train, held = read_splits(ds, enc)
    assert train.rows + held.rows == 3


def test_query_reads_only_the_needed_columns(tax_income):
    enc = encoding_for(spec_for("tax_income", ["age", "district"], "has_default"), tax_income)
    sql = training_sql(tax_income, enc)
    for hidden in ("id_number", "employer_id", "monthly_income"):
        assert hidden not in sql
    assert '"person_id"' in sql  # only inside the split hash and the one-row-per-unit window
