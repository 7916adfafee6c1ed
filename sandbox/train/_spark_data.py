"""Training passes over Spark for a dataset declared ``engine: spark`` (`SparkTrainingStream`).

Same interface as `sandbox.train._data.TrainingStream` (``chunks(held_out)``, ``dedup``, ``close``), used by the
streaming runner when the dataset declares ``engine: spark``. What reaches Spark:

- a session of its own (`sandbox.engine.spark.session`, the shared locked configuration: ANSI off, no SQL on
  files, in-memory catalog, no UI) whose only table is a temporary view of the registered Parquet file (or, sealed
  at rest, of this process's memory file holding its plaintext); no UDF is registered;
- only `spark_side_sql`: the DuckDB side query of `sandbox.train._data.side_sql`, parsed by sqlglot and emitted in
  the ``spark`` dialect, with ``md5_number_lower(s)`` rewritten to its exact Spark equivalent (below). The emitted
  tree is checked before it leaves: one SELECT, tables only the view and sqlglot's derived table, every function
  in `_FUNCS`.

The split. DuckDB's ``md5_number_lower(s)`` is the last eight bytes of ``md5(s)`` read as a little-endian
unsigned 64-bit integer. In Spark, ``md5(s)`` is the digest as 32 hex digits, so the same integer is
``CONV(<hex digits 31–32, 29–30, …, 17–18>, 16, 10)`` (the bytes reversed), cast to ``DECIMAL(20, 0)`` so that
``% 5`` is exact (``CONV`` returns a string, and a string operand would be cast to a double). A test splits every
id of a dataset on both engines and compares.

Streaming. ``DataFrame.toLocalIterator()`` fetches one partition at a time to the driver (a Spark job per pass,
not per step) and the rows are gathered into Arrow record batches of `BATCH_ROWS`: the driver holds one
partition's rows and one chunk, never the side. ``mapInArrow`` would need a Python worker (a UDF) and
``toArrow``/``_collect_as_arrow`` collect the whole result, so neither is used. The order of rows within a pass
is Spark's; the Poisson grid is position-independent, so only the number of rows per pass matters, and it is
the side's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlglot import exp, parse

from catalog.registry import Dataset
from sandbox.engine.spark import session
from sandbox.train._data import BATCH_ROWS, ResourceLimits, one_row_per_unit_proved, side_sql
from sandbox.train.encoding import FeatureEncoding

log = logging.getLogger("veilbox.sandbox.train.spark")
VIEW = "data"
#: Functions the emitted side query may call (sqlglot node types; ``CONV`` by name).
_FUNCS: tuple[type[exp.Expr], ...] = (exp.MD5, exp.Substring, exp.Concat, exp.Cast, exp.RowNumber, exp.Window,
                                      exp.And, exp.Not, exp.Is)


def _md5_number_lower(arg: exp.Expr) -> exp.Expr:
    """DuckDB's ``md5_number_lower(arg)`` (bytes 8–15 of the digest, little-endian, unsigned) in Spark SQL."""
    digest = exp.MD5(this=arg)
    pairs = [exp.Substring(this=digest.copy(), start=exp.Literal.number(31 - 2 * k), length=exp.Literal.number(2))
             for k in range(8)]
    number = exp.Anonymous(this="CONV", expressions=[exp.Concat(expressions=pairs), exp.Literal.number(16),
                                                      exp.Literal.number(10)])
    return exp.Cast(this=number, to=exp.DataType.build("DECIMAL(20, 0)"))


def _rewrite(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Anonymous) and str(node.name).lower() == "md5_number_lower":
        return _md5_number_lower(node.expressions[0])
    if isinstance(node, exp.DPipe):  # string concatenation: Spark's CONCAT (NULL in, NULL out, as DuckDB's ||)
        return exp.Concat(expressions=[node.this, node.expression])
    return node


def _unlisted(node: exp.Expr) -> bool:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper() != "CONV"
    return isinstance(node, exp.Func) and not isinstance(node, _FUNCS)


def spark_side_sql(dataset: Dataset, encoding: FeatureEncoding, held_out: bool, dedup: bool) -> str:
    """`side_sql` (DuckDB) emitted for Spark over the view ``data``; `ValueError` if the emitted tree is not a
    single SELECT over that view using only `_FUNCS`."""
    tree = parse(side_sql(dataset, encoding, held_out, dedup), read="duckdb")[0]
    if tree is None:
        raise ValueError("side query")
    text = tree.transform(_rewrite).sql(dialect="spark", comments=False)
    out = parse(text, read="spark")
    if len(out) != 1 or not isinstance(out[0], exp.Select):
        raise ValueError("side query")
    for node in out[0].walk():
        if _unlisted(node) or (isinstance(node, exp.Table) and node.name not in (VIEW, "_t")) or \
                isinstance(node, (exp.Command, exp.Create, exp.Insert, exp.Drop, exp.Set)):
            raise ValueError("side query")
    return text


def _spark_path(path: Path) -> str:
    """The path the JVM opens: a memory file of this process (``/proc/self/fd/N``) is named by this pid."""
    s = str(path)
    if s.startswith("/proc/self/"):
        return f"file:///proc/{os.getpid()}/" + s[len("/proc/self/"):]
    return s


class SparkTrainingStream:
    """A Spark session kept for one streaming run; `chunks` is one pass over a side (`spark_side_sql`).

    ``path`` is the readable form of the file (`catalog.sealed.readable_path`), which the caller keeps open."""

    def __init__(self, dataset: Dataset, encoding: FeatureEncoding, limits: ResourceLimits, path: Path) -> None:
        self.dataset, self.encoding = dataset, encoding
        self.dedup = not one_row_per_unit_proved(dataset)
        self._session: Any = session(limits.spark_master).newSession()
        self._session.read.parquet(_spark_path(path)).createOrReplaceTempView(VIEW)
        self._schema: dict[bool, pa.Schema] = {}

    def chunks(self, held_out: bool) -> Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray]]:
        """One pass: (Arrow batch, 0/1 labels, usable-row mask) per chunk of the side, in Spark's order."""
        from pyspark.sql.pandas.types import to_arrow_schema

        df = self._session.sql(spark_side_sql(self.dataset, self.encoding, held_out, self.dedup))
        schema = to_arrow_schema(df.schema)
        names = schema.names
        cols: list[list[Any]] = [[] for _ in names]
        n = 0
        for row in df.toLocalIterator():
            for c, v in zip(cols, row, strict=True):
                c.append(v)
            n += 1
            if n == BATCH_ROWS:
                yield self._emit(cols, schema)
                cols, n = [[] for _ in names], 0
        if n:
            yield self._emit(cols, schema)

    def _emit(self, cols: list[list[Any]], schema: pa.Schema) -> tuple[pa.RecordBatch, np.ndarray, np.ndarray]:
        batch = pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)],
                                           schema=schema)
        y, usable = self.encoding.encode_label(batch)
        return batch, y, usable

    def close(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            try:
                s.catalog.dropTempView(VIEW)
            except Exception as e:  # the context is gone already: nothing left to drop
                log.debug("spark view not dropped: %s", type(e).__name__)

    def __enter__(self) -> SparkTrainingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
