"""The scale-out topology of docker/compose.yaml as local processes (`make cluster-test`): a throwaway PostgreSQL
(tests/pg.py), two `veilbox serve --no-embedded-worker` gateways on their own ports over one home, two
`veilbox worker` processes and Spark in local mode, with the scale scenario run through it:

- a DP query on a dataset declared ``engine: spark`` is released and debited (skipped when the Spark extra or
  Java is missing: the step says so);
- a budget race across both gateways: many concurrent charging queries on one agreement, split across the
  gateways, never debit more than the budget, every refusal is ``BUDGET_EXHAUSTED``, and the ledger equals the sum
  of the released answers' costs;
- ``kill -9`` of one gateway under load: the other keeps answering, the lease sweep of the workers leaves no job
  charged without an outcome (each stranded one failed ``worker.interrupted``, refunded, ``job.recover``), the
  ledger still equals the released costs and the audit chain verifies.

Opt-in (marker ``cluster``): the default run skips it, ``pytest -m cluster tests/system/cluster`` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, select

from catalog.datagen import Generated
from policies import _tables as pt
from tests.conftest import DATA_OWNER
from tests.pg import PgServer
from tests.system.cli.processes.test_many_processes import Processes, _until
from veilbox.client import ApiError, Client

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

LEASE_S = 6  # VEILBOX_JOB_LEASE_S: a killed gateway's query is taken over within seconds (heartbeat every 2 s)
COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
SPARK_COLUMNS = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]


@dataclass
class Cluster:
    procs: Processes
    db_url: str
    url_a: str
    url_b: str
    tokens: dict[str, str]
    tax_spec: dict[str, Any]

    def client(self, url: str, role: str) -> Client:
        return self.procs.client(url, self.tokens[role])

    def agreement(self, epsilon: float | str, datasets: list[str] | None = None,
                  columns: dict[str, list[str]] | None = None) -> dict[str, Any]:
        owner, operator = self.client(self.url_a, "owner"), self.client(self.url_b, "operator")
        ag = owner.propose_agreement({
            "title": "cluster", "grantee": "risk-lab", "datasets": datasets or ["tax_income"],
            "columns": columns or {"tax_income": ["district", "age", "monthly_income", "has_default"]},
            "purposes": ["credit_risk"], "job_kinds": ["query"],
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
            "budget": {"epsilon": epsilon, "delta": "1e-6"}, "min_group_units": 5,
            "quotas": {"calls_per_day": 100000}, "approval": "auto_within_budget",
        })
        return operator.accept_agreement(ag["id"])

    def jobs(self, agreement_id: str) -> list[Any]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(select(pt.jobs).where(pt.jobs.c.agreement_id == agreement_id)))
        finally:
            engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def _opt_in(request: pytest.FixtureRequest) -> None:
    """Skipped unless asked for, before any process or database starts."""
    if "cluster" not in (request.config.getoption("-m") or ""):
        pytest.skip("the cluster scenario runs with -m cluster (make cluster-test)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, city_data: Generated) -> Iterator[Cluster]:
    tax_spec = json.loads(city_data.tax_income_spec.read_text())
    root = tmp_path_factory.mktemp("cluster")
    db_url = pg_server.create_database()
    env = {**os.environ, "VEILBOX_HOME": str(root / "home"), "VEILBOX_ENV": "test", "VEILBOX_DATABASE_URL": db_url,
           "VEILBOX_IMPORT_ROOTS": json.dumps([str(city_data.tax_income.parent.parent)]),
           "VEILBOX_LATENCY_BUCKET_MS": "0", "VEILBOX_JOB_LEASE_S": str(LEASE_S), "VEILBOX_JOB_POLL_S": "0.5",
           "VEILBOX_WORKER_STOP_GRACE_S": "5", "VEILBOX_SPARK_MASTER": "local[2]",
           "VEILBOX_QUERY_TIMEOUT_S": "300", "VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL": "64"}
    procs = Processes(root, env)
    try:
        admin = json.loads(procs.run("init", "--json").stdout)["admin_token"]
        url_a = procs.serve("gateway-a", "--no-embedded-worker")
        url_b = procs.serve("gateway-b", "--no-embedded-worker")
        procs.start("worker-1", "worker")
        procs.start("worker-2", "worker")
        a = procs.client(url_a, admin)
        tokens = {"owner": a.create_principal(DATA_OWNER, "owner")["token"],
                  "operator": a.create_principal("risk-lab", "operator")["token"],
                  "regulator": a.create_principal("city-data-regulator", "regulator")["token"]}
        procs.client(url_b, tokens["owner"]).register_dataset(tax_spec)
        yield Cluster(procs, db_url, url_a, url_b, tokens, tax_spec)
    finally:
        orphans = [c for _, p in procs.procs if p.poll() is None for c in _children(p.pid)]
        procs.close()
        for c in orphans:
            if c.is_running():
                c.kill()
        pg_server.drop_database(db_url)


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_dp_query_on_a_spark_dataset(cluster: Cluster) -> None:
    from sandbox.engine.spark import available

    if not available():
        pytest.skip("step (a) skipped: the Spark extra (pyspark) or a Java runtime is missing")
    owner = cluster.client(cluster.url_a, "owner")
    owner.register_dataset({**cluster.tax_spec, "name": "tax_spark", "engine": "spark"})
    ag = cluster.agreement(5, ["tax_spark"], {"tax_spark": SPARK_COLUMNS})
    operator = cluster.client(cluster.url_b, "operator")
    r = operator.query(ag["id"], "SELECT district, COUNT(*) AS n, AVG(monthly_income) AS a FROM tax_spark "
                                 "WHERE age >= 30 GROUP BY district", "0.5")
    assert r["state"] == "released", r
    assert r["columns"] == ["district", "n", "a"] and len(r["rows"]) + r["suppressed_groups"] == 7
    assert Fraction(cluster.client(cluster.url_a, "operator").budget(ag["id"])["exact"]["epsilon_spent"]) == \
        Fraction(1, 2)


def _fire(url: str, token: str, agreement_id: str, epsilon: str, n: int, out: list[Any]) -> None:
    with Client(url, token) as c:
        for _ in range(n):
            try:
                out.append(c.query(agreement_id, COUNT_BY_DISTRICT, epsilon))
            except ApiError as e:
                out.append(e)


def test_budget_race_across_gateways(cluster: Cluster) -> None:
    ag = cluster.agreement(1)
    results: list[Any] = []
    threads = [threading.Thread(target=_fire, args=(url, cluster.tokens["operator"], ag["id"], "0.1", 5, results))
               for url in (cluster.url_a, cluster.url_b) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 30
    released = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ApiError)]
    assert all(r["state"] == "released" for r in released), released
    assert {e.code for e in refused} <= {"BUDGET_EXHAUSTED"}, [str(e) for e in refused]
    spent = Fraction(cluster.client(cluster.url_a, "operator").budget(ag["id"])["exact"]["epsilon_spent"])
    assert spent == sum((Fraction(str(r["cost"]["epsilon"])) for r in released), Fraction(0))
    assert spent <= 1 and len(released) == 10 and len(refused) == 20  # the whole budget, never more
    jobs = cluster.jobs(ag["id"])
    assert sorted(j.state for j in jobs) == ["released"] * 10  # a refused query leaves no charged job


def _load(url: str, token: str, agreement_id: str, stop: threading.Event, out: list[Any]) -> None:
    with Client(url, token, timeout=60) as c:
        while not stop.is_set():
            t = time.monotonic()
            try:
                out.append((t, c.query(agreement_id, COUNT_BY_DISTRICT, "0.01")))
            except Exception as e:  # a killed gateway's connection errors are recorded
                out.append((t, e))


def test_kill_one_gateway_mid_load(cluster: Cluster) -> None:
    ag = cluster.agreement(100)
    token = cluster.tokens["operator"]
    stop = threading.Event()
    on_a: list[Any] = []
    on_b: list[Any] = []
    threads = [threading.Thread(target=_load, args=(url, token, ag["id"], stop, out))
               for url, out in ((cluster.url_a, on_a), (cluster.url_b, on_b)) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        _until("both gateways to answer under load", lambda: len(on_a) >= 4 and len(on_b) >= 4)
        gateway_a = next(p for name, p in cluster.procs.procs if name == "gateway-a")
        time.sleep(0.3)  # requests in flight on A
        killed_at = time.monotonic()
        os.kill(gateway_a.pid, signal.SIGKILL)
        gateway_a.wait(30)
        _until("gateway B to keep answering", lambda: sum(1 for t, _ in on_b if t > killed_at + 1) >= 6)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert all(isinstance(r, dict) and r["state"] == "released" for _, r in on_b), \
        [str(r) for _, r in on_b if not isinstance(r, dict)]
    # on A: released answers until the kill, then only broken connections (never an error answer)
    assert all(r["state"] == "released" if isinstance(r, dict) else isinstance(r, httpx.TransportError)
               for _, r in on_a), [repr(r) for _, r in on_a if not isinstance(r, dict)]
    assert any(isinstance(r, dict) for _, r in on_a)

    def settled() -> list[Any] | None:
        jobs = cluster.jobs(ag["id"])
        return jobs if all(j.state in ("released", "failed") and j.lease_owner is None for j in jobs) else None

    jobs = _until("the lease sweep to settle every job", settled, deadline_s=4 * LEASE_S + 60, every=0.5)
    failed = [j for j in jobs if j.state == "failed"]
    assert all(j.failure_reason == "worker.interrupted" for j in failed)
    released_cost = sum((Fraction(j.cost_epsilon) for j in jobs if j.state == "released"), Fraction(0))
    b = cluster.client(cluster.url_b, "operator")
    assert Fraction(b.budget(ag["id"])["exact"]["epsilon_spent"]) == released_cost  # stranded ones refunded
    answered = sum(1 for _, r in on_a + on_b if isinstance(r, dict))
    assert len([j for j in jobs if j.state == "released"]) >= answered
    regulator = cluster.client(cluster.url_b, "regulator")
    recovered = {(json.loads(e["details"]) if isinstance(e["details"], str) else e["details"])["job_id"]
                 for e in regulator.audit(action="job.recover", limit=1000)["entries"]}
    assert {j.id for j in failed} <= recovered
    assert regulator.audit_verify()["ok"] is True
    print(f"kill -9: {len(jobs)} jobs, {len(failed)} stranded on the killed gateway taken over by the sweep, "
          f"{sum(1 for _, r in on_b if isinstance(r, dict))} answers from the surviving gateway")
