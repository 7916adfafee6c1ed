"""The query engines' locked connection: materialised tables, empty allow-lists (DESIGN.md), on DuckDB 2.0.

The connection and the lockdown sequence come from `sandbox.engine.lockdown` (the one place every engine
gets its DuckDB connection); this module adds what the query worker and the previews load before the lock:

1. connect in memory with ``autoload_known_extensions``/``autoinstall_known_extensions``/
   ``allow_community_extensions``/``allow_unsigned_extensions`` off, ``threads`` and ``memory_limit`` set and
   ``temp_directory`` empty (no spilling: DuckDB silently adds its temp directory to the allowed directories,
   which would let raw SQL ``COPY … TO`` it);
2. load the sandbox's own Parquet copies (or, for previews, in-memory Arrow mock tables) as tables;
3. ``SET allowed_directories = []`` and ``SET allowed_paths = []``;
4. ``SET enable_external_access = false``;
5. ``SET python_enable_replacements = false`` (the name is unchanged in DuckDB 2.0);
6. ``SET lock_configuration = true``.

(The connection-local ``enable_progress_bar`` is switched off first: DuckDB would print it on stdout.)

Tables are materialised in memory *before* step 4, so the locked connection needs no file access at all: the
allow-lists stay empty. (With views over Parquet, ``allowed_directories`` must name the data directory, and
DuckDB then also lets ``COPY … TO`` write into it; with exact ``allowed_paths`` it lets ``COPY … TO`` overwrite
the data file with ``USE_TMP_FILE false``. Materialising closes both.) After the lock, ``read_csv``,
``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``/``RESET``/``PRAGMA`` of settings and replacement scans of
Python variables all fail. DuckDB still allows temporary tables and ``error()``; that is why only canonical
SQL emitted by the rewriter ever reaches a connection.
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
) -> duckdb.DuckDBPyConnection:
    """A locked in-memory DuckDB connection holding ``tables`` (name → Parquet path or Arrow table).

    ``temp_dir`` enables spilling to that directory, at the price of making it writable from SQL; the worker
    leaves it unset, so queries must fit in ``memory_limit``.
    """
    def load(con: duckdb.DuckDBPyConnection) -> None:
        for name, src in (tables or {}).items():
            if isinstance(src, pa.Table):
                con.register("__veilbox_src", src)
                con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __veilbox_src")
                con.unregister("__veilbox_src")
            else:
                con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM read_parquet({quote_str(str(src))})")

    return locked_connection(load, threads=threads, memory_limit=memory_limit, temp_dir=temp_dir)
