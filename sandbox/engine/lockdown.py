"""The one DuckDB lockdown used by every engine: the only place product code calls ``duckdb.connect``.

`locked_connection` opens an in-memory connection with extensions off, ``threads``/``memory_limit`` set and
``temp_directory`` empty unless the caller names one (DuckDB silently adds its temp directory to the allowed
directories, which would let SQL ``COPY … TO`` it), switches the progress bar off (DuckDB would print it on
the process's stdout), lets ``load`` create the tables or views the connection needs, and then runs the
lockdown sequence of `lock_down`, in its required order:

1. ``SET allowed_directories = […]`` and ``SET allowed_paths = […]`` (empty unless the caller names them);
2. ``SET enable_external_access = false``;
3. ``SET python_enable_replacements = false``;
4. ``SET lock_configuration = true``.

What legitimately differs between engines is a parameter: the query worker keeps views that read the
registered Parquet files in place and names exactly those files in ``allowed_paths``, in a process that can
write no file (`sandbox.engine.nowrite`; where that guard is unavailable it materialises instead); the previews
materialise their in-memory mock tables and keep both allow-lists empty (both in
`sandbox.engine.hardening.connect_locked`); the training reader keeps a view that streams one Parquet file and
names exactly that file in ``allowed_paths`` (`sandbox.train._data.open_locked`). ``allowed_paths`` is read
when `lock_down` runs, after ``load``, so ``load`` may fill the list it was given. After the lock, ``read_csv``,
``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``,
``SET``/``RESET``/``PRAGMA`` of settings and replacement scans of Python variables all fail.

``tests/unit/sandbox/test_duckdb_lockdown.py`` checks that every ``duckdb.connect`` in product code is followed by
`lock_down` in the same function, and that a locked connection refuses external access and ``SET``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

__all__ = ["LOCKED_SETTINGS", "lock_down", "locked_connection", "quote_str"]

#: What `lock_down` leaves set (``duckdb_settings()`` values), for tests and audits of a connection.
LOCKED_SETTINGS = {"enable_external_access": "false", "lock_configuration": "true",
                   "python_enable_replacements": "false", "autoload_known_extensions": "false",
                   "autoinstall_known_extensions": "false", "allow_community_extensions": "false",
                   "allow_unsigned_extensions": "false"}


def quote_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(quote_str(v) for v in values) + "]"


def lock_down(con: duckdb.DuckDBPyConnection, *, allowed_paths: Sequence[str] = (),
              allowed_directories: Sequence[str] = ()) -> None:
    """Steps 1–4 of the lockdown on ``con``: the allow-lists, external access off, replacement scans off,
    configuration locked. After it no ``SET`` succeeds, so it is the last statement of any set-up."""
    con.execute(f"SET allowed_directories = {_list(allowed_directories)}")
    con.execute(f"SET allowed_paths = {_list(allowed_paths)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET lock_configuration = true")


def locked_connection(
    load: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    *,
    threads: int = 1,
    memory_limit: str = "1GB",
    temp_dir: Path | None = None,
    allowed_paths: Sequence[str] = (),
) -> duckdb.DuckDBPyConnection:
    """A locked in-memory DuckDB connection: hardened configuration, ``load(con)`` (tables, views), then
    `lock_down`. The connection is closed if any step fails, so an unlocked connection never escapes."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "threads": max(1, int(threads)),
        "memory_limit": memory_limit,
        "temp_directory": str(temp_dir) if temp_dir is not None else "",
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET enable_progress_bar = false")
        if load is not None:
            load(con)
        lock_down(con, allowed_paths=allowed_paths)
    except BaseException:
        con.close()
        raise
    return con
