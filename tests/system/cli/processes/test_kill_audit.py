"""A gateway killed with SIGKILL under charging load loses no audit entry (`gateway.journal`), on SQLite and
PostgreSQL.

Four callers send inline queries and job submissions (each with its own ``Idempotency-Key`` and its own SQL, so
every job names the request that made it) to a real `veilbox serve`; the process is killed with ``kill -9`` in the
middle and a new one started on the same home. Then every request that was answered has its entry, every charged
job has its charge's entry and — once the new process's lease sweep has taken over what the dead one held — an
outcome with its entry (no job is left charged without one), the chain verifies, and a retry under an
unanswered request's key never charges it twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, select

from catalog.datagen import Generated
from gateway import _tables as gt
from gateway.server import free_port
from policies import _tables as pt
from tests.conftest import DATA_OWNER

pytestmark = pytest.mark.slow

LEASE_S = 3  # VEILBOX_JOB_LEASE_S: the dead process's jobs are taken over within seconds of the restart
DEADLINE_S = 180.0  # generous: Python processes start slowly on a small, shared machine
CALLERS = 4
FINAL = {"released", "failed", "rejected", "cancelled"}


def _until(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S, every: float = 0.2) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


class Home:
    """One home and the `veilbox` processes on it (killed at the end, children included)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=self.env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def serve(self, name: str) -> tuple[subprocess.Popen[bytes], str, float]:
        """Start `veilbox serve`; (process, url, seconds until /ready answered 200)."""
        port = free_port()
        with open(self.root / f"{name}.log", "wb") as log:
            p = subprocess.Popen([sys.executable, "-m", "veilbox.cli", "serve", "--port", str(port)], stdout=log,
                                 stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(p)
        url, started = f"http://127.0.0.1:{port}", time.monotonic()

        def ready() -> bool:
            assert p.poll() is None, (self.root / f"{name}.log").read_text(errors="replace")
            try:
                return httpx.get(f"{url}/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        _until(f"{name} to be ready", ready, every=0.2)
        return p, url, time.monotonic() - started

    @staticmethod
    def kill9(p: subprocess.Popen[bytes]) -> None:
        children = psutil.Process(p.pid).children(recursive=True)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        for c in children:  # the dead gateway's engine processes (a host crash takes them too)
            try:
                c.kill()
            except psutil.NoSuchProcess:
                pass

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9(p)


@pytest.fixture
def home(tmp_path: Path, city_data: Generated, store_url: str | None) -> Iterator[Home]:
    env = {**os.environ, "VEILBOX_HOME": str(tmp_path / "home"), "VEILBOX_ENV": "test",
           "VEILBOX_IMPORT_ROOTS": json.dumps([str(city_data.tax_income.parent.parent)]),
           "VEILBOX_LATENCY_BUCKET_MS": "0", "VEILBOX_JOB_LEASE_S": str(LEASE_S), "VEILBOX_JOB_POLL_S": "0.2"}
    env.pop("VEILBOX_DATABASE_URL", None)
    if store_url is not None:
        env["VEILBOX_DATABASE_URL"] = store_url
    h = Home(tmp_path, env)
    yield h
    h.close()


def _request(i: int, n: int, agreement_id: str) -> tuple[str, dict[str, Any], str]:
    """Caller ``i``'s ``n``-th request: (path, body, its SQL — unique, so the job names its request)."""
    sql = f"SELECT district, COUNT(*) AS n FROM tax_income WHERE monthly_income > {i * 100_000 + n} GROUP BY district"
    if n % 2:
        return "/v1/queries", {"agreement_id": agreement_id, "sql": sql, "epsilon": "0.01"}, sql
    return "/v1/jobs", {"agreement_id": agreement_id, "kind": "query", "spec": {"sql": sql, "epsilon": "0.01"}}, sql


def _details(e: dict[str, Any]) -> dict[str, Any]:
    d = e["details"]
    return d if isinstance(d, dict) else json.loads(d)


def test_a_kill_9_under_load_loses_no_entry_and_leaves_no_charge_without_outcome(home: Home, tax_spec: dict,
                                                                               store_url: str | None) -> None:
    admin_token = json.loads(home.cli("init", "--json"))["admin_token"]
    first, url, _ = home.serve("serve-1")
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    tokens = {name: admin.post("/v1/principals", json={"name": name, "role": role}).json()["token"]
              for name, role in ((DATA_OWNER, "owner"), ("risk-lab", "operator"), ("regulator", "regulator"))}
    owner = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[DATA_OWNER]}"}, timeout=60)
    operator = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['risk-lab']}"}, timeout=60)
    assert owner.post("/v1/datasets", json=tax_spec).status_code == 201
    ag = owner.post("/v1/agreements", json={
        "title": "kill -9", "grantee": "risk-lab", "datasets": ["tax_income"],
        "columns": {"tax_income": ["district", "monthly_income"]}, "purposes": ["credit_risk"],
        "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
        "budget": {"epsilon": 1000, "delta": "1e-6"}, "min_group_units": 5,
        "quotas": {"calls_per_day": 100000, "jobs_per_day": 100000}, "approval": "auto_within_budget",
        "exit": {"on_expiry": "seal_outputs"}}).json()
    assert operator.post(f"/v1/agreements/{ag['id']}/accept").status_code == 200
    for c in (admin, owner, operator):
        c.close()

    acked: list[tuple[str, int, dict[str, Any]]] = []  # (idempotency key, status, body)
    lost: list[tuple[str, str, dict[str, Any], str]] = []  # sent, never answered: (key, path, body, sql)
    stop = threading.Event()

    def caller(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['risk-lab']}"},
                          timeout=60) as c:
            n = 0
            while not stop.is_set():
                n += 1
                path, body, sql = _request(i, n, ag["id"])
                key = f"caller{i}-{n}"
                try:
                    r = c.post(path, json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    lost.append((key, path, body, sql))
                    return
                acked.append((key, r.status_code, r.json()))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    _until("some answered charging calls", lambda: len(acked) >= 12, every=0.05)
    home.kill9(first)  # mid-load: requests in flight die with it
    stop.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)

    _, url2, ready_s = home.serve("serve-2")
    assert ready_s < DEADLINE_S
    engine = create_engine(store_url or f"sqlite:///{home.root / 'home' / 'meta.db'}")
    try:
        def jobs() -> dict[str, Any]:
            with engine.connect() as conn:
                return {r.id: r for r in conn.execute(select(pt.jobs))}

        # the new process's sweep takes over what the dead one held; queued jobs run in its worker
        _until("every job to reach a final state", lambda: all(j.state in FINAL for j in jobs().values()))
        with httpx.Client(base_url=url2, headers={"Authorization": f"Bearer {tokens['risk-lab']}"},
                          timeout=60) as c:
            retried = [(key, c.post(path, json=body, headers={"Idempotency-Key": key}), sql)
                       for key, path, body, sql in lost]
        _until("the retries' jobs to reach a final state", lambda: all(j.state in FINAL for j in jobs().values()))

        with engine.connect() as conn:
            log = conn.execute(select(gt.audit_entries).order_by(gt.audit_entries.c.seq))
            entries = [dict(r._mapping) for r in log]
            ledger = list(conn.execute(select(pt.budget_entries)))
        all_jobs = jobs()
    finally:
        engine.dispose()
    by_job: dict[str, set[str]] = {}
    request_entries: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        d = _details(e)
        if "job_id" in d:
            by_job.setdefault(d["job_id"], set()).add(e["action"])
            if e["action"] in ("query.run", "job.submit") and e["decision"] == "allow":
                request_entries.setdefault(d["job_id"], []).append(e)

    # every answered request that made a job has exactly one allowing entry naming it
    answered = [(key, status, body) for key, status, body in acked if status in (200, 202)]
    assert answered
    for key, _status, body in answered:
        job_id = body.get("job_id") or body.get("id")
        assert job_id in all_jobs, key
        assert len(request_entries.get(job_id, [])) == 1, (key, job_id, by_job.get(job_id))

    # no job charged without an outcome, and every charge and outcome has its entry
    net: dict[str, int] = {}
    for r in ledger:
        net[r.job_id] = net.get(r.job_id, 0) + (1 if r.kind == "debit" else -1)
    for job_id, n in net.items():
        job = all_jobs[job_id]
        actions = by_job.get(job_id, set())
        assert actions & {"job.charge", "job.submit"}, (job_id, actions)  # the debit's entry
        if n > 0:
            assert job.state in ("released", "failed"), (job_id, job.state)
            assert actions & {"job.release", "job.fail"}, (job_id, actions)
        else:
            assert job.state == "failed" and actions & {"job.recover", "job.fail"}, (job_id, job.state, actions)

    # a retry under an unanswered request's key is charged at most once
    for key, r, sql in retried:
        assert r.status_code in (200, 202, 409), (key, r.status_code, r.text)
        charged = [j for j in all_jobs.values() if sql in j.spec_json and net.get(j.id, 0) > 0]
        assert len(charged) <= 1, (key, [j.id for j in charged])

    with httpx.Client(base_url=url2, headers={"Authorization": f"Bearer {tokens['regulator']}"}, timeout=60) as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True
