"""One DuckDB lockdown for every engine (`sandbox.engine.lockdown`): every ``duckdb.connect`` in product code is
followed by `lock_down` in the same function, and a locked connection refuses external access and ``SET``."""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.engine.hardening import connect_locked
from sandbox.engine.lockdown import LOCKED_SETTINGS, locked_connection

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("catalog", "policies", "sandbox", "mpc", "gateway", "veilbox")


def _calls(node: ast.AST, name: str) -> list[ast.Call]:
    """Calls of ``name`` (``name(...)`` or ``<anything>.name(...)``) under ``node``."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                out.append(n)
    return out


def _is_duckdb_connect(call: ast.Call) -> bool:
    f = call.func
    return isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Name) \
        and f.value.id == "duckdb"


def _product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py"))


def test_every_duckdb_connect_in_product_code_is_locked_down_in_the_same_function():
    connects = 0
    for path in _product_files():
        tree = ast.parse(path.read_text(), str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for call in (c for c in _calls(tree, "connect") if _is_duckdb_connect(c)):
            connects += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            owner = [f for f in functions if f.lineno <= call.lineno <= (f.end_lineno or f.lineno)]
            assert owner, f"{where}: duckdb.connect outside a function"
            fn = min(owner, key=lambda f: (f.end_lineno or f.lineno) - f.lineno)  # the innermost one
            later = [c for c in _calls(fn, "lock_down") if c.lineno > call.lineno]
            assert later, f"{where}: duckdb.connect is not followed by lock_down in {fn.name}"
    assert connects >= 1  # the one in sandbox/engine/lockdown.py


def test_only_the_lockdown_module_connects():
    """Engines get their connection from `locked_connection`; no other module opens DuckDB itself."""
    found = []
    for path in _product_files():
        tree = ast.parse(path.read_text(), str(path))
        found += [str(path.relative_to(ROOT)) for c in _calls(tree, "connect") if _is_duckdb_connect(c)]
    assert found == ["sandbox/engine/lockdown.py"]


REFUSED = [
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET allowed_paths = ['/etc/passwd']",
    "SET threads = 8",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH '/tmp/veilbox-lockdown-test.db' AS x",
    "INSTALL httpfs",
    "COPY (SELECT 1) TO '/tmp/veilbox-lockdown-test.csv'",
]


@pytest.fixture
def parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "x": [10, 20, 30]}), path)
    return path


def _engines(parquet):
    """Each engine's way of getting a locked connection, with what legitimately differs."""

    def view(con):
        con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet('{parquet}')")

    return {
        "materialised": connect_locked({"data": parquet}),
        "arrow": connect_locked({"data": pa.table({"id": [1, 2, 3], "x": [10, 20, 30]})}),
        "view_on_one_file": locked_connection(view, allowed_paths=[str(parquet)]),
        "empty": locked_connection(),
    }


def test_a_locked_connection_refuses_external_access_and_set(parquet):
    for name, con in _engines(parquet).items():
        try:
            got = dict(con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                f"({', '.join(repr(k) for k in LOCKED_SETTINGS)})").fetchall())
            assert got == LOCKED_SETTINGS, name
            for sql in REFUSED:
                with pytest.raises(duckdb.Error):
                    con.execute(sql)
            if name != "empty":
                assert con.execute("SELECT sum(x) FROM data").fetchone() == (60,), name
        finally:
            con.close()


def test_a_failed_load_closes_the_connection_before_it_is_locked():
    seen = []

    def load(con):
        seen.append(con)
        raise RuntimeError("load failed")

    with pytest.raises(RuntimeError):
        locked_connection(load)
    with pytest.raises(duckdb.Error):  # closed: an unlocked connection never escapes
        seen[0].execute("SELECT 1")
