"""No head-of-line blocking: heavy calls run in a lane of their own (`gateway.deps.HeavyLane`) over a pool of
engine processes per dataset (`sandbox.jobs.query.QueryEngines`), so a plain check, ``/health`` and ``/ready``
answer while more heavy queries than the pool and the lane hold are blocked inside the engines; the lane's queue
is bounded (``QUOTA_EXCEEDED`` reason ``service.busy`` with ``Retry-After``), as is each principal's share
(reason ``principal.in_flight``).

The engines are blocked deterministically: `sandbox.jobs.query.run` (the call made with a leased worker) is
wrapped to wait for an Event. Assertions are about order and counts, never about time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import deps
from gateway.settings import Settings
from sandbox.jobs import query as query_jobs

WAIT_S = 120.0  # generous: a stuck call fails the test, a slow machine does not
LANE, QUEUE, ENGINES = 4, 4, 2
HEAVY = LANE + QUEUE + 4  # two in the engines, two waiting for an engine, four queued, four refused
SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
PRODUCT = {
    "name": "income_at_least",
    "dataset": "tax_income",
    "subject_column": "person_id",
    "predicate": "monthly_income >= :threshold",
    "params": {"threshold": "number"},
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "heavy_lane": LANE,
            "heavy_queue": QUEUE,
            "heavy_wait_s": 3600.0,
            "engines_per_dataset": ENGINES,
            "engine_wait_s": 3600.0,
            "max_inflight_per_principal": 64,
        }
    )


def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


class EngineGate:
    """Wraps the run of a query on its leased worker: records the worker's process and waits for ``open``."""

    def __init__(self, real: Any) -> None:
        self.real, self.open = real, threading.Event()
        self.pids: list[int | None] = []
        self._lock = threading.Lock()

    def __call__(self, plan: Any, worker: Any, **kw: Any) -> Any:
        with self._lock:
            self.pids.append(worker.pid)
        assert self.open.wait(WAIT_S), "the engines were never released"
        return self.real(plan, worker, **kw)

    @property
    def entered(self) -> int:
        with self._lock:
            return len(self.pids)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineGate]:
    g = EngineGate(query_jobs.run)
    monkeypatch.setattr(query_jobs, "run", g)
    yield g
    g.open.set()


@pytest.fixture
def lanes(monkeypatch: pytest.MonkeyPatch) -> list[deps.HeavyLane]:
    """The gateway's heavy lane, as soon as a heavy call has created it."""
    seen: list[deps.HeavyLane] = []
    real = deps.heavy_lane

    def capture(app: Any) -> deps.HeavyLane:
        lane = real(app)
        if not seen:
            seen.append(lane)
        return lane

    monkeypatch.setattr(deps, "heavy_lane", capture)
    return seen


@pytest.fixture
def world(parties: Any) -> dict[str, Any]:
    parties.owner.define_verification(PRODUCT)
    return {"query_ag": parties.agreement()["id"], "check_ag": parties.agreement("icbc-wuxi")["id"]}


def _post(url: str, client: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    """``client``'s call on a connection of its own (the typed client's is not shared across threads)."""
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        return http.post(path, headers={"Authorization": client._http.headers["Authorization"]}, json=body)


def test_short_calls_answer_while_heavy_queries_fill_the_engines_the_lane_and_its_queue(parties, world, gate, lanes):
    url, ops = parties.service.url, parties.operator
    done: list[str] = []  # completion order
    answers: list[httpx.Response] = []
    guard = threading.Lock()

    def heavy() -> None:
        r = _post(url, ops, "/v1/queries", {"agreement_id": world["query_ag"], "sql": SQL, "epsilon": "0.1"})
        with guard:
            answers.append(r)
            done.append(f"heavy {r.status_code}")

    threads = [threading.Thread(target=heavy) for _ in range(HEAVY)]
    for th in threads:
        th.start()
    try:
        until(lambda: gate.entered == ENGINES, "two queries in the engines")
        until(lambda: bool(lanes) and lanes[0].running == LANE and lanes[0].waiting == QUEUE, "lane and queue full")
        until(lambda: len(answers) == HEAVY - LANE - QUEUE, "the calls beyond the queue are refused")
        assert len(set(gate.pids)) == ENGINES  # two engine processes over one dataset, both in flight

        check = parties.bank.check(
            "income_at_least", world["check_ag"], "P0000001", {"threshold": 1000}, consent_ref="c-1"
        )
        done.append("check")
        with httpx.Client(base_url=url, timeout=WAIT_S) as http:
            health, ready = http.get("/health"), http.get("/ready")
        done.append("health+ready")

        assert isinstance(check["result"], bool) and check["receipt"]
        assert health.status_code == 200 and ready.status_code == 200 and ready.json()["status"] == "ready"
        # still blocked while they answered: nothing more reached an engine, the queue is still full
        assert not gate.open.is_set() and gate.entered == ENGINES
        assert lanes[0].running == LANE and lanes[0].waiting == QUEUE
    finally:
        gate.open.set()
        for th in threads:
            th.join(WAIT_S)
    assert done.index("check") < done.index("health+ready") < done.index("heavy 200")
    assert all(d == "heavy 429" for d in done[: done.index("check")])  # only refusals came before
    refused = [r for r in answers if r.status_code == 429]
    released = [r for r in answers if r.status_code == 200]
    assert len(refused) == HEAVY - LANE - QUEUE and len(released) == LANE + QUEUE
    for r in refused:
        assert r.headers["Retry-After"] == str(deps.RETRY_AFTER_S)
        assert r.json()["error"]["code"] == "QUOTA_EXCEEDED"
        assert r.json()["error"]["details"] == [{"reason": deps.BUSY_REASON}]
    assert all(r.json()["state"] == "released" for r in released)
    assert lanes[0].running == 0 and lanes[0].waiting == 0  # every place given back
    entries = parties.service.ctx.audit.entries(0, 100_000)[0]
    busy = [e for e in entries if e["code"] == "QUOTA_EXCEEDED"]
    assert len(busy) == len(refused) and all(e["action"] == "query.run" and e["epsilon"] is None for e in busy)


def test_one_call_beyond_the_principal_limit_is_refused_with_retry_after(parties, world, gate):
    url = parties.service.url
    parties.service.ctx.caches.inflight.limit = ENGINES
    body = {"agreement_id": world["query_ag"], "sql": SQL, "epsilon": "0.1"}
    held: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: held.append(_post(url, parties.operator, "/v1/queries", body)))
        for _ in range(ENGINES)
    ]
    for th in threads:
        th.start()
    try:
        until(lambda: gate.entered == ENGINES, "the caller's queries in the engines")
        refused = _post(url, parties.operator, "/v1/queries", body)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == str(deps.RETRY_AFTER_S)
        assert refused.json()["error"]["details"] == [{"reason": deps.IN_FLIGHT_REASON, "limit": ENGINES}]
        other = parties.bank.check(
            "income_at_least", world["check_ag"], "P0000001", {"threshold": 1000}, consent_ref="c-1"
        )  # another principal's short call is not held back
        assert isinstance(other["result"], bool)
        assert not gate.open.is_set() and gate.entered == ENGINES
    finally:
        gate.open.set()
        for th in threads:
            th.join(WAIT_S)
    assert [r.status_code for r in held] == [200] * ENGINES


def test_the_lane_routes_are_heavy_routes_of_the_app(service):
    """A renamed route cannot silently leave the lane: every name in `LANE_ROUTES` is an operation of the app
    that takes `heavy_call`."""
    from gateway.app import create_app

    heavy = set()
    todo = list(create_app(service.ctx).routes)
    while todo:
        route = todo.pop()
        if hasattr(route, "original_router"):
            todo.extend(route.original_router.routes)
            continue
        deps_of, calls = list(getattr(getattr(route, "dependant", None), "dependencies", [])), set()
        while deps_of:
            dep = deps_of.pop()
            calls.add(dep.call)
            deps_of.extend(dep.dependencies)
        if deps.heavy_call in calls:
            heavy.add(route.name)
    assert deps.LANE_ROUTES <= heavy
    assert deps.LANE_ROUTES == {"job.submit", "query.preview", "query.run"}
