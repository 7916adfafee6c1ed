"""The engine pool (`sandbox.jobs.query.QueryEngines`): several worker processes per dataset, started on first
need, each lent to one query at a time; a bounded wait for a free one (then ``EngineFailure("busy")``, before
any data is read); a worker that dies fails only its own query closed and is replaced; a changed fingerprint
retires the pool."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog._tables import metadata
from catalog.columns import DatasetSpec
from catalog.datagen import generate
from catalog.registry import Dataset, register
from catalog.store import make_engine
from sandbox.engine import EngineFailure, QueryWorker
from sandbox.jobs.query import QueryEngines
from sandbox.sql import QueryPlan, TableView, prepare, run

WAIT_S = 60.0  # generous: a stuck lease fails the test, a slow machine does not
SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("pool")
    engine = make_engine(f"sqlite:///{root / 'meta.db'}")
    metadata.create_all(engine)
    gen = generate(root / "incoming", rows=2000, seed=3)
    spec = DatasetSpec.model_validate(json.loads(gen.tax_income_spec.read_text()))
    ds = register(
        engine, spec, owner="owner", data_dir=root / "data", import_roots=[root / "incoming"], max_source_bytes=1 << 30
    ).dataset
    engine.dispose()
    return ds


@pytest.fixture(scope="module")
def plan(dataset: Dataset) -> QueryPlan:
    return prepare(SQL, {"tax_income": TableView(dataset, frozenset(["district"]))}, 1)


@pytest.fixture
def engines() -> Iterator[QueryEngines]:
    e = QueryEngines(threads=1, memory_limit="256MB", timeout_s=60, per_dataset=2, wait_s=WAIT_S)
    yield e
    e.close()


def test_workers_start_on_first_need_and_two_queries_run_at_once(engines, dataset, plan):
    assert engines.in_use(dataset.name) == 0  # nothing started before the first lease
    with engines.lease(dataset) as a, engines.lease(dataset) as b:
        assert a is not b and a.alive and b.alive and a.pid != b.pid
        assert engines.in_use(dataset.name) == 2  # both lent at once: two processes over one dataset
        ra, rb = run(plan, a), run(plan, b)
        assert ra.incident is None and rb.incident is None
    assert engines.in_use(dataset.name) == 0
    with engines.lease(dataset) as again:  # a returned worker is lent again, not started anew
        assert again in (a, b)


def test_queries_on_one_dataset_are_in_flight_together(engines, dataset, plan, monkeypatch):
    """Two queries are inside their workers at the same time: each waits, inside ``execute``, until the other is
    in too (a pool that ran them one after the other would never let either through)."""
    both_in = threading.Barrier(2, timeout=WAIT_S)
    inside = threading.Semaphore(0)
    release = threading.Event()
    pids: list[int | None] = []
    real = QueryWorker.execute

    def held(self: QueryWorker, request: Any) -> Any:
        both_in.wait()
        pids.append(self.pid)
        inside.release()
        assert release.wait(WAIT_S)
        return real(self, request)

    monkeypatch.setattr(QueryWorker, "execute", held)
    results: list[Any] = []

    def one() -> None:
        with engines.lease(dataset) as w:
            results.append(run(plan, w))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        assert inside.acquire(timeout=WAIT_S) and inside.acquire(timeout=WAIT_S)
        assert engines.in_use(dataset.name) == 2 and len(set(pids)) == 2  # two processes, both in flight
    finally:
        release.set()
        for th in threads:
            th.join(WAIT_S)
    assert len(results) == 2 and all(r.incident is None for r in results)


def test_a_lease_beyond_the_pool_waits_for_a_worker_to_come_back(engines, dataset):
    got, entered = threading.Event(), threading.Event()
    with engines.lease(dataset) as a, engines.lease(dataset) as b:

        def third() -> None:
            entered.set()
            with engines.lease(dataset) as c:
                assert c in (a, b)
                got.set()

        th = threading.Thread(target=third)
        th.start()
        assert entered.wait(WAIT_S)
        assert not got.is_set()  # both workers are lent: the third lease waits
    th.join(WAIT_S)
    assert got.is_set()


def test_a_lease_that_waits_too_long_fails_before_reading(dataset):
    engines = QueryEngines(threads=1, memory_limit="256MB", timeout_s=60, per_dataset=1, wait_s=0.05)
    try:
        with engines.lease(dataset), pytest.raises(EngineFailure) as e, engines.lease(dataset):
            pass
        assert e.value.reason == "busy"
    finally:
        engines.close()


def test_a_worker_that_dies_fails_only_its_query_closed_and_is_replaced(engines, dataset, plan):
    with engines.lease(dataset) as a, engines.lease(dataset) as b:
        dead_pid = a.pid
        assert dead_pid is not None
        real_reply = a._reply

        def crash_then_reply(timeout: float) -> dict[str, Any]:  # the child dies with the query in flight
            os.kill(dead_pid, signal.SIGKILL)
            return real_reply(timeout)

        a._reply = crash_then_reply  # type: ignore[method-assign]
        crashed = run(plan, a)
        fine = run(plan, b)
    assert crashed.incident is not None  # released over an empty input: closed, the owner sees the incident
    assert fine.incident is None  # the other pool member was not affected
    assert not a.alive
    with engines.lease(dataset) as w1, engines.lease(dataset) as w2:  # the dead one was dropped, a new one started
        assert a not in (w1, w2) and dead_pid not in (w1.pid, w2.pid)
        assert run(plan, w1).incident is None and run(plan, w2).incident is None


def test_a_changed_fingerprint_retires_the_pool(engines, dataset):
    changed = dataclasses.replace(dataset, fingerprint="sha256:" + "0" * 64)
    with engines.lease(dataset) as old:
        with engines.lease(changed) as new:
            assert new is not old
        assert old.alive  # lent: it finishes its query
    assert not old.alive  # stopped when it came back
    with engines.lease(changed) as again:
        assert again is new


def test_a_worker_that_cannot_start_fails_the_lease_and_frees_its_place(engines, dataset):
    missing = dataclasses.replace(dataset, path=Path("/nonexistent/tax_income.parquet"), fingerprint="sha256:x")
    for _ in range(3):  # more than the pool: a failed start does not keep its place
        with pytest.raises(EngineFailure), engines.lease(missing):
            pass
    assert engines.in_use(dataset.name) == 0
