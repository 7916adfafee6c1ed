"""Per-principal concurrency: at most ``VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL`` heavy calls in flight per caller; one
more is ``QUOTA_EXCEEDED`` (reason ``principal.in_flight``) before the service runs — nothing charged, audited —
and another principal is unaffected (`gateway.deps.heavy_call`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from catalog.errors import NOT_FOUND_OR_FORBIDDEN, DomainError
from gateway.app import create_app
from gateway.deps import IN_FLIGHT_REASON, heavy_call
from gateway.services import jobs as jobflow
from gateway.settings import Settings

LIMIT = 2
WAIT_S = 60.0
#: Every heavy operation (route name) holds a slot for as long as it runs.
HEAVY_ROUTES = {"job.submit", "query.preview", "query.run", "model.score", "verify.check_encrypted",
                "verify.check_anonymous", "psi.size", "psi.members"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_inflight_per_principal": LIMIT})


class Gate:
    """Stands in for the query service: calls of ``held`` wait for ``open``; every call is counted on entry."""

    def __init__(self, held: str) -> None:
        self.held, self.open = held, threading.Event()
        self.entered: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, ctx: Any, actor: Any, *args: Any, **kw: Any) -> Any:
        with self._cond:
            self.entered.append(actor.name)
            self._cond.notify_all()
        if actor.name == self.held:
            assert self.open.wait(WAIT_S), "the gate was never opened"
        raise DomainError(NOT_FOUND_OR_FORBIDDEN, "not found")

    def wait_entered(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.entered) >= n, WAIT_S), (self.entered, n)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate(held="lab-a")
    monkeypatch.setattr(jobflow, "run_query", g)
    yield g
    g.open.set()


def _query(url: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        return http.post("/v1/queries", headers={"Authorization": f"Bearer {token}"},
                         json={"agreement_id": "agr_x", "sql": "SELECT COUNT(*) AS n FROM tax_income", "epsilon": 1})


def test_one_call_beyond_the_limit_is_refused_uncharged_and_audited_another_principal_unaffected(service, gate):
    a = service.admin.create_principal("lab-a", "operator")
    b = service.admin.create_principal("lab-b", "operator")
    held: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: held.append(_query(service.url, a["token"]))) for _ in range(LIMIT)]
    for th in threads:
        th.start()
    try:
        gate.wait_entered(LIMIT)
        refused = _query(service.url, a["token"])
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "QUOTA_EXCEEDED"
        assert refused.json()["error"]["details"] == [{"reason": IN_FLIGHT_REASON, "limit": LIMIT}]
        assert gate.entered == ["lab-a"] * LIMIT  # the refused call never reached the service: nothing charged
        other = _query(service.url, b["token"])  # another principal is not held back by lab-a's calls
        assert other.status_code == 404 and gate.entered[-1] == "lab-b"
    finally:
        gate.open.set()
        for th in threads:
            th.join(WAIT_S)
    assert [r.status_code for r in held] == [404] * LIMIT
    assert service.ctx.caches.inflight.count(a["id"]) == 0  # slots are given back when the calls end
    assert _query(service.url, a["token"]).status_code == 404  # and lab-a may call again
    entries = service.ctx.audit.entries(0, 100_000)[0]
    denied = [e for e in entries if e["code"] == "QUOTA_EXCEEDED"]
    assert len(denied) == 1
    assert denied[0]["actor"] == "lab-a" and denied[0]["action"] == "query.run" and denied[0]["decision"] == "deny"
    assert json.loads(denied[0]["details"])["reason"] == IN_FLIGHT_REASON
    assert denied[0]["epsilon"] is None


def _api_routes(routes: list[Any]) -> Iterator[Any]:
    """Every operation of ``routes``, through included routers."""
    for route in routes:
        if hasattr(route, "dependant"):
            yield route
        elif hasattr(route, "original_router"):  # an included router, resolved lazily by FastAPI
            yield from _api_routes(route.original_router.routes)


def test_every_heavy_route_takes_a_slot(service):
    taking = set()
    for route in _api_routes(create_app(service.ctx).routes):
        todo, calls = list(route.dependant.dependencies), set()
        while todo:
            dep = todo.pop()
            calls.add(dep.call)
            todo.extend(dep.dependencies)
        if heavy_call in calls:
            taking.add(route.name)
    assert taking == HEAVY_ROUTES
