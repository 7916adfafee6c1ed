"""The Spark pass reader (`sandbox.train._spark_data`): the same split, the same rows per side, the same
standardisation sums and held-out counts as the DuckDB reader over the same file. That a streamed run on a dataset
declared ``engine: spark`` reads through it is checked in
test_stream.py::test_streaming_reads_a_sealed_dataset_and_one_declared_for_spark."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sandbox.engine.spark import available

pytestmark = pytest.mark.skipif(not available(), reason="the Spark extra (pyspark, java) is not installed")


def test_split_sums_and_counts_equal_on_both_engines(tax_income, base_spec, tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.train import parse_spec
    from sandbox.train._data import TrainingStream, _holdout_expr
    from sandbox.train._spark_data import SparkTrainingStream, spark_side_sql
    from sandbox.train.encoding import encoding_for
    from sandbox.train.metrics import held_out_counts
    from sandbox.train.standardise import fixed_point_sums
    from tests.unit.sandbox.train.test_stream import LEAN, STREAMING

    # Every id of a dataset, integer and text, on the same side on both engines (DuckDB's md5_number_lower).
    ids = pa.table({"uid": pa.array(range(-500, 4500), pa.int64())})
    ids = ids.append_column("s", pa.array([f"u-{i}é" for i in range(-500, 4500)]))
    src = tmp_path / "ids.parquet"
    pq.write_table(ids, src)
    from sandbox.engine.spark import session

    s = session().newSession()
    s.read.parquet(str(src)).createOrReplaceTempView("data")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet('{src}')")
    for col in ("uid", "s"):
        ds = SimpleNamespace(id_column=col)
        held_expr = _holdout_expr(ds)
        want = {r[0] for r in con.execute(f"SELECT {col} FROM data WHERE {held_expr}").fetchall()}
        enc = encoding_for(parse_spec({**base_spec, "features": ["age"]}), tax_income)
        # the Spark side query over the same view, projecting the id instead of the inputs
        sql = spark_side_sql(ds, enc, True, False)
        assert sql.startswith("SELECT `age`, `has_default` FROM")
        sql = sql.replace("`age`, `has_default`", f"`{col}`", 1)
        got = {r[0] for r in s.sql(sql).collect()}
        assert got == want and 800 < len(want) < 1200
    con.close()

    # Both readers over the registered file: the same rows per side, sums and counts.
    spec = parse_spec({**base_spec, **LEAN})
    enc = encoding_for(spec, tax_income)
    w = np.linspace(-1, 1, enc.width).astype(np.float32)

    def read(stream):
        x, y = {}, {}
        for side in (False, True):
            parts = [(enc.encode_batch(b.filter(pa.array(u))), yb[u]) for b, yb, u in stream.chunks(held_out=side)]
            x[side] = np.concatenate([p[0] for p in parts])
            y[side] = np.concatenate([p[1] for p in parts])
        return fixed_point_sums(x[False], enc), held_out_counts(x[True] @ w, y[True]), len(y[False]), len(y[True])

    with TrainingStream(tax_income, enc, STREAMING, tax_income.path) as duck:
        want = read(duck)
    with SparkTrainingStream(tax_income, enc, STREAMING, tax_income.path) as spark:
        assert spark.dedup == duck.dedup
        got = read(spark)
    assert got[2:] == want[2:]
    for a, b in zip([*got[0], *got[1]], [*want[0], *want[1]], strict=True):
        np.testing.assert_array_equal(a, b)
