"""PSI setups over one home shared by several processes (`sandbox.psi.SetupStore`): two stores — two processes —
asking for the same setup at once compute it once and serve the same padded set; the master key is created whole
by one of them. Two versions of a set would differ only in their random dummies, and their intersection would
reveal the real size the padding hides."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from catalog.columns import Role
from sandbox import psi as setups

IDS = [f"P{i:05d}" for i in range(40)]


def _dataset() -> Any:
    return SimpleNamespace(name="tax_income", fingerprint="sha256:" + "a" * 64, rows=len(IDS),
                           columns_with=lambda *roles: ["person_id"] if Role.ID in roles else [])


def test_two_processes_compute_a_setup_once_and_serve_the_same_set(tmp_path, monkeypatch):
    reads: list[int] = []
    started = threading.Barrier(2)

    def slow_read_ids(worker: Any, ds: Any, column: str) -> list[str]:
        reads.append(1)
        time.sleep(0.5)  # a long computation: the other store asks meanwhile
        return list(IDS)

    monkeypatch.setattr(setups, "read_ids", slow_read_ids)
    first = setups.SetupStore(tmp_path / "work", tmp_path / "keys")
    second = setups.SetupStore(tmp_path / "work", tmp_path / "keys")

    def ask(store: setups.SetupStore) -> Any:
        started.wait()
        return store.psi(None, _dataset(), "size")  # type: ignore[arg-type]

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(ask, (first, second))
    assert reads == [1]  # computed once; the other waited and read the disk copy
    assert a.elements == b.elements and a.ids == b.ids == len(IDS)
    assert len(a.elements) > len(IDS)  # padded with dummies: the same dummies in both


def test_the_master_key_is_created_whole_by_one_process(tmp_path):
    keys = tmp_path / "keys"
    go = threading.Barrier(8)

    def create(_: int) -> bytes:
        go.wait()
        return setups.master_key(keys)

    with ThreadPoolExecutor(8) as pool:
        got = set(pool.map(create, range(8)))
    assert len(got) == 1 and len(next(iter(got))) == 32
    assert sorted(p.name for p in keys.iterdir()) == [setups.MASTER_KEY]  # no temporary file left
