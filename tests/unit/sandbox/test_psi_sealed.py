"""PSI setups sealed at rest (`sandbox.psi.SetupStore` with the home's sealer): every file of a setup opens only
with the setup's data key, none shows an id; a plain setup from before is re-sealed with the same padded set."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from catalog.columns import Role
from catalog.sealed import SealedError, Sealer, is_sealed
from sandbox import psi as setups

IDS = [f"P{i:05d}" for i in range(40)]
NO_WORKER: Any = None  # read_ids is replaced: no worker is asked


class _Keys:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def data_key(self, object_id: str) -> bytes:
        return self.keys[object_id]

    def new_data_key(self, object_id: str) -> bytes:
        self.keys[object_id] = os.urandom(32)
        return self.keys[object_id]

    def destroy(self, object_id: str) -> bool:
        return self.keys.pop(object_id, None) is not None


def _dataset() -> Any:
    return SimpleNamespace(name="tax_income", fingerprint="sha256:" + "a" * 64, rows=len(IDS),
                           columns_with=lambda *roles: ["person_id"] if Role.ID in roles else [])


@pytest.fixture
def read_ids(monkeypatch):
    monkeypatch.setattr(setups, "read_ids", lambda worker, ds, column: list(IDS))


@pytest.mark.parametrize("suite", ["intl", "sm"])
def test_every_file_of_a_setup_is_sealed_under_its_own_key(tmp_path, read_ids, suite):
    keys = _Keys()
    store = setups.SetupStore(tmp_path / "work", tmp_path / "keys", sealer=Sealer(suite, keys))
    size = store.psi(NO_WORKER, _dataset(), "size")
    anon = store.anon(NO_WORKER, _dataset(), "person_id", 4)
    returned = setups.psi.evaluate(setups.group.derive_key(b"b" * 32, b"bank"), size.elements)
    table_id = store.store_table(size, "bank_a", returned)
    files = [p for p in (tmp_path / "work" / "psi").rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert {p.name for p in files} >= {"set.bin", "meta.json", "evaluated.bin", "subjects.json"}
    assert all(is_sealed(p) for p in files) and not any(b"P000" in p.read_bytes() for p in files)
    assert set(keys.keys) == {f"psi:{size.digest}", f"psi:{anon.digest}"}
    again = setups.SetupStore(tmp_path / "work", tmp_path / "keys", sealer=Sealer(suite, keys))
    assert again.psi(NO_WORKER, _dataset(), "size").elements == size.elements  # the same padded set, read back
    assert again.anon(NO_WORKER, _dataset(), "person_id", 4).subjects == IDS
    assert (again.table(size, "bank_a", table_id) == store.table(size, "bank_a", table_id)).all()


def test_a_plain_setup_from_before_is_resealed_with_the_same_set(tmp_path, read_ids):
    plain = setups.SetupStore(tmp_path / "work", tmp_path / "keys").psi(NO_WORKER, _dataset(), "members")
    set_file = plain.directory / "set.bin"
    assert not is_sealed(set_file)
    sealed = setups.SetupStore(tmp_path / "work", tmp_path / "keys", sealer=Sealer("intl", _Keys()))
    assert sealed.psi(NO_WORKER, _dataset(), "members").elements == plain.elements
    assert is_sealed(set_file) and is_sealed(plain.directory / "meta.json")


def test_a_setup_file_swapped_for_another_setups_is_refused(tmp_path, read_ids):
    keys = _Keys()
    store = setups.SetupStore(tmp_path / "work", tmp_path / "keys", sealer=Sealer("intl", keys))
    size = store.psi(NO_WORKER, _dataset(), "size")
    anon = store.anon(NO_WORKER, _dataset(), "person_id", 4)
    root = tmp_path / "work" / "psi"
    (root / anon.digest / "evaluated.bin").write_bytes((root / size.digest / "set.bin").read_bytes())
    again = setups.SetupStore(tmp_path / "work", tmp_path / "keys", sealer=Sealer("intl", keys))
    with pytest.raises(SealedError):  # it would decrypt (the home holds both keys): refused by whose key it is
        again.anon(NO_WORKER, _dataset(), "person_id", 4)
