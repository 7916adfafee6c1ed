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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from catalog.registry import Dataset
from catalog.sealed import Sealer, readable_path
from sandbox.engine.lockdown import locked_connection
from sandbox.train.encoding import FeatureEncoding
from sandbox.train.plan import HOLDOUT_DENOMINATOR

SPLIT_SALT = "veilbox/train-split/v1:"
BATCH_ROWS = 1 << 16
_HOLDOUT = "__veilbox_holdout"


@dataclass(frozen=True)
class ResourceLimits:
    """DuckDB ``threads``/``memory_limit`` for the read; ``torch_threads`` for the training loop (None: leave
    torch's process-wide setting alone). Small models train fastest, and most steadily on a shared host, with
    one torch thread."""

    threads: int = 2
    memory_limit: str = "1GB"
    torch_threads: int | None = None


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


def training_sql(dataset: Dataset, encoding: FeatureEncoding) -> str:
    cols = [*encoding.columns, encoding.label]
    uid = _ident(dataset.id_column)
    select = ", ".join(_ident(c) for c in cols)
    holdout = (f"(md5_number_lower({_literal(SPLIT_SALT)} || CAST({uid} AS VARCHAR)) "
               f"% {HOLDOUT_DENOMINATOR}) = 0 AS {_ident(_HOLDOUT)}")
    return (f"SELECT {select}, {holdout} FROM data WHERE {uid} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {uid}) = 1")


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
