"""Defence in depth: the locked DuckDB refuses file, network, extension and settings access even when driven
with raw SQL; the worker is a separate process that returns only bounded results and generic failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from sandbox import QueryWorker
from sandbox.engine.hardening import connect_locked
from sandbox.engine.worker import EngineFailure, ExecRequest


@pytest.fixture
def locked(datasets: dict[str, Any], tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect_locked({"tax_income": datasets["tax_income"].path}, threads=1, memory_limit="512MB")
    yield con
    con.close()


def test_locked_connection_still_answers(locked: duckdb.DuckDBPyConnection) -> None:
    assert locked.execute("SELECT COUNT(*) FROM tax_income").fetchone() == (20_000,)


RAW_ATTACKS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM '/etc/hostname'",
    "SELECT * FROM glob('/*')",
    "ATTACH '{tmp}/other.duckdb' AS o",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET threads = 8",
    "SET allowed_directories = ['/']",
    "SET python_enable_replacements = true",
    "PRAGMA threads=4",
    "EXPORT DATABASE '{tmp}/dump'",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "SELECT * FROM read_parquet('{data}')",
]


@pytest.mark.parametrize("sql", RAW_ATTACKS)
def test_raw_sql_cannot_escape(sql: str, locked: duckdb.DuckDBPyConnection, tmp_path: Path,
                               datasets: dict[str, Any]) -> None:
    with pytest.raises(duckdb.Error):
        locked.execute(sql.format(tmp=tmp_path, data=datasets["tax_income"].path)).fetchall()


@pytest.mark.parametrize("target", ["{tmp}/leak.csv", "{data_dir}/leak.csv", "{data}", "leak.csv",
                                    ".tmp/leak.csv"])
def test_copy_to_writes_nothing(target: str, locked: duckdb.DuckDBPyConnection, tmp_path: Path,
                                datasets: dict[str, Any]) -> None:
    path = datasets["tax_income"].path
    dest = target.format(tmp=tmp_path, data_dir=path.parent, data=path)
    before = path.stat().st_size
    for opts in ("", " (FORMAT csv, USE_TMP_FILE false)"):
        with pytest.raises(duckdb.Error):
            locked.execute(f"COPY (SELECT * FROM tax_income) TO '{dest}'{opts}")
    assert not Path(tmp_path / "leak.csv").exists() and not (path.parent / "leak.csv").exists()
    assert path.stat().st_size == before


def test_no_replacement_scans(locked: duckdb.DuckDBPyConnection) -> None:
    settings = pa.table({"secret": [1, 2, 3]})  # a local variable a replacement scan would find
    assert settings.num_rows == 3
    with pytest.raises(duckdb.Error):
        locked.execute("SELECT * FROM settings").fetchall()


def test_lockdown_settings_are_in_force(locked: duckdb.DuckDBPyConnection) -> None:
    got = dict(locked.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'python_enable_replacements', 'autoload_known_extensions', "
        "'autoinstall_known_extensions', 'allow_community_extensions', 'allowed_directories', 'allowed_paths', "
        "'enable_progress_bar', 'temp_directory')"
    ).fetchall())
    assert got == {"enable_external_access": "false", "lock_configuration": "true",
                   "python_enable_replacements": "false", "autoload_known_extensions": "false",
                   "autoinstall_known_extensions": "false", "allow_community_extensions": "false",
                   "allowed_directories": "[]", "allowed_paths": "[]", "enable_progress_bar": "false",
                   "temp_directory": ""}


def test_worker_is_a_separate_process(worker: QueryWorker) -> None:
    assert worker.alive and worker.pid not in (None, os.getpid())


def request(sql: str, max_rows: int = 10, ncols: int = 1) -> ExecRequest:
    return ExecRequest(sql=sql, params={}, max_rows=max_rows, ncols=ncols)


def test_worker_refuses_oversized_results(worker: QueryWorker) -> None:
    with pytest.raises(EngineFailure) as info:
        worker.execute(request("SELECT age FROM tax_income", max_rows=100))
    assert info.value.reason == "result_check"
    with pytest.raises(EngineFailure) as info:
        worker.execute(request("SELECT 1, 2", ncols=1))
    assert info.value.reason == "result_check"


def test_worker_errors_carry_no_engine_text(worker: QueryWorker) -> None:
    for sql in ("SELECT error('the secret is 42')", "SELECT * FROM read_csv('/etc/passwd')",
                "SELECT CAST('x' AS INTEGER)"):
        with pytest.raises(EngineFailure) as info:
            worker.execute(request(sql))
        assert str(info.value) == "engine" and "secret" not in repr(info.value)


@pytest.mark.slow
def test_worker_times_out_and_recovers(datasets: dict[str, Any]) -> None:
    # 30 s of engine time: the 4e10-row cross join (minutes on one thread) must hit it, and the recovery
    # COUNT(*) passes well inside it however loaded the machine is.
    with QueryWorker({"tax_income": datasets["tax_income"].path}, threads=1, memory_limit="256MB",
                     timeout_s=30) as w:
        with pytest.raises(EngineFailure) as info:
            w.execute(request("SELECT SUM(hash(a.range * b.range)) FROM range(200000) a, range(200000) b"))
        assert info.value.reason == "timeout"
        assert w.execute(request("SELECT COUNT(*) FROM tax_income")) == [[20_000]]


def test_worker_restarts_after_a_crash(datasets: dict[str, Any]) -> None:
    w = QueryWorker({"tax_income": datasets["tax_income"].path}, threads=1, memory_limit="256MB", timeout_s=60)
    w.start()
    try:
        first = w.pid
        assert w._proc is not None
        w._proc.kill()
        w._proc.wait()
        assert w.execute(request("SELECT COUNT(*) FROM tax_income")) == [[20_000]]
        assert w.pid != first
    finally:
        w.stop()
    assert not w.alive


def test_worker_refuses_missing_data(tmp_path: Path) -> None:
    w = QueryWorker({"t": tmp_path / "absent.parquet"}, timeout_s=60)
    with pytest.raises(EngineFailure) as info:
        w.start()
    assert info.value.reason == "unavailable"


@pytest.mark.parametrize("sql", [
    "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
    "COPY (SELECT * FROM tax_income) TO '/tmp/veilbox-leak.csv'",
    "ATTACH '/tmp/veilbox-other.duckdb' AS o",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
])
def test_raw_sql_through_the_worker_process_fails(sql: str, worker: QueryWorker) -> None:
    with pytest.raises(EngineFailure) as info:
        worker.execute(request(sql))
    assert info.value.reason in ("engine", "result_check")
    assert not Path("/tmp/veilbox-leak.csv").exists() and not Path("/tmp/veilbox-other.duckdb").exists()
    assert worker.execute(request("SELECT COUNT(*) FROM tax_income")) == [[20_000]]
