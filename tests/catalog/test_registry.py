"""Registration: validation against the file, clamping, atomicity, hostile sources."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from catalog import _tables, registry
from catalog.columns import DatasetSpec
from catalog.errors import DomainError
from catalog.store import make_engine


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(e)
    return e


@pytest.fixture
def roots(tmp_path):
    r = tmp_path / "import"
    r.mkdir()
    return r


def write(path, table):
    pq.write_table(table, path)
    return str(path)


def small(n=10, income=None):
    return pa.table({
        "uid": [f"u{i}" for i in range(n)],
        "district": ["A", "B"] * (n // 2),
        "age": list(range(20, 20 + n)),
        "income": income if income is not None else [100.0 * i for i in range(n)],
    })


def decl(source, **over):
    d = {"name": "t", "source": source, "columns": {
        "uid": {"role": "id"},
        "district": {"role": "dimension", "domain": ["A", "B"]},
        "age": {"role": "dimension", "bounds": [16, 100]},
        "income": {"role": "measure", "bounds": [0, 500]},
    }}
    d.update(over)
    return DatasetSpec.model_validate(d)


def reg(engine, tmp_path, roots, spec, max_bytes=10**9):
    return registry.register(engine, spec, "owner1", tmp_path / "data", [roots], max_bytes)


def count(engine):
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(_tables.datasets)).scalar()


def leftovers(tmp_path):
    d = tmp_path / "data"
    return sorted(os.listdir(d)) if d.exists() else []


def test_register_clamps_and_reports(engine, tmp_path, roots):
    src = write(roots / "a.parquet", small(10))
    r = reg(engine, tmp_path, roots, decl(src))
    assert r.report.rows == 10
    assert r.report.clamped == {"income": 4}  # 600, 700, 800, 900 > 500
    stored = pq.read_table(r.dataset.path)
    assert max(stored["income"].to_pylist()) == 500
    assert r.dataset.fingerprint.startswith("sha256:")
    assert registry.get(engine, "t").owner == "owner1"


def test_csv_source_and_sm3(engine, tmp_path, roots):
    p = roots / "a.csv"
    p.write_text("uid,district,age,income\n007,A,30,10.5\n008,B,200,20\n")
    r = registry.register(engine, decl(str(p)), "o", tmp_path / "data", [roots], 10**6, "sm3")
    assert r.dataset.fingerprint.startswith("sm3:")
    t = pq.read_table(r.dataset.path)
    assert t["uid"].to_pylist() == ["007", "008"]  # identifiers stay strings
    assert r.report.clamped == {"age": 1}


def test_null_ids_are_dropped_and_counted(engine, tmp_path, roots):
    t = small(4).set_column(0, "uid", pa.array(["a", None, "c", None]))
    r = reg(engine, tmp_path, roots, decl(write(roots / "a.parquet", t)))
    assert (r.report.rows, r.report.dropped_null_ids) == (2, 2)


@pytest.mark.parametrize("mutate, problem", [
    (lambda t: t.append_column("secret", pa.array(range(10))), "not declared"),
    (lambda t: t.drop_columns(["age"]), "missing from the file"),
    (lambda t: t.set_column(3, "income", pa.array([str(i) for i in range(10)])), "must be numeric"),
    (lambda t: t.set_column(1, "district", pa.array(range(10))), "domain values do not match"),
])
def test_spec_file_mismatch_reports_every_problem(engine, tmp_path, roots, mutate, problem):
    src = write(roots / "a.parquet", mutate(small(10)))
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl(src))
    assert ei.value.code == "INVALID_REQUEST"
    assert any(problem in d["problem"] for d in ei.value.details)
    assert count(engine) == 0 and leftovers(tmp_path) == []


def test_all_violations_together(engine, tmp_path, roots):
    t = small(10).append_column("x", pa.array(range(10))).drop_columns(["age"])
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl(write(roots / "a.parquet", t)))
    assert len(ei.value.details) == 2


def test_integer_bounds_must_be_integral(engine, tmp_path, roots):
    d = decl(write(roots / "a.parquet", small()))
    cols = {**{k: v.model_dump() for k, v in d.columns.items()}, "age": {"role": "dimension", "bounds": [16.5, 100]}}
    with pytest.raises(DomainError, match="declared columns"):
        reg(engine, tmp_path, roots, decl(d.source, columns=cols))


def test_duplicate_name_leaves_first_intact(engine, tmp_path, roots):
    src = write(roots / "a.parquet", small())
    first = reg(engine, tmp_path, roots, decl(src))
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl(src))
    assert ei.value.code == "ALREADY_EXISTS"
    assert count(engine) == 1 and leftovers(tmp_path) == [first.dataset.path.name]


@pytest.mark.parametrize("make_source", [
    lambda roots, tmp: str(roots / ".." / ".." / "etc" / "passwd"),
    lambda roots, tmp: "relative/path.parquet",
    lambda roots, tmp: "/etc/passwd",
    lambda roots, tmp: str(roots / "missing.parquet"),
    lambda roots, tmp: str(roots),
])
def test_hostile_or_missing_sources(engine, tmp_path, roots, make_source):
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl(make_source(roots, tmp_path)))
    assert ei.value.code == "INVALID_REQUEST"
    assert "etc" not in ei.value.message and count(engine) == 0


def test_symlink_escaping_the_import_root(engine, tmp_path, roots):
    outside = tmp_path / "outside.parquet"
    write(outside, small())
    (roots / "link.parquet").symlink_to(outside)
    with pytest.raises(DomainError, match="outside the import"):
        reg(engine, tmp_path, roots, decl(str(roots / "link.parquet")))


def test_unreadable_and_huge_files(engine, tmp_path, roots):
    garbage = roots / "g.parquet"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(DomainError, match="could not be read"):
        reg(engine, tmp_path, roots, decl(str(garbage)))
    src = write(roots / "a.parquet", small())
    with pytest.raises(DomainError, match="larger than the limit"):
        reg(engine, tmp_path, roots, decl(src), max_bytes=100)
    (roots / "x.json").write_text(json.dumps({}))
    with pytest.raises(DomainError, match=r"\.parquet or \.csv"):
        reg(engine, tmp_path, roots, decl(str(roots / "x.json")))
    assert count(engine) == 0 and leftovers(tmp_path) == []


def test_failure_during_commit_removes_the_copy(engine, tmp_path, roots, monkeypatch):
    src = write(roots / "a.parquet", small())

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("pathlib.Path.replace", boom)
    with pytest.raises(OSError):
        reg(engine, tmp_path, roots, decl(src))
    assert count(engine) == 0 and leftovers(tmp_path) == []
