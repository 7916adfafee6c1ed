"""``GET /health`` and ``GET /ready`` answer while heavy calls fill the heavy lane and its queue, and ``/ready`` is
``503 UNAVAILABLE`` with ``Retry-After`` (never 500) when the store is unreachable or the audit head disagrees
with the chain (`gateway.health`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from catalog.errors import NOT_FOUND_OR_FORBIDDEN, DomainError
from gateway import _tables as t
from gateway import identities
from gateway.services import jobs as jobflow
from tests.conftest import ON_SQLITE

#: More heavy calls than the heavy lane runs at once, and than the request threadpool has threads (AnyIO's: 40).
HEAVY_CALLS = 48
WAIT_S = 60.0  # generous: a stuck call fails the test, a slow machine does not


class Gate:
    """Stands in for the query service: every call waits for ``open`` and is counted on entry."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = 0
        self._cond = threading.Condition()

    def __call__(self, *args: Any, **kw: Any) -> Any:
        with self._cond:
            self.entered += 1
            self._cond.notify_all()
        assert self.open.wait(WAIT_S), "the gate was never opened"
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "not found")

    def wait_entered(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.entered >= n, WAIT_S), (self.entered, n)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate()
    monkeypatch.setattr(jobflow, "run_query", g)
    yield g
    g.open.set()


def _query(url: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        return http.post("/v1/queries", headers={"Authorization": f"Bearer {token}"},
                         json={"agreement_id": "agr_x", "sql": "SELECT COUNT(*) AS n FROM tax_income", "epsilon": 1})


def test_health_and_ready_when_every_dependency_is_up(service):
    with httpx.Client(base_url=service.url, timeout=60) as http:
        h = http.get("/health")
        r = http.get("/ready")
    assert h.status_code == 200 and h.json() == {"status": "ok"}
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"store": "ok", "audit": "ok", "engines": "ok", "worker": "ok"}}


@ON_SQLITE
def test_health_and_ready_answer_while_heavy_calls_fill_the_heavy_lane_and_its_queue(service, gate):
    service.ctx.caches.inflight.limit = HEAVY_CALLS  # one caller may fill the lane here; the limit has its own test
    service.ctx.settings.heavy_wait_s = 3600.0  # the queued calls wait for as long as the test holds the lane
    lane = service.ctx.settings.heavy_lane
    token = service.admin.create_principal("risk-lab", "operator")["token"]
    pid = identities.by_name(service.ctx.engine, "risk-lab").id
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(_query(service.url, token)))
               for _ in range(HEAVY_CALLS)]
    for th in threads:
        th.start()
    try:
        gate.wait_entered(lane)  # the lane's calls are blocked inside a query
        deadline = time.monotonic() + WAIT_S
        while service.ctx.caches.inflight.count(pid) < HEAVY_CALLS:  # every other one waits in the lane's queue
            assert time.monotonic() < deadline, service.ctx.caches.inflight.count(pid)
            time.sleep(0.01)
        with httpx.Client(base_url=service.url, timeout=WAIT_S) as http:
            h = http.get("/health")
            r = http.get("/ready")
        assert not gate.open.is_set() and gate.entered == lane  # still saturated while they answered
        assert h.status_code == 200 and h.json()["status"] == "ok"
        assert r.status_code == 200 and r.json()["status"] == "ready"
    finally:
        gate.open.set()
        for th in threads:
            th.join(WAIT_S)
    assert len(answers) == HEAVY_CALLS and {a.status_code for a in answers} == {404}


def test_ready_is_503_with_retry_after_when_the_store_is_unreachable(service, store, request):
    home = service.settings.home
    if store == "postgresql":  # the database server goes down (this test process's own cluster)
        server = request.getfixturevalue("pg_server")
        server.stop_only()
        back = server.start_again
    else:  # the SQLite file disappears
        moved = home.with_name("home-moved")
        home.rename(moved)
        back = lambda: moved.rename(home)  # noqa: E731
    service.ctx.engine.dispose()  # pooled connections still hold the old store: new ones find nothing
    try:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            r = http.get("/ready")
            h = http.get("/health")
    finally:
        back()
        service.ctx.engine.dispose()
    assert r.status_code == 503
    assert r.headers["Retry-After"].isdigit()
    body = r.json()["error"]
    assert body["code"] == "UNAVAILABLE" and body["message"]
    assert {"check": "store", "problem": "unreachable"} in body["details"]
    assert all(set(d) == {"check", "problem"} and str(home) not in d["problem"] for d in body["details"])
    assert h.status_code == 200  # liveness touches no store
    with httpx.Client(base_url=service.url, timeout=60) as http:
        assert http.get("/ready").status_code == 200  # back when the store is


def test_ready_is_503_when_the_audit_head_disagrees_with_the_chain(service):
    with service.ctx.engine.begin() as conn:
        head = conn.execute(t.audit_head.select()).one()
        conn.execute(t.audit_head.update().values(hash="0" * 64))
    try:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            r = http.get("/ready")
    finally:
        with service.ctx.engine.begin() as conn:
            conn.execute(t.audit_head.update().values(hash=head.hash))
    assert r.status_code == 503 and r.json()["error"]["code"] == "UNAVAILABLE"
    assert r.json()["error"]["details"] == [{"check": "audit", "problem": "inconsistent"}]
    with httpx.Client(base_url=service.url, timeout=60) as http:
        assert http.get("/ready").status_code == 200
