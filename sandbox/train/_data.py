"""Training data: DuckDB → Arrow record batches → encoded float32 arrays, without per-row Python.

The registered Parquet file is opened through a locked DuckDB connection (`sandbox.engine.lockdown`, the
one lockdown every engine uses): extensions off, thread and memory limits, no spill directory, one view over
the file, ``allowed_paths`` = that file, external access off, replacement scans off, configuration locked.
The view streams the file instead of materialising it. The connection only ever runs the one SELECT built
here, never user text (an exact ``allowed_paths`` entry would otherwise let ``COPY … TO`` reach the data
file; see `sandbox.engine.hardening`).

The query selects the feature and label columns (names validated by the spec), keeps one row per privacy
unit (``QUALIFY row_number() OVER (PARTITION BY id) = 1``, so an inaccurate ``max_rows_per_unit`` declaration
cannot give a unit more than one row), and adds a held-out flag from a salted MD5 of the id: one id in five
is held out, deterministically, so a unit is on the same side in every run and the split depends on nothing
but its own id.

Two ways to read, chosen by the registered row count only (`ResourceLimits.streams`, threshold
``STREAM_ABOVE_ROWS``): `read_splits` encodes both sides into float32 arrays held for the run (small data,
fastest); `TrainingStream` keeps the locked connection open and serves *passes* over one side at a time
(`side_sql`: the split filter in the WHERE clause, so a pass reads only its side), chunk by chunk, for the
streaming runner (`sandbox.train.stream`), which encodes only the rows its Poisson samples select. The
stream's passes carry the one-row-per-unit window (which holds the side in the engine's memory) unless ingest
proved that no id has two rows in the registered copy (``rows_per_unit_max`` of the ingest report, recorded once
at registration for the immutable, fingerprint-checked copy); then a pass is a plain scan. The choice is a fact
of the registration, the same one the DP SQL engine uses to skip per-unit bounding: no job looks at the data to
make it, so a job's duration does not depend on what this run's data holds. A dataset declared ``engine: spark``
streams its passes from Spark instead (`sandbox.train._spark_data.SparkTrainingStream`, the same interface and the
same split, emitted from `side_sql`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from catalog.registry import Dataset
from catalog.sealed import Sealer, readable_path
from sandbox.engine.lockdown import locked_connection
from sandbox.train.encoding import FeatureEncoding
from sandbox.train.plan import HOLDOUT_DENOMINATOR

SPLIT_SALT = "veilbox/train-split/v1:"
BATCH_ROWS = 1 << 16
_HOLDOUT = "__veilbox_holdout"
#: Registered row counts above this train by streaming passes (`sandbox.train.stream`); at or below it the
#: encoded split is held in memory. A threshold on the public row count only, never on the data's content.
#: Streaming measured no slower at 50 000 rows and faster from 200 000 (docs/mechanisms/dp_sgd.md); small
#: datasets keep the held path, whose split costs at most some 10 MB.
STREAM_ABOVE_ROWS = 100_000
#: Rows a streaming pass buffers, in expectation (steps per pass = this // batch_size): about 100 bytes a row
#: for the demo's 23 inputs, so some 25 MB.
STREAM_BUFFER_ROWS = 1 << 18


@dataclass(frozen=True)
class ResourceLimits:
    """DuckDB ``threads``/``memory_limit`` for the read; ``torch_threads`` for the training loop (None: leave
    torch's process-wide setting alone). Small models train fastest, and most steadily on a shared host, with
    one torch thread."""

    threads: int = 2
    memory_limit: str = "1GB"
    torch_threads: int | None = None
    stream_above_rows: int = STREAM_ABOVE_ROWS
    stream_buffer_rows: int = STREAM_BUFFER_ROWS
    #: Spark master for a dataset declared ``engine: spark`` that streams (`sandbox.train._spark_data`).
    spark_master: str = "local[2]"

    def streams(self, dataset_rows: int) -> bool:
        """True when a dataset of ``dataset_rows`` registered rows trains by streaming passes."""
        return dataset_rows > self.stream_above_rows


@dataclass(frozen=True)
class Split:
    """Encoded rows of one side of the split: ``x`` float32[n, width], ``y`` float32[n] in {0, 1}."""

    x: np.ndarray
    y: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def open_locked(dataset: Dataset, limits: ResourceLimits, path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read ``dataset``'s file (or ``path``, the readable form of a file
    sealed at rest: `catalog.sealed.readable_path`) through the view ``data`` only."""
    path_s = str(path if path is not None else dataset.path)

    def load(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_literal(path_s)})")

    return locked_connection(load, threads=limits.threads, memory_limit=limits.memory_limit,
                             allowed_paths=[path_s])


def _holdout_expr(dataset: Dataset) -> str:
    uid = _ident(dataset.id_column)
    return f"(md5_number_lower({_literal(SPLIT_SALT)} || CAST({uid} AS VARCHAR)) % {HOLDOUT_DENOMINATOR}) = 0"


def training_sql(dataset: Dataset, encoding: FeatureEncoding) -> str:
    cols = [*encoding.columns, encoding.label]
    uid = _ident(dataset.id_column)
    select = ", ".join(_ident(c) for c in cols)
    holdout = f"{_holdout_expr(dataset)} AS {_ident(_HOLDOUT)}"
    return (f"SELECT {select}, {holdout} FROM data WHERE {uid} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {uid}) = 1")


def side_sql(dataset: Dataset, encoding: FeatureEncoding, held_out: bool, dedup: bool) -> str:
    """One side of the split (the held-out fifth or the training rest). With ``dedup`` one row per id is kept
    (the window of `training_sql`); without it the scan streams, which is only used when ingest proved
    no id on two rows (`one_row_per_unit_proved`)."""
    cols = [*encoding.columns, encoding.label]
    uid = _ident(dataset.id_column)
    select = ", ".join(_ident(c) for c in cols)
    side = _holdout_expr(dataset) if held_out else f"NOT {_holdout_expr(dataset)}"
    sql = f"SELECT {select} FROM data WHERE {uid} IS NOT NULL AND {side}"
    return sql + (f" QUALIFY row_number() OVER (PARTITION BY {uid}) = 1" if dedup else "")


def one_row_per_unit_proved(dataset: Dataset) -> bool:
    """Whether ingest counted at most one row per id in the registered copy (datasets registered before the
    count was recorded: no)."""
    proved = dataset.ingest_report.get("rows_per_unit_max")
    return isinstance(proved, int) and not isinstance(proved, bool) and proved <= 1


class TrainingStream:
    """A locked DuckDB connection kept open for one streaming run; `chunks` is one pass over a side.

    The connection runs only `side_sql`. ``path`` is the readable form of the file
    (`catalog.sealed.readable_path`), which the caller keeps open for the run."""

    def __init__(self, dataset: Dataset, encoding: FeatureEncoding, limits: ResourceLimits, path: Path) -> None:
        self._con = open_locked(dataset, limits, path)
        self.dataset, self.encoding = dataset, encoding
        self.dedup = not one_row_per_unit_proved(dataset)

    def chunks(self, held_out: bool) -> Iterator[tuple[pa.RecordBatch, np.ndarray, np.ndarray]]:
        """One pass: (Arrow batch, 0/1 labels, usable-row mask) per chunk of the side, in the engine's order."""
        reader = self._con.sql(side_sql(self.dataset, self.encoding, held_out, self.dedup)).to_arrow_reader(
            BATCH_ROWS)
        for batch in reader:
            y, usable = self.encoding.encode_label(batch)
            yield batch, y, usable

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TrainingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_splits(dataset: Dataset, encoding: FeatureEncoding,
                limits: ResourceLimits | None = None, sealer: Sealer | None = None) -> tuple[Split, Split]:
    """(training split, held-out split), encoded; rows with a null or out-of-domain label are dropped. A dataset
    sealed at rest is decrypted by ``sealer`` into this process's memory only (`catalog.sealed.readable_path`)."""
    xs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    ys: dict[bool, list[np.ndarray]] = {False: [], True: []}
    with readable_path(Path(dataset.path), sealer) as path:
        _read_into(open_locked(dataset, limits or ResourceLimits(), path), dataset, encoding, xs, ys)

    def build(side: bool) -> Split:
        if not ys[side]:
            return Split(np.zeros((0, encoding.width), np.float32), np.zeros(0, np.float32))
        return Split(np.ascontiguousarray(np.concatenate(xs[side])), np.concatenate(ys[side]))

    return build(False), build(True)


def _read_into(con: duckdb.DuckDBPyConnection, dataset: Dataset, encoding: FeatureEncoding,
               xs: dict[bool, list[np.ndarray]], ys: dict[bool, list[np.ndarray]]) -> None:
    try:
        reader = con.sql(training_sql(dataset, encoding)).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            y, usable = encoding.encode_label(batch)
            x = encoding.encode_batch(batch)
            held = np.asarray(batch.column(_HOLDOUT).to_numpy(zero_copy_only=False), dtype=bool)
            for side in (False, True):
                keep = usable & (held == side)
                xs[side].append(x[keep])
                ys[side].append(y[keep])
    finally:
        con.close()
