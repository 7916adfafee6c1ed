"""A PostgreSQL restart under load: every call is answered with a result or ``503 UNAVAILABLE`` with
``Retry-After`` (never a 500), the service serves again once the database is back, every job ends with an outcome
and the audit chain verifies."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import started_pg_server
from tests.pg import PgServer

SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
TERMINAL = {"released", "failed", "rejected", "cancelled"}


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    """A cluster of this module's own: the test stops and starts it."""
    yield from started_pg_server()


@pytest.fixture
def database_url(own_pg: PgServer) -> Iterator[str]:
    url = own_pg.create_database()
    yield url
    own_pg.drop_database(url)


@pytest.mark.parametrize("store", ["postgresql"])
def test_database_restart_under_load_answers_503_never_500(parties, own_pg: PgServer, store: str) -> None:
    ag = parties.agreement()
    svc = parties.service
    token = parties.operator._http.headers["Authorization"]
    statuses: Counter[int] = Counter()
    unavailable_without_hint: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(base_url=svc.url, headers={"Authorization": token}, timeout=120) as http:
            while not stop.is_set():
                for method, path, body in (("POST", "/v1/queries",
                                            {"agreement_id": ag["id"], "sql": SQL, "epsilon": "0.01"}),
                                           ("GET", "/v1/jobs", None), ("GET", "/v1/agreements", None)):
                    try:
                        r = http.request(method, path, json=body)
                    except httpx.TransportError:
                        continue
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 503 and "retry-after" not in r.headers:
                            unavailable_without_hint.append(r.status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        _wait_for(lambda: statuses[200] >= 8, "load before the restart")
        own_pg.stop_only()
        _wait_for(lambda: statuses[503] >= 4, "503 answers while the database is down")
        own_pg.start_again()
        seen = statuses[200]
        _wait_for(lambda: statuses[200] >= seen + 8, "answers after the database came back")
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=120)
    assert statuses[500] == 0, statuses
    assert not unavailable_without_hint
    assert set(statuses) <= {200, 201, 402, 429, 503}, statuses

    # every job the load started ends with an outcome, and the log that recorded them verifies
    ctx = svc.ctx
    from gateway.worker import JobWorker

    JobWorker(ctx).sweep()  # what every worker does periodically; inline queries were interrupted mid-flight
    jobs = parties.operator.jobs()
    assert jobs and all(j["state"] in TERMINAL | {"running", "approved", "succeeded"} for j in jobs)
    # Not yet ended: only jobs whose lease is still live (an inline query whose release hit the outage stays
    # `succeeded` until its lease expires; the sweep then fails it, charged, tested in tests/unit/gateway).
    stranded = [j for j in jobs if j["state"] not in TERMINAL]
    assert all(_lease_live(ctx, j["id"]) for j in stranded), stranded
    assert ctx.audit.verify().ok


def _lease_live(ctx, job_id: str) -> bool:
    import datetime as dt

    from sqlalchemy import select

    from policies import _tables as pt

    with ctx.engine.connect() as conn:
        until = conn.execute(select(pt.jobs.c.lease_expires_at).where(pt.jobs.c.id == job_id)).scalar_one_or_none()
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    return until is not None and until > dt.datetime.now(dt.UTC)


def _wait_for(cond, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
