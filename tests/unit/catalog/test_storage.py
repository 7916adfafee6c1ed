"""Shared storage: objects under relative keys, rows that name keys (a home copied elsewhere keeps working),
fingerprints verified at read, and temporary files of several hosts sharing one storage root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from catalog import _tables, durable, registry
from catalog.columns import DatasetSpec
from catalog.sealed import GivenKeys, SealedError, Sealer
from catalog.storage import (
    FINGERPRINT_MISMATCH,
    MISSING,
    IntegrityFailure,
    LocalStorage,
    Storage,
    bind_data_area,
    check_key,
    forget_verified,
    verify_file,
)
from catalog.store import make_engine


class _Keys(GivenKeys):
    """Data keys created on demand (derived from the object id: a test key service, never random)."""

    def new_data_key(self, object_id: str) -> bytes:
        self._keys[object_id] = object_id.encode().ljust(32, b"k")[:32]
        return self._keys[object_id]

    def destroy(self, object_id: str) -> bool:
        return self._keys.pop(object_id, None) is not None


def _spec(name: str, source: str) -> DatasetSpec:
    return DatasetSpec.model_validate({"name": name, "source": source, "columns": {
        "uid": {"role": "id"}, "income": {"role": "measure", "bounds": [0, 500]}}})


def _home(root, *, sealer=None, names=("t",)):
    """A home under ``root``: a store, an import directory and registered datasets."""
    (root / "import").mkdir(parents=True)
    engine = make_engine(f"sqlite:///{root / 'meta.db'}")
    _tables.metadata.create_all(engine)
    out = {}
    for i, name in enumerate(names):
        src = root / "import" / f"{name}.parquet"
        pq.write_table(pa.table({"uid": [f"u{j}" for j in range(20)], "income": [float(j + i) for j in range(20)]}),
                       src)
        out[name] = registry.register(engine, _spec(name, str(src)), "owner1", root / "data", [root / "import"],
                                      1 << 30, sealer=sealer).dataset
    return engine, out


def test_local_storage_writes_atomically_and_lists_objects_not_temporary_files(tmp_path):
    s = LocalStorage(tmp_path / "root")
    assert isinstance(s, Storage)
    s.write_bytes("a/b.bin", b"hello")
    s.write_stream("a/c.bin", [b"x", b"yz"])
    with s.staged("d.bin") as tmp:
        tmp.write_bytes(b"staged")
    with pytest.raises(RuntimeError), s.staged("never.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    (tmp_path / "root" / "a" / durable.temp_path(tmp_path / "root" / "a" / "e.bin").name).write_bytes(b"tmp")
    assert s.list() == ["a/b.bin", "a/c.bin", "d.bin"] and s.list("a/") == ["a/b.bin", "a/c.bin"]
    assert s.exists("a/c.bin") and s.size("a/c.bin") == 3 and not s.exists("never.bin")
    with s.open("a/b.bin") as f:
        assert f.read() == b"hello"
    with s.local_path("d.bin") as p:
        assert p.read_bytes() == b"staged"
    assert s.delete("d.bin") and not s.delete("d.bin")
    assert s.key_of(tmp_path / "root" / "a" / "b.bin") == "a/b.bin" and s.key_of(tmp_path / "x") is None
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a//b", ".hidden", "a/.tmp", "a\\b"):
        with pytest.raises(ValueError):
            check_key(bad)


def test_rows_name_keys_so_a_registered_home_copied_elsewhere_keeps_working(tmp_path):
    engine, ds = _home(tmp_path / "one")
    t = ds["t"]
    assert t.key == t.path.name and "/" not in t.key  # the row records a key, not a location
    with engine.connect() as c:
        assert c.execute(select(_tables.datasets.c.path)).scalar_one() == t.key
    engine.dispose()
    shutil.copytree(tmp_path / "one", tmp_path / "two")  # byte for byte, as the test suite's home templates do
    shutil.rmtree(tmp_path / "one")
    copy = make_engine(f"sqlite:///{tmp_path / 'two' / 'meta.db'}")
    bind_data_area(copy, LocalStorage(tmp_path / "two" / "data"))
    moved = registry.get(copy, "t")
    assert moved is not None and moved.path == tmp_path / "two" / "data" / t.key
    registry.verify_copy(moved)
    assert pq.read_table(moved.path).num_rows == 20


def test_absolute_paths_of_older_homes_are_read_as_they_are_and_follow_a_moved_home(tmp_path):
    engine, ds = _home(tmp_path / "old" / "home")
    legacy = str(ds["t"].path)  # what an older home recorded
    with engine.begin() as c:
        c.execute(_tables.datasets.update().values(path=legacy))
    assert registry.get(engine, "t").path == ds["t"].path
    engine.dispose()
    shutil.move(tmp_path / "old" / "home", tmp_path / "new")
    moved = make_engine(f"sqlite:///{tmp_path / 'new' / 'meta.db'}")
    bind_data_area(moved, LocalStorage(tmp_path / "new" / "data"))
    got = registry.get(moved, "t")
    assert got is not None and got.key == legacy and got.path == tmp_path / "new" / "data" / ds["t"].path.name
    registry.verify_copy(got)


def test_a_plain_copy_with_a_flipped_byte_fails_closed(tmp_path):
    _engine, ds = _home(tmp_path)
    t = ds["t"]
    registry.verify_copy(t)  # verified, remembered by the file's identity
    data = bytearray(t.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    st = t.path.stat()
    t.path.write_bytes(bytes(data))
    os.utime(t.path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and modification time: the ctime still moves
    with pytest.raises(IntegrityFailure) as e:
        registry.verify_copy(t)
    assert e.value.reason == FINGERPRINT_MISMATCH and e.value.code == "UNAVAILABLE"
    assert e.value.details == [{"reason": FINGERPRINT_MISMATCH}] and e.value.key == t.key
    t.path.unlink()
    with pytest.raises(IntegrityFailure) as e:
        registry.verify_copy(t)
    assert e.value.reason == MISSING


def test_sealed_copies_are_bound_to_their_dataset_and_authenticated_by_the_aead(tmp_path):
    sealer = Sealer("intl", _Keys({}))
    _engine, ds = _home(tmp_path, sealer=sealer, names=("a", "b"))
    a, b = ds["a"], ds["b"]
    registry.verify_copy(a, sealer)
    registry.verify_copy(b, sealer)
    original = a.path.read_bytes()
    shutil.copyfile(b.path, a.path)  # b's sealed file put in place of a's: it decrypts, but under b's key
    for given in (None, sealer):
        with pytest.raises(IntegrityFailure) as e:
            registry.verify_copy(a, given)
        assert e.value.reason == FINGERPRINT_MISMATCH
    flipped = bytearray(original)
    flipped[-20] ^= 0x01
    a.path.write_bytes(bytes(flipped))
    registry.verify_copy(a)  # without the key service only the header is checked (it still names a's key) ...
    with pytest.raises(SealedError):
        sealer.read_file(a.path)  # ... and the reader's AEAD refuses the flipped byte
    with pytest.raises(IntegrityFailure) as e:  # with it, the flipped byte fails the check itself
        registry.verify_copy(a, sealer)
    assert e.value.reason == FINGERPRINT_MISMATCH
    a.path.write_bytes(original)
    registry.verify_copy(a, sealer)


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    _engine, ds = _home(tmp_path)
    t = ds["t"]
    forget_verified()
    calls = []
    real = registry.verify_file.__globals__["file_fingerprint"]
    monkeypatch.setitem(verify_file.__globals__, "file_fingerprint", lambda *a: calls.append(1) or real(*a))
    registry.verify_copy(t)
    registry.verify_copy(t)
    assert len(calls) == 1
    t.path.write_bytes(t.path.read_bytes())  # rewritten: hashed again (and still the same content)
    registry.verify_copy(t)
    assert len(calls) == 2


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_sweep_judges_only_its_own_hosts_writers_and_removes_stale_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("VEILBOX_HOST_ID", "host-a")
    dead = _dead_pid()
    mine = durable.temp_path(tmp_path / "x.parquet")
    assert mine.name.startswith(f".x.parquet.{os.getpid()}@host-a.") and durable.is_temp_name(mine.name)
    own_dead = tmp_path / f".x.parquet.{dead}@host-a.{'0' * 16}.tmp"
    own_live = tmp_path / f".y.parquet.{os.getpid()}@host-a.{'1' * 16}.tmp"
    other_host = tmp_path / f".z.parquet.{dead}@host-b.{'2' * 16}.tmp"  # its pid means nothing here
    other_stale = tmp_path / f".w.parquet.{dead}@host-b.{'3' * 16}.tmp"
    unhosted_dead = tmp_path / f".v.parquet.{dead}.{'4' * 16}.tmp"  # written before hosts were named
    for p in (own_dead, own_live, other_host, other_stale, unhosted_dead):
        p.write_bytes(b"partial")
    old = time.time() - durable.STALE_AFTER_S - 60
    os.utime(other_stale, (old, old))
    removed = durable.sweep_temp(tmp_path)
    assert sorted(removed) == sorted([own_dead, other_stale, unhosted_dead])
    assert own_live.exists() and other_host.exists()
    monkeypatch.setenv("VEILBOX_HOST_ID", "host b/1")  # sanitised to a name part
    assert durable.host_id() == "host-b-1"


def test_put_file_moves_a_finished_file_under_its_key_whole(tmp_path):
    """A file built at `temp_file` is renamed into place; one built elsewhere is copied in through a staged
    temporary file; either way the source is gone and no temporary file is left."""
    s = LocalStorage(tmp_path / "root")
    beside = s.temp_file("a/x.parquet", "ingest-x")
    beside.write_bytes(b"one")
    s.put_file("a/x.parquet", beside)
    elsewhere = tmp_path / "built.bin"
    elsewhere.write_bytes(b"two")
    s.put_file("b/y.bin", elsewhere)
    assert s.path_of("a/x.parquet").read_bytes() == b"one" and s.path_of("b/y.bin").read_bytes() == b"two"
    assert not beside.exists() and not elsewhere.exists()
    assert s.list() == ["a/x.parquet", "b/y.bin"]
    assert sorted(p.name for p in (tmp_path / "root").rglob("*") if p.is_file()) == ["x.parquet", "y.bin"]
