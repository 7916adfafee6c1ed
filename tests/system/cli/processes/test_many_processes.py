"""Many processes, one truth: `veilbox serve` and `veilbox worker` processes (real subprocesses, real ports) over
one store, on SQLite and on PostgreSQL.

Jobs submitted through two gateways and approved through the other are each run exactly once (one ``job.start``
entry, one worker id) by separate job worker processes woken by polling the store; a third gateway started while
jobs run fails none of them; a job worker killed with SIGKILL mid-job has its job taken over (failed and refunded,
``job.recover``) once its lease expires; SIGTERM stops the workers cleanly, giving up a job still running after
the stop grace (failed and refunded at once). `serve --workers 2` answers `/ready`
from each of its two processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, select

from catalog.datagen import Generated
from gateway.server import free_port
from policies import _tables as pt
from tests.conftest import DATA_OWNER
from veilbox.client import Client

pytestmark = pytest.mark.slow

COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
SLEEPER = '''
import time

def main(inputs):
    time.sleep(20)
    return {"rows": inputs["tax_income"].num_rows}
'''
LEASE_S = 3  # VEILBOX_JOB_LEASE_S: a killed worker's job is taken over within seconds
DEADLINE_S = 180.0  # generous: several Python processes start on a small, shared machine


def _until(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S, every: float = 0.2) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Processes:
    """The test's subprocesses: each `veilbox` command with its stderr in a file; all stopped at the end."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.clients: list[Client] = []

    def client(self, url: str, token: str) -> Client:
        c = Client(url, token)
        self.clients.append(c)
        return c

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=self.env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # the child keeps its own copy of the descriptor
        p = subprocess.Popen([sys.executable, "-m", "veilbox.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                             env=self.env)
        log.close()
        self.procs.append((name, p))
        return p

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def serve(self, name: str, *args: str) -> str:
        port = free_port()
        p = self.start(name, "serve", "--port", str(port), *args)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert p.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                return httpx.get(f"{url}/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        _until(f"{name} to be ready", ready, every=0.5)
        return url

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 90) -> int:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(p.pid).children(recursive=True):
                child.kill()
            p.kill()
            p.wait(10)
            raise

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.procs):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(p.pid).children(recursive=True):
                    child.kill()
                p.kill()
                p.wait(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` (SQLite in the home) or a fresh PostgreSQL database (``pg_url`` of tests/conftest.py)."""
    if request.param == "sqlite":
        return None
    try:
        return str(request.getfixturevalue("pg_url"))
    except pytest.FixtureLookupError:
        pytest.skip("no PostgreSQL fixture (pg_url)")


@pytest.fixture
def procs(tmp_path: Path, city_data: Generated, store_url: str | None) -> Iterator[Processes]:
    env = {**os.environ, "VEILBOX_HOME": str(tmp_path / "home"), "VEILBOX_ENV": "test",
           "VEILBOX_IMPORT_ROOTS": json.dumps([str(city_data.tax_income.parent.parent)]),
           "VEILBOX_LATENCY_BUCKET_MS": "0", "VEILBOX_JOB_LEASE_S": str(LEASE_S), "VEILBOX_JOB_POLL_S": "0.2",
           "VEILBOX_WORKER_STOP_GRACE_S": "5"}
    env.pop("VEILBOX_DATABASE_URL", None)
    if store_url is not None:
        env["VEILBOX_DATABASE_URL"] = store_url
    p = Processes(tmp_path, env)
    yield p
    p.close()


def _agreement(owner: Client, operator: Client) -> dict[str, Any]:
    doc = {
        "title": "many processes", "grantee": "risk-lab", "datasets": ["tax_income"],
        "columns": {"tax_income": ["district", "age", "monthly_income", "has_default"]},
        "purposes": ["credit_risk"], "job_kinds": ["query", "code"],
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
        "budget": {"epsilon": 10, "delta": "1e-6"}, "min_group_units": 5,
        "quotas": {"calls_per_day": 10000}, "approval": "owner_each_job",
    }
    ag = owner.propose_agreement(doc)
    return operator.accept_agreement(ag["id"])


def _worker_ids(store_url: str | None, home: Path) -> dict[str, str | None]:
    engine = create_engine(store_url or f"sqlite:///{home / 'meta.db'}")
    try:
        with engine.connect() as conn:
            return {r.id: r.worker_id for r in conn.execute(select(pt.jobs.c.id, pt.jobs.c.worker_id))}
    finally:
        engine.dispose()


def _pid(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 2)[1])  # "<host>-<pid>-<random>" (gateway.worker.JobWorker.id)


def _job_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [(json.loads(e["details"]) if isinstance(e["details"], str) else e["details"])["job_id"] for e in entries]


def _starts(regulator: Client) -> dict[str, int]:
    seen: dict[str, int] = {}
    for job_id in _job_ids(regulator.audit(action="job.start", limit=1000)["entries"]):
        seen[job_id] = seen.get(job_id, 0) + 1
    return seen


# PostgreSQL only: the deployment that runs several hosts' processes on one store. SQLite's claim (BEGIN IMMEDIATE)
# races in tests/unit/policies/test_claim_concurrent.py on both stores.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_gateways_and_workers_share_one_store(procs: Processes, tax_spec: dict, store_url: str | None,
                                              tmp_path: Path) -> None:
    admin_token = json.loads(procs.run("init", "--json").stdout)["admin_token"]
    url_a = procs.serve("serve-a", "--no-embedded-worker")
    url_b = procs.serve("serve-b", "--no-embedded-worker")
    a, b = procs.client(url_a, admin_token), procs.client(url_b, admin_token)
    owner_token = a.create_principal(DATA_OWNER, "owner")["token"]
    operator_token = b.create_principal("risk-lab", "operator")["token"]
    regulator_token = a.create_principal("city-data-regulator", "regulator")["token"]
    owner_a, owner_b = procs.client(url_a, owner_token), procs.client(url_b, owner_token)
    operator_a, operator_b = procs.client(url_a, operator_token), procs.client(url_b, operator_token)
    owner_b.register_dataset(tax_spec)  # registered through B, read through A
    ag = _agreement(owner_a, operator_b)
    regulator = procs.client(url_b, regulator_token)
    assert regulator.audit_verify()["ok"] is True

    workers = procs.start("workers", "worker", "--count", "2")

    # a worker killed mid-job: its job is taken over once the lease expires (failed, refunded, job.recover)
    doomed = operator_a.submit_job(ag["id"], "code", {"dataset": "tax_income", "source": SLEEPER,
                                                      "entrypoint": "main", "epsilon": "0.25",
                                                      "outputs": {"kind": "json", "max_bytes": 4096}})
    owner_b.approve_job(doomed["id"], doomed["spec_hash"])  # approved in B, claimed by a worker process
    _until("the code job to run", lambda: operator_a.job(doomed["id"])["state"] == "running")
    holder = _worker_ids(store_url, tmp_path / "home")[doomed["id"]]
    assert holder is not None
    victim = _pid(holder)
    assert victim in {c.pid for c in psutil.Process(workers.pid).children()}
    os.kill(victim, signal.SIGKILL)
    failed = _until("the killed worker's job to be taken over",
                    lambda: (j := operator_b.job(doomed["id"]))["state"] == "failed" and j)
    assert failed["failure_reason"] == "worker.interrupted"
    recovered = _until("the takeover's audit entry",
                       lambda: regulator.audit(action="job.recover", limit=1000)["entries"])
    assert _job_ids(recovered) == [doomed["id"]]
    assert operator_a.budget(ag["id"])["exact"]["epsilon_spent"] == "0"  # refunded

    # jobs submitted through both gateways, approved through the other, run once each while a third starts
    survivor = operator_b.submit_job(ag["id"], "code", {"dataset": "tax_income", "source": SLEEPER,
                                                        "entrypoint": "main", "epsilon": "0.25",
                                                        "outputs": {"kind": "json", "max_bytes": 4096}})
    owner_a.approve_job(survivor["id"], survivor["spec_hash"])
    _until("the second code job to run", lambda: operator_a.job(survivor["id"])["state"] == "running")
    queries = []
    for i in range(6):
        via, approver = (operator_a, owner_b) if i % 2 == 0 else (operator_b, owner_a)
        job = via.submit_job(ag["id"], "query", {"sql": COUNT_BY_DISTRICT, "epsilon": "0.1"})
        approver.approve_job(job["id"], job["spec_hash"])
        queries.append(job["id"])
    url_c = procs.serve("serve-c")  # embedded worker on: its start sweep must take over no live job
    operator_c = procs.client(url_c, operator_token)
    done = {jid: operator_c.wait_job(jid, timeout=DEADLINE_S) for jid in queries}
    assert {jid: j["state"] for jid, j in done.items()} == {jid: "released" for jid in queries}
    assert operator_b.wait_job(survivor["id"], timeout=DEADLINE_S, until=("succeeded", "failed"))["state"] == \
        "succeeded"

    starts = _starts(regulator)
    assert {jid: starts.get(jid) for jid in [doomed["id"], survivor["id"], *queries]} == \
        dict.fromkeys([doomed["id"], survivor["id"], *queries], 1)  # exactly once each
    assert _job_ids(regulator.audit(action="job.recover", limit=1000)["entries"]) == [doomed["id"]]
    ran_by = _worker_ids(store_url, tmp_path / "home")
    assert all(ran_by[jid] for jid in [survivor["id"], *queries])
    assert len({ran_by[jid] for jid in [survivor["id"], *queries]} - {holder}) >= 1
    assert holder not in {ran_by[jid] for jid in [survivor["id"], *queries]}  # the killed one ran nothing more
    assert procs.client(url_c, regulator_token).audit_verify()["ok"] is True  # one chain, six writers

    # SIGTERM while a job runs: the worker gives it up after VEILBOX_WORKER_STOP_GRACE_S, failed and refunded
    serve_c = next(p for name, p in procs.procs if name == "serve-c")
    assert procs.stop(serve_c) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its clean shutdown
    last = operator_a.submit_job(ag["id"], "code", {"dataset": "tax_income", "source": SLEEPER,
                                                    "entrypoint": "main", "epsilon": "0.25",
                                                    "outputs": {"kind": "json", "max_bytes": 4096}})
    owner_b.approve_job(last["id"], last["spec_hash"])
    _until("the last code job to run", lambda: operator_a.job(last["id"])["state"] == "running")
    assert procs.stop(workers) == 0  # SIGTERM: every worker stops, the busy one after giving its job up
    assert operator_b.job(last["id"])["state"] == "failed"
    assert operator_b.job(last["id"])["failure_reason"] == "worker.interrupted"
    log = procs.log("workers")
    assert f"gave up job {last['id']} at shutdown" in log
    assert len(re.findall(r"job worker \S+ stopped\n", log)) == 2 and "job workers stopped" in log


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the processes, not the store, are under test
def test_serve_with_two_processes_answers_ready_from_each(procs: Processes) -> None:
    procs.run("init", "--json")
    url = procs.serve("serve", "--workers", "2")
    parent = next(p for name, p in procs.procs if name == "serve")
    kids = _until("two HTTP processes", lambda: (k := [c for c in psutil.Process(parent.pid).children()
                                                       if "spawn_main" in " ".join(c.cmdline())]) and len(k) == 2
                  and k)
    for stopped, running in ((kids[0], kids[1]), (kids[1], kids[0])):
        stopped.suspend()  # only `running` accepts connections now
        try:
            def answered() -> bool:
                try:
                    r = httpx.get(f"{url}/ready", timeout=5)
                except httpx.HTTPError:
                    return False
                return r.status_code == 200 and r.json()["checks"]["worker"] == "ok"

            _until(f"process {running.pid} to answer /ready", answered)
        finally:
            stopped.resume()
    assert procs.stop(parent) in (0, -signal.SIGTERM)
