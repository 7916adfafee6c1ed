"""The query worker reads the registered Parquet in place, and reads nothing else, writes nothing, changes
nothing: raw SQL sent straight to the worker (bypassing vetting) is refused by the engine itself; the same
attempts as analyst SQL are refused by vetting first."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from catalog.errors import QUERY_REJECTED, DomainError
from catalog.registry import Dataset
from sandbox import QueryWorker, prepare
from sandbox.engine import nowrite
from sandbox.engine.hardening import connect_locked
from sandbox.engine.worker import EngineFailure, ExecRequest

pytestmark = pytest.mark.skipif(not nowrite.supported(), reason="the write guard needs Linux x86-64/AArch64")


@pytest.fixture(scope="module")
def guarded(datasets: dict[str, Dataset]) -> Iterator[QueryWorker]:
    """A worker granted tax_income only; enterprise_registry's file sits in the same data directory."""
    w = QueryWorker({"tax_income": datasets["tax_income"].path}, threads=2, memory_limit="512MB", timeout_s=60)
    w.start()
    yield w
    w.stop()


def req(sql: str, max_rows: int = 10, ncols: int = 1, params: dict[str, str] | None = None) -> ExecRequest:
    return ExecRequest(sql=sql, params=params or {}, max_rows=max_rows, ncols=ncols)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_worker_reads_views_in_place(guarded: QueryWorker, datasets: dict[str, Dataset]) -> None:
    path = str(datasets["tax_income"].path)
    assert guarded.execute(req("SELECT COUNT(*) FROM tax_income")) == [[20_000]]
    assert guarded.execute(req("SELECT COUNT(*) FROM duckdb_tables()")) == [[0]]  # nothing materialised
    assert guarded.execute(req("SELECT view_name FROM duckdb_views() WHERE NOT internal")) == [["tax_income"]]
    got = dict(tuple(r) for r in guarded.execute(req(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
        "'allowed_paths', 'allowed_directories', 'temp_directory', 'python_enable_replacements', "
        "'autoload_known_extensions', 'autoinstall_known_extensions')", ncols=2)))
    assert got == {"enable_external_access": "false", "lock_configuration": "true",
                   "allowed_paths": f"[{path}]", "allowed_directories": "[]", "temp_directory": "",
                   "python_enable_replacements": "false", "autoload_known_extensions": "false",
                   "autoinstall_known_extensions": "false"}


def test_in_place_answers_equal_materialised(guarded: QueryWorker, datasets: dict[str, Dataset],
                                             tables: dict[str, Any]) -> None:
    """Bounded canonical SQL (keyed row order included) and its unbounded twin give the same rows as on a
    materialised copy."""
    con = connect_locked({"tax_income": datasets["tax_income"].path}, threads=1, memory_limit="512MB")
    try:
        for sql in ("SELECT district, gender, AVG(monthly_income) AS a FROM tax_income GROUP BY district, gender",
                    "SELECT FLOOR(monthly_income / 200) AS b, COUNT(*) AS n FROM tax_income GROUP BY b",
                    "SELECT SUM(tax_paid) AS t FROM tax_income WHERE age BETWEEN 30 AND 39"):
            plan = prepare(sql, tables, epsilon=1.0, delta=0, min_group_units=0)
            c = plan.canonical
            ncols = 1 + len(c.vectors)
            for text, params in ((c.sql, {"salt": "fixed"}), (c.unbounded_sql, {})):
                want = sorted(con.execute(text, params).fetchall())
                got = sorted(tuple(r) for r in guarded.execute(req(text, c.max_rows, ncols, params)))
                assert got == [tuple(float(v) if isinstance(v, float) else v for v in r) for r in want]
    finally:
        con.close()


READS = [
    "SELECT COUNT(*) FROM read_parquet('{other}')",
    "SELECT COUNT(*) FROM '{other}'",
    "SELECT COUNT(*) FROM parquet_metadata('{other}')",
    "SELECT COUNT(*) FROM parquet_schema('{other}')",
    "SELECT COUNT(*) FROM read_parquet('{data_dir}/*.parquet')",
    "SELECT COUNT(*) FROM glob('{data_dir}/*')",
    "SELECT COUNT(*) FROM glob('/*')",
    "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM read_text('/etc/hostname')",
    "SELECT COUNT(*) FROM read_blob('{data}.wal')",
    "SELECT COUNT(*) FROM read_parquet('{data_dir}/../' || '{name}')",
]


@pytest.mark.parametrize("sql", READS)
def test_engine_reads_no_other_file(sql: str, guarded: QueryWorker, datasets: dict[str, Dataset]) -> None:
    data = datasets["tax_income"].path
    other = datasets["enterprise_registry"].path
    assert other.parent == data.parent
    text = sql.format(other=other, data_dir=data.parent, data=data, name=data.name)
    with pytest.raises(EngineFailure) as info:
        guarded.execute(req(text))
    assert info.value.reason == "engine"


WRITES = [
    "COPY (SELECT 1 AS x) TO '{data}' (FORMAT parquet, USE_TMP_FILE false)",
    "COPY (SELECT 1 AS x) TO '{data}' (FORMAT parquet)",
    "COPY (SELECT 1 AS x) TO '{data}' (FORMAT csv, USE_TMP_FILE false, OVERWRITE_OR_IGNORE true)",
    "COPY tax_income TO '{data_dir}/leak.csv'",
    "COPY (SELECT * FROM tax_income) TO '{tmp}/leak.csv'",
    "COPY (SELECT 1 AS x) TO 'leak.csv'",
    "EXPORT DATABASE '{tmp}/dump'",
    "ATTACH '{data}' AS d (TYPE duckdb)",
    "ATTACH '{tmp}/other.duckdb' AS o",
    "ATTACH '{data_dir}/new.duckdb' AS o",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "INSTALL httpfs",
    "LOAD httpfs",
]


@pytest.mark.parametrize("sql", WRITES)
def test_engine_writes_no_file(sql: str, guarded: QueryWorker, datasets: dict[str, Dataset],
                               tmp_path: Path) -> None:
    data = datasets["tax_income"].path
    before = digest(data)
    listing = sorted(p.name for p in data.parent.iterdir())
    with pytest.raises(EngineFailure):
        guarded.execute(req(sql.format(data=data, data_dir=data.parent, tmp=tmp_path)))
    assert digest(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == listing
    assert list(tmp_path.iterdir()) == []
    assert guarded.execute(req("SELECT COUNT(*) FROM tax_income")) == [[20_000]]


def test_attach_of_the_registered_file_reads_only_that_file(guarded: QueryWorker,
                                                           datasets: dict[str, Dataset]) -> None:
    """DuckDB 2.0 attaches a Parquet file as an in-memory database of views over that file: the engine allows it
    for the registered file (it is in ``allowed_paths``), and it then reads nothing the view does not, and
    writes nothing (vetting refuses ``ATTACH`` from analysts in any case)."""
    data = datasets["tax_income"].path
    before = digest(data)
    listing = sorted(p.name for p in data.parent.iterdir())
    guarded.execute(req(f"ATTACH '{data}' AS d", max_rows=1, ncols=1))
    try:
        assert guarded.execute(req("SELECT COUNT(*) FROM d.file")) == [[20_000]]
        assert guarded.execute(req("SELECT COUNT(*) FROM duckdb_databases() WHERE path IS NOT NULL")) == [[0]]
        with pytest.raises(EngineFailure):
            guarded.execute(req(f"COPY (SELECT 1 AS x) TO '{data}' (FORMAT parquet, USE_TMP_FILE false)"))
    finally:
        guarded.execute(req("DETACH d", max_rows=1, ncols=1))
    assert digest(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == listing


SETTINGS = [
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET allowed_paths = ['/etc/passwd']",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "RESET allowed_paths",
    "SET temp_directory = '{tmp}'",
    "SET python_enable_replacements = true",
    "SET threads = 8",
    "SET memory_limit = '64GB'",
    "SET disabled_filesystems = ''",
    "PRAGMA threads=4",
    "PRAGMA enable_profiling",
    "SELECT * FROM pragma_version()",
    "CALL pragma_database_size()",
]


@pytest.mark.parametrize("sql", SETTINGS)
def test_engine_settings_cannot_change(sql: str, guarded: QueryWorker, tmp_path: Path) -> None:
    with pytest.raises(EngineFailure):
        guarded.execute(req(sql.format(tmp=tmp_path), max_rows=0, ncols=0))
    got = guarded.execute(req("SELECT value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                              "'lock_configuration', 'allowed_directories', 'threads') ORDER BY name"))
    assert got == [["[]"], ["false"], ["true"], ["2"]]


ANALYST = [
    ("SELECT COUNT(*) FROM parquet_metadata('{data}')", "table_function"),
    ("SELECT COUNT(*) FROM parquet_schema('{data}')", "table_function"),
    ("SELECT COUNT(*) FROM parquet_file_metadata('{data}')", "table_function"),
    ("SELECT COUNT(*) FROM read_parquet('{other}')", "table_function"),
    ("SELECT COUNT(*) FROM '{data}'", None),
    ("SELECT COUNT(*) FROM glob('{data_dir}/*')", "table_function"),
    ("SELECT COUNT(*) FROM duckdb_views()", "table_function"),
    ("SELECT COUNT(*) FROM duckdb_settings()", "table_function"),
    ("SELECT filename, COUNT(*) FROM tax_income GROUP BY filename", "unknown_column"),
    ("SELECT file_row_number, COUNT(*) FROM tax_income GROUP BY 1", "unknown_column"),
    ("SELECT COUNT(*) FROM tax_income WHERE rowid < 10", "unknown_column"),
    ("SELECT current_setting('allowed_paths') AS p, COUNT(*) FROM tax_income GROUP BY p", "function"),
    ("COPY (SELECT 1) TO '{data}' (USE_TMP_FILE false)", "statement"),
    ("ATTACH '{data}' AS d", "statement"),
    ("SET enable_external_access = true", "statement"),
    ("PRAGMA threads=4", "statement"),
]


@pytest.mark.parametrize(("sql", "rule"), ANALYST, ids=[a[0][:40] for a in ANALYST])
def test_vetting_refuses_metadata_paths_and_settings(sql: str, rule: str | None, tables: dict[str, Any],
                                                     datasets: dict[str, Dataset]) -> None:
    """What the engine cannot refuse on the registered file itself (its Parquet metadata, its path in
    ``duckdb_views()``/``duckdb_settings()``, ``filename``) never reaches it: the analyst's SQL is refused."""
    data = datasets["tax_income"].path
    text = sql.format(data=data, other=datasets["enterprise_registry"].path, data_dir=data.parent)
    with pytest.raises(DomainError) as info:
        prepare(text, tables, epsilon=1.0, delta=0, min_group_units=0)
    assert info.value.code == QUERY_REJECTED
    if rule is not None:
        assert rule in {d["rule"] for d in info.value.details}, info.value.details


def test_guard_blocks_writes_in_a_fresh_process(tmp_path: Path) -> None:
    """The seccomp guard on its own: after it, opening for writing, creating, renaming, truncating and removing
    fail on every thread (root included); reading, pipes and DuckDB queries still work."""
    existing = tmp_path / "existing.txt"
    existing.write_text("kept")
    script = f"""
import os, threading, duckdb
from sandbox.engine.nowrite import forbid_file_writes
assert forbid_file_writes()
attempts = [
    lambda: open({str(tmp_path / 'new.txt')!r}, 'w'),
    lambda: open({str(existing)!r}, 'a'),
    lambda: open({str(existing)!r}, 'r+'),
    lambda: os.truncate({str(existing)!r}, 0),
    lambda: os.rename({str(existing)!r}, {str(tmp_path / 'moved.txt')!r}),
    lambda: os.unlink({str(existing)!r}),
    lambda: os.mkdir({str(tmp_path / 'd')!r}),
    lambda: os.symlink({str(existing)!r}, {str(tmp_path / 'l')!r}),
    lambda: os.chmod({str(existing)!r}, 0o777),
]
def run(out):
    for a in attempts:
        try:
            a()
            out.append('written')
        except PermissionError:
            out.append('refused')
main, other = [], []
run(main)
t = threading.Thread(target=run, args=(other,)); t.start(); t.join()
assert set(main) == set(other) == {{'refused'}}, (main, other)
assert open({str(existing)!r}).read() == 'kept'
r, w = os.pipe(); os.write(w, b'ok'); assert os.read(r, 2) == b'ok'
con = duckdb.connect(config={{'threads': 2}})
assert con.execute('SELECT SUM(range) FROM range(1000000)').fetchone() == (499999500000,)
try:
    con.execute("COPY (SELECT 1) TO {str(tmp_path / 'x.csv')!r}")
    raise SystemExit('COPY wrote')
except duckdb.Error:
    pass
print('ok')
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]
    assert existing.read_text() == "kept"


def test_a_column_named_rowid_is_materialised(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS rowid, range % 3 AS g FROM range(10)) TO '{path}'")
    con.close()
    locked = connect_locked({"t": path}, in_place=True)
    try:
        assert locked.execute("SELECT COUNT(*) FROM duckdb_tables()").fetchone() == (1,)
        assert locked.execute("SELECT value FROM duckdb_settings() WHERE name = 'allowed_paths'").fetchone() == ("[]",)
        assert locked.execute("SELECT SUM(rowid) FROM t").fetchone() == (45,)
    finally:
        locked.close()


@pytest.mark.parametrize(("per_unit", "declared", "elided"), [(1, 1, True), (2, 2, True), (3, 2, False)])
def test_what_ingest_proved_needs_no_bounding(per_unit: int, declared: int, elided: bool,
                                             register_units: Any) -> None:
    """Ingest counts the most rows any unit has in the registered copy; within the declared bound, the service
    sends the unbounded twin straight away (no bounding pass, no bound check in the worker)."""
    from sandbox import TableView
    from sandbox.sql.service import _request

    ds = register_units(f"proved_{per_unit}_{declared}", 30, per_unit, declared)
    assert ds.ingest_report["rows_per_unit_max"] == per_unit
    plan = prepare("SELECT region, COUNT(*) AS n FROM proved GROUP BY region".replace("proved", ds.name),
                   {ds.name: TableView(ds, frozenset(["region", "amount"]))}, epsilon=1.0, delta=0,
                   min_group_units=0)
    r = _request(plan)
    if elided:
        assert (r.sql, r.params, r.bound_check, r.unbounded_sql) == (plan.canonical.unbounded_sql, {}, None, None)
    else:
        assert r.sql == plan.canonical.sql and r.bound_check == (ds.name, "uid", declared)
    with QueryWorker({ds.name: ds.path}, threads=1, memory_limit="256MB", timeout_s=60) as w:
        rows = sorted(tuple(x) for x in w.execute(r))
    assert sum(x[1] for x in rows) == 30 * min(per_unit, declared)
