"""The query engines' locked connection on DuckDB 2.0: in-place views or materialised tables (DESIGN.md).

The connection and the lockdown sequence come from `sandbox.engine.lockdown` (the one place every engine
gets its DuckDB connection); this module adds what the query worker and the previews load before the lock:

1. connect in memory with ``autoload_known_extensions``/``autoinstall_known_extensions``/
   ``allow_community_extensions``/``allow_unsigned_extensions`` off, ``threads`` and ``memory_limit`` set and
   ``temp_directory`` empty (no spilling: DuckDB silently adds its temp directory to the allowed directories,
   which would let raw SQL ``COPY … TO`` it);
2. load the tables:

   - **in place** (``in_place=True``, the query worker once `sandbox.engine.nowrite` guards its process):
     one view per registered Parquet file, ``SELECT *, file_row_number AS rowid FROM read_parquet(<file>,
     file_row_number = true)`` (``rowid`` keeps the canonical SQL's per-unit ordering working on a view),
     and ``allowed_paths`` = exactly those files; nothing is copied, DuckDB streams the file per query;
   - **materialised** (default; the previews' in-memory Arrow mock tables, the worker where the write guard
     is unavailable, and a file with a column named ``rowid`` or ``file_row_number``, which would clash):
     ``CREATE TABLE … AS SELECT *`` before the lock, that file not in the allow-list;

3. ``SET allowed_directories = []`` and ``SET allowed_paths = [<registered files> | nothing]``;
4. ``SET enable_external_access = false``;
5. ``SET python_enable_replacements = false`` (the name is unchanged in DuckDB 2.0);
6. ``SET lock_configuration = true``.

(The connection-local ``enable_progress_bar`` is switched off first: DuckDB would print it on stdout.)

Why in place needs the write guard: DuckDB applies ``allowed_paths`` to writes too, so raw
``COPY … TO '<data file>' (USE_TMP_FILE false)`` would overwrite the registered file (and an
``allowed_directories`` entry would let ``COPY`` write anywhere in the data directory, which is why only exact
files are listed). The worker child installs `sandbox.engine.nowrite.forbid_file_writes` (seccomp: no open for
writing, no rename, unlink, mkdir, truncate…) *before* connecting; only then does it ask for ``in_place``.
After the lock, reading any other file (``read_csv``, ``read_parquet``/``glob``/``parquet_metadata`` of another
path), ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``/``RESET``/``PRAGMA`` of settings and replacement
scans of Python variables all fail. DuckDB still allows temporary tables, ``error()`` and — in place — table
functions over the registered file itself (``parquet_metadata``, ``read_parquet(…, filename = true)``) and
catalog functions that show its path (``duckdb_views()``, ``duckdb_settings()``): none of them reveals more
than a raw aggregate over the view would, and that is why only canonical SQL emitted by the rewriter ever
reaches a connection (the vetter refuses every table function and every column outside the grant).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from sandbox.engine.lockdown import locked_connection, quote_str

__all__ = ["connect_locked", "quote_ident"]


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled), safe to splice into DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def connect_locked(
    tables: Mapping[str, Path | pa.Table] | None = None,
    *,
    threads: int = 1,
    memory_limit: str = "1GB",
    temp_dir: Path | None = None,
    in_place: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A locked in-memory DuckDB connection holding ``tables`` (name → Parquet path or Arrow table).

    ``in_place`` turns each Parquet path into a view that reads the file where it is (``allowed_paths`` = those
    files); only a process guarded by `sandbox.engine.nowrite.forbid_file_writes` may ask for it. Otherwise
    every table is materialised in memory and the allow-lists stay empty. ``temp_dir`` enables spilling to that
    directory, at the price of making it writable from SQL; the worker leaves it unset, so queries must fit in
    ``memory_limit``.
    """
    files: list[str] = []

    def load(con: duckdb.DuckDBPyConnection) -> None:
        for name, src in (tables or {}).items():
            if isinstance(src, pa.Table):
                con.register("__veilbox_src", src)
                con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __veilbox_src")
                con.unregister("__veilbox_src")
                continue
            path = quote_str(str(src))
            cols = {str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()}
            if in_place and not cols & {"rowid", "file_row_number"}:
                con.execute(f"CREATE VIEW {quote_ident(name)} AS SELECT *, file_row_number AS rowid "
                            f"FROM read_parquet({path}, file_row_number = true)")
                files.append(str(src))
            else:  # a data column named like the row number would clash with it: materialise that table
                con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM read_parquet({path})")

    return locked_connection(load, threads=threads, memory_limit=memory_limit, temp_dir=temp_dir,
                             allowed_paths=files)
