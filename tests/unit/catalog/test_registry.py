"""Registration: validation against the file, clamping, atomicity, hostile sources."""

import json
import os
from pathlib import Path

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


def test_clamping_leaves_nulls_null(engine, tmp_path, roots):
    """A batch with a value clamped keeps its NULL measures NULL (not the lower bound), so the copy and the
    report's null count agree with the source whatever the other rows hold."""
    t = small(10)
    income = t["income"].to_pylist()
    income[0] = None
    src = write(roots / "a.parquet", t.set_column(t.schema.get_field_index("income"), "income",
                                                  pa.array(income, t.schema.field("income").type)))
    r = reg(engine, tmp_path, roots, decl(src))
    assert r.report.clamped == {"income": 4}
    stored = pq.read_table(r.dataset.path)["income"].to_pylist()
    assert stored[0] is None and max(v for v in stored if v is not None) == 500


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
    lambda roots, tmp: "/etc/passwd",
    lambda roots, tmp: str(roots / "missing.parquet"),
    lambda roots, tmp: str(roots),
])
def test_hostile_or_missing_sources_get_one_answer(engine, tmp_path, roots, make_source):
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl(make_source(roots, tmp_path)))
    assert (ei.value.code, ei.value.message, ei.value.details) == (
        "NOT_FOUND_OR_FORBIDDEN", "source file not found in your import directory",
        [{"field": "source", "reason": "source.not_found"}])
    assert count(engine) == 0


def test_a_relative_source_is_malformed(engine, tmp_path, roots):
    with pytest.raises(DomainError) as ei:
        reg(engine, tmp_path, roots, decl("relative/path.parquet"))
    assert ei.value.code == "INVALID_REQUEST" and count(engine) == 0


def _refusal(engine, tmp_path, dirs, owner, source):
    with pytest.raises(DomainError) as ei:
        registry.register(engine, decl(source, name="stolen"), owner, tmp_path / "data", dirs, 10**9)
    return ei.value.code, ei.value.message, ei.value.details


def test_symlink_escaping_the_import_root(engine, tmp_path, roots):
    outside = tmp_path / "outside.parquet"
    write(outside, small())
    (roots / "link.parquet").symlink_to(outside)
    missing = _refusal(engine, tmp_path, [roots], "owner1", str(roots / "nothing.parquet"))
    assert _refusal(engine, tmp_path, [roots], "owner1", str(roots / "link.parquet")) == missing


@pytest.fixture
def two_owners(tmp_path):
    """``<root>/alice/`` holds alice's file; ``<root>/bob/`` is bob's (empty) directory."""
    root = tmp_path / "import"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    src = write(root / "alice" / "a.parquet", small())
    return root, src


def test_an_owner_cannot_register_another_owners_file_nor_learn_it_exists(engine, tmp_path, two_owners):
    root, src = two_owners
    bob = [root / "bob"]
    missing = _refusal(engine, tmp_path, bob, "bob", str(root / "alice" / "nothing.parquet"))
    assert missing[0] == "NOT_FOUND_OR_FORBIDDEN"
    before = _refusal(engine, tmp_path, bob, "bob", src)  # alice has not registered it yet
    registry.register(engine, decl(src), "alice", tmp_path / "data", [root / "alice"], 10**9)
    after = _refusal(engine, tmp_path, bob, "bob", src)
    (root / "bob" / "link.parquet").symlink_to(src)
    linked = _refusal(engine, tmp_path, bob, "bob", str(root / "bob" / "link.parquet"))
    dotdot = _refusal(engine, tmp_path, bob, "bob", str(root / "bob" / ".." / "alice" / "a.parquet"))
    in_root = _refusal(engine, tmp_path, bob, "bob", str(root / "a.parquet"))
    assert before == after == linked == dotdot == in_root == missing
    assert [d.owner for d in registry.list_all(engine)] == ["alice"]


def test_an_owner_directory_that_is_a_symlink_is_not_read(engine, tmp_path, two_owners):
    root, _ = two_owners
    (root / "bob").rmdir()
    (root / "bob").symlink_to(root / "alice")
    missing = _refusal(engine, tmp_path, [root / "bob"], "bob", str(root / "bob" / "nothing.parquet"))
    assert _refusal(engine, tmp_path, [root / "bob"], "bob", str(root / "bob" / "a.parquet")) == missing


def test_a_copy_of_another_owners_registered_content_is_refused(engine, tmp_path, two_owners):
    root, src = two_owners
    first = registry.register(engine, decl(src), "alice", tmp_path / "data", [root / "alice"], 10**9)
    assert first.report.source_fingerprint is not None
    assert first.dataset.ingest_report["source_fingerprint"] == first.report.source_fingerprint
    copy = root / "bob" / "mine.parquet"
    copy.write_bytes(Path(src).read_bytes())
    refused = _refusal(engine, tmp_path, [root / "bob"], "bob", str(copy))
    assert refused == ("POLICY_DENIED", "this content is already registered by another owner",
                       [{"field": "source", "reason": "dataset.content_registered_by_another_owner"}])
    assert "alice" not in str(refused) and "a.parquet" not in str(refused)
    # other declared bounds change the ingested copy, not the source bytes: still refused
    cols = {**{k: v.model_dump() for k, v in decl(src).columns.items()}, "income": {"role": "measure",
                                                                                 "bounds": [0, 10_000]}}
    with pytest.raises(DomainError) as ei:
        registry.register(engine, decl(str(copy), name="again", columns=cols), "bob", tmp_path / "data",
                          [root / "bob"], 10**9)
    assert ei.value.code == "POLICY_DENIED"
    assert count(engine) == 1 and leftovers(tmp_path) == [first.dataset.path.name]
    # the same owner may register its own content under another name
    registry.register(engine, decl(src, name="t_again"), "alice", tmp_path / "data", [root / "alice"], 10**9)
    assert count(engine) == 2


def test_the_ingested_copy_of_another_owners_data_is_refused(engine, tmp_path, two_owners):
    """A CSV of the same rows ingests to the same Parquet copy as alice's file: refused at the insert."""
    root, _ = two_owners
    alice_csv = root / "alice" / "a.csv"
    alice_csv.write_text("uid,district,age,income\nu1,A,30,10.5\nu2,B,40,20.0\n")
    registry.register(engine, decl(str(alice_csv)), "alice", tmp_path / "data", [root / "alice"], 10**9)
    bob_csv = root / "bob" / "b.csv"
    bob_csv.write_text("uid,district,age,income\r\nu1,A,30,10.5\r\nu2,B,40,20.0\r\n")  # other bytes
    assert _refusal(engine, tmp_path, [root / "bob"], "bob", str(bob_csv))[0] == "POLICY_DENIED"
    assert count(engine) == 1 and len(leftovers(tmp_path)) == 1


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

    monkeypatch.setattr(os, "replace", boom)  # the rename into place (catalog.durable.commit_temp)
    with pytest.raises(OSError):
        reg(engine, tmp_path, roots, decl(src))
    assert count(engine) == 0 and leftovers(tmp_path) == []
