"""Durable files: temporary name, fsync, rename, directory fsync; crashed writers' leftovers are swept;
a source that is cut short or changes during registration is refused with nothing left behind."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from catalog import _tables, durable, ingest, registry, storage
from catalog.columns import DatasetSpec
from catalog.errors import DomainError
from catalog.store import make_engine


class Crash(BaseException):
    """Stands in for the process dying between the write and the rename."""


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync as ("dir" | "file", path), in order."""
    calls: list[tuple[str, str]] = []
    real = os.fsync

    def record(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", target))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_atomic_write_fsyncs_the_file_then_the_directory(tmp_path, fsyncs):
    final = tmp_path / "side" / "card.json"
    durable.atomic_write_bytes(final, b"{}")
    assert final.read_bytes() == b"{}"
    assert [k for k, _ in fsyncs][-1] == "dir" and fsyncs[-1][1] == str(final.parent)
    assert "file" in [k for k, _ in fsyncs[:-1]]
    assert os.listdir(final.parent) == ["card.json"]  # no temporary name left


def test_a_crash_between_write_and_rename_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    final = tmp_path / "model.safetensors"

    def crash(*_a):
        raise Crash

    monkeypatch.setattr(durable.os, "replace", crash)
    with pytest.raises(Crash):
        durable.atomic_write_bytes(final, b"weights")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_a_crash_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    final = tmp_path / "set.bin"
    durable.atomic_write_bytes(final, b"old")
    with pytest.raises(Crash), durable.atomic_path(final) as tmp:
        tmp.write_bytes(b"half of the new")
        raise Crash
    assert final.read_bytes() == b"old" and os.listdir(tmp_path) == ["set.bin"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_dead_writers_leftovers_and_keeps_live_ones(tmp_path):
    data = tmp_path / "data"
    (data / "job1").mkdir(parents=True)
    dead, live = _dead_pid(), os.getpid()
    gone = [data / f".ingest-t.{dead}.{'a' * 16}.tmp", data / "job1" / f".model.safetensors.{dead}.{'b' * 16}.tmp",
            data / f".ingest-old-{'c' * 16}.parquet"]  # the name older homes used
    kept = [data / f".ingest-u.{live}.{'d' * 16}.tmp", data / "t-0123.parquet", data / ".hidden"]
    for p in gone + kept:
        p.write_bytes(b"partial")
    removed = durable.sweep_temp(data, tmp_path / "missing")
    assert sorted(removed) == sorted(gone)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)


# --- registration ------------------------------------------------------------------------------------------------

@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(e)
    return e


def _table(n=2000):
    return pa.table({"uid": [f"u{i}" for i in range(n)], "age": [20 + i % 50 for i in range(n)]})


def _spec(source: Path) -> DatasetSpec:
    return DatasetSpec.model_validate({"name": "t", "source": str(source), "columns": {
        "uid": {"role": "id"}, "age": {"role": "dimension", "bounds": [16, 100]}}})


def _register(engine, tmp_path, source):
    return registry.register(engine, _spec(source), "owner1", tmp_path / "data", [tmp_path / "import"], 10**9)


def _nothing_left(engine, tmp_path):
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(_tables.datasets)).scalar() == 0
    data = tmp_path / "data"
    assert not data.exists() or list(data.iterdir()) == []


@pytest.fixture
def imports(tmp_path):
    (tmp_path / "import").mkdir()
    return tmp_path / "import"


def test_registration_fsyncs_the_copy_and_the_directory_before_the_row_commits(engine, tmp_path, imports, fsyncs,
                                                                                monkeypatch):
    src = imports / "t.parquet"
    pq.write_table(_table(), src)
    seen_at_commit: list[int] = []
    real_commit = durable.commit_temp

    def commit(tmp, final):
        real_commit(tmp, final)
        seen_at_commit.append(len(fsyncs))

    monkeypatch.setattr(storage, "commit_temp", commit)  # the registered copy is put through catalog.storage
    ds = _register(engine, tmp_path, src).dataset
    assert ds.path.exists() and seen_at_commit
    assert ("dir", str(ds.path.parent)) in fsyncs[: seen_at_commit[0]]
    assert [p.name for p in ds.path.parent.iterdir()] == [ds.path.name]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_a_source_truncated_mid_file_is_refused_with_nothing_left(engine, tmp_path, imports, suffix):
    src = imports / f"t.{suffix}"
    if suffix == "parquet":
        pq.write_table(_table(), src)
    else:
        src.write_text("uid,age\n" + "".join(f"u{i},{20 + i % 50}\n" for i in range(2000)))
    data = src.read_bytes()
    cut = len(data) // 2
    if suffix == "csv":
        cut = data.index(b",", cut)  # mid-row: the last line has fewer fields than the header
    src.write_bytes(data[:cut])
    with pytest.raises(DomainError) as ei:
        _register(engine, tmp_path, src)
    assert ei.value.code == "INVALID_REQUEST"
    assert ei.value.details == [{"field": "source", "reason": "source.unreadable"}]
    _nothing_left(engine, tmp_path)


def test_a_source_changed_between_its_fingerprint_and_its_copy_is_refused(engine, tmp_path, imports, monkeypatch):
    src = imports / "t.parquet"
    pq.write_table(_table(), src)
    real_ingest = ingest.ingest

    def ingest_then_truncate(*a, **kw):
        out = real_ingest(*a, **kw)
        with open(src, "r+b") as f:  # the owner's export is still being written, or is cut short
            f.truncate(os.path.getsize(src) // 2)
        return out

    monkeypatch.setattr(registry, "ingest", ingest_then_truncate)
    with pytest.raises(DomainError) as ei:
        _register(engine, tmp_path, src)
    assert ei.value.code == "INVALID_REQUEST"
    assert ei.value.details == [{"field": "source", "reason": "source.changed_during_ingest"}]
    _nothing_left(engine, tmp_path)
