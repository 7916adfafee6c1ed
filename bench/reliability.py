"""Reliability benchmark: ``kill -9`` of a `veilbox serve` process under mixed charging load, on SQLite and on
PostgreSQL — does every answered request keep its audit entry, and does every charge end with an outcome?

For each store (``--stores``, default both; PostgreSQL is a throwaway cluster started like the test suite's,
`tests/pg.py`): a fresh home over a synthetic ``tax_income`` (``--rows``), one bank with an auto-approving
agreement (queries, jobs, checks) and a verification product. ``--callers`` threads (default 8) send a mix of
plain checks, inline DP queries and query-job submissions, each with its own ``Idempotency-Key`` and, for queries
and jobs, its own SQL (so every job names the request that made it). After ``--load-s`` seconds of load the
gateway is killed with SIGKILL (its engine processes too) and a new one started on the home, ``--kills`` times
(default 3); a caller whose request was cut off retries it with the same key against the new process.
``VEILBOX_JOB_LEASE_S`` is short (``--lease-s``), so the new process's sweep takes over the dead one's jobs.

Reports per store: answered requests and how many of them have their audit entry (goal: all), jobs left charged
without an outcome after recovery (goal 0), retries under one idempotency key charged twice (goal 0), the
seconds from each restart to ``/ready`` answering 200, and whether the chain verifies. A retry under a key the
killed process had reserved is refused ``ALREADY_EXISTS`` (``idempotency.in_progress``, counted apart): never
charged twice. Prints one JSON line; progress goes to stderr. The default run takes about three minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FINAL = {"released", "failed", "rejected", "cancelled"}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def until(what: str, check: Callable[[], Any], deadline_s: float = 180.0, every: float = 0.2) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


class Gateway:
    """`veilbox serve` processes on one home, started and killed."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.n = 0

    def cli(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=self.env, cwd=ROOT)
        if r.returncode:
            raise RuntimeError(r.stdout + r.stderr)
        return r.stdout

    def start(self) -> float:
        """Start a gateway; the seconds until ``/ready`` answered 200."""
        import httpx

        from gateway.server import free_port

        self.n += 1
        port = free_port()
        with open(self.root / f"serve-{self.n}.log", "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "veilbox.cli", "serve", "--port", str(port)],
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        self.url, t0 = f"http://127.0.0.1:{port}", time.monotonic()
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((self.root / f"serve-{self.n}.log").read_text(errors="replace")[-2000:])
            try:
                return httpx.get(f"{self.url}/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        until("the gateway to be ready", ready, every=0.05)
        return time.monotonic() - t0

    def kill9(self) -> None:
        import psutil

        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        for c in children:
            try:
                c.kill()
            except psutil.NoSuchProcess:
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()


class Load:
    """``callers`` threads sending checks, queries and job submissions until told to stop; a request cut off by
    the kill is kept and retried with its key against the next gateway."""

    def __init__(self, gw: Gateway, token: str, agreement: str, callers: int) -> None:
        self.gw, self.token, self.agreement, self.callers = gw, token, agreement, callers
        self.answered: list[dict[str, Any]] = []  # {"kind", "key", "status", "body", "sql"}
        self.pending: dict[int, tuple[str, str, dict[str, Any], str | None]] = {}  # caller -> cut-off request
        self.retried: list[tuple[str, str | None]] = []  # (key, sql) retried after a kill
        self.seq = [0] * callers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def request(self, i: int) -> tuple[str, str, dict[str, Any], str | None]:
        self.seq[i] += 1
        n = self.seq[i]
        key = f"c{i}-{n}"
        if n % 3 == 0:
            return key, "/v1/verifications/income_at_least/check", {
                "agreement_id": self.agreement, "subject": "P0000001", "params": {"threshold": 1000 + n},
                "consent_ref": "bench"}, None
        sql = (f"SELECT district, COUNT(*) AS n FROM tax_income WHERE monthly_income > {i * 1_000_000 + n} "
               "GROUP BY district")
        if n % 3 == 1:
            return key, "/v1/queries", {"agreement_id": self.agreement, "sql": sql, "epsilon": "0.01"}, sql
        return key, "/v1/jobs", {"agreement_id": self.agreement, "kind": "query",
                                 "spec": {"sql": sql, "epsilon": "0.01"}}, sql

    def _run(self, i: int) -> None:
        import httpx

        with httpx.Client(base_url=self.gw.url, headers={"Authorization": f"Bearer {self.token}"},
                          timeout=120) as c:
            while not self._stop.is_set():
                retry = self.pending.pop(i, None)
                key, path, body, sql = retry or self.request(i)
                if retry is not None:
                    with self._lock:
                        self.retried.append((key, sql))
                try:
                    r = c.post(path, json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    self.pending[i] = (key, path, body, sql)
                    return
                if r.status_code == 503:  # not charged, not recorded: retry the same request
                    self.pending[i] = (key, path, body, sql)
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                with self._lock:
                    self.answered.append({"kind": path.rsplit("/", 1)[-1], "key": key, "status": r.status_code,
                                          "body": r.json(), "sql": sql})

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.callers)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(180)


def setup(gw: Gateway, spec: dict[str, Any]) -> tuple[str, str, str]:
    """Principals, the dataset, the agreement and the product; (bank token, regulator token, agreement id)."""
    from veilbox.client import Client

    admin_token = json.loads(gw.cli("init", "--json"))["admin_token"]
    gw.start()
    admin = Client(gw.url, admin_token, timeout=600)
    owner = admin.with_token(admin.create_principal("tax", "owner")["token"])
    bank_token = admin.create_principal("bank", "bank")["token"]
    regulator_token = admin.create_principal("regulator", "regulator")["token"]
    bank = admin.with_token(bank_token)
    owner.register_dataset(spec)
    ag = owner.propose_agreement({
        "title": "reliability", "grantee": "bank", "datasets": ["tax_income"],
        "columns": {"tax_income": ["district", "monthly_income"]}, "purposes": ["credit_risk"],
        "job_kinds": ["query", "verify"], "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2036-01-01T00:00:00Z", "budget": {"epsilon": 10**6}, "min_group_units": 1,
        "approval": "auto_within_budget",
        "quotas": {"calls_per_day": 10**8, "jobs_per_day": 10**6, "verify_per_subject_per_day": 10**6,
                   "distinct_params_per_subject": 10**4}})
    agreement = bank.accept_agreement(ag["id"])["id"]
    owner.define_verification({"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                               "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"}})
    bank.query(agreement, "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", "0.01")  # warm-up:
    bank.check("income_at_least", agreement, "P0000001", {"threshold": 1}, consent_ref="bench")  # engines start
    for c in (bank, owner, admin):
        c.close()
    return bank_token, regulator_token, agreement


def measure(store: str, args: argparse.Namespace, spec_path: Path, import_root: Path) -> dict[str, Any]:
    import httpx
    from sqlalchemy import create_engine, select

    from cryptosuite import suite_of
    from gateway import _tables as gt
    from policies import _tables as pt

    def sha256(text: str) -> str:  # the receipt digests of the bench's home (the default intl suite)
        return suite_of("intl").digest(text.encode())

    root = Path(tempfile.mkdtemp(prefix=f"veilbox-bench-reliability-{store}-"))
    pg = None
    env = {**os.environ, "VEILBOX_HOME": str(root / "home"), "VEILBOX_ENV": "test",
           "VEILBOX_IMPORT_ROOTS": json.dumps([str(import_root)]), "VEILBOX_LATENCY_BUCKET_MS": "0",
           "VEILBOX_JOB_LEASE_S": str(args.lease_s), "VEILBOX_JOB_POLL_S": "0.2",
           "VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL": str(max(8, args.callers))}
    env.pop("VEILBOX_DATABASE_URL", None)
    if store == "postgresql":
        from tests.pg import PgServer

        pg = PgServer().start()
        env["VEILBOX_DATABASE_URL"] = pg.create_database()
    gw = Gateway(root, env)
    try:
        log(f"[{store}] setting up …")
        bank_token, regulator_token, agreement = setup(gw, json.loads(spec_path.read_text()))
        load = Load(gw, bank_token, agreement, args.callers)
        ready_s: list[float] = []
        for k in range(args.kills):
            load.start()
            time.sleep(args.load_s)
            log(f"[{store}] kill -9 #{k + 1} after {len(load.answered)} answers …")
            gw.kill9()
            load.stop()
            ready_s.append(gw.start())
        load.start()  # the cut-off requests are retried against the last gateway, then a little more load
        time.sleep(args.load_s)
        load.stop()
        engine = create_engine(env.get("VEILBOX_DATABASE_URL") or f"sqlite:///{root / 'home' / 'meta.db'}")
        try:
            def jobs() -> dict[str, Any]:
                with engine.connect() as conn:
                    return {r.id: r for r in conn.execute(select(pt.jobs))}

            log(f"[{store}] waiting for every job to end …")
            until("every job to end", lambda: all(j.state in FINAL for j in jobs().values()))
            with engine.connect() as conn:
                entries = [dict(r._mapping) for r in conn.execute(select(gt.audit_entries))]
                ledger = list(conn.execute(select(pt.budget_entries)))
            all_jobs = jobs()
        finally:
            engine.dispose()
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {regulator_token}"}, timeout=600) as c:
            verified = bool(c.get("/v1/audit/verify").json()["ok"])
    finally:
        gw.stop()
        if pg is not None:
            pg.stop()

    def details(e: dict[str, Any]) -> dict[str, Any]:
        d = e["details"]
        return d if isinstance(d, dict) else json.loads(d)

    by_job: dict[str, set[str]] = {}
    request_entries: dict[str, int] = {}
    check_digests = {e["output_digest"] for e in entries if e["action"] == "verify.check" and e["decision"] == "allow"}
    for e in entries:
        d = details(e)
        if "job_id" in d:
            by_job.setdefault(d["job_id"], set()).add(e["action"])
            if e["action"] in ("query.run", "job.submit") and e["decision"] == "allow":
                request_entries[d["job_id"]] = request_entries.get(d["job_id"], 0) + 1
    ok = [a for a in load.answered if a["status"] < 300]
    jobs_logged = sum(1 for a in ok if a["kind"] != "check"
                      and request_entries.get(a["body"].get("job_id") or a["body"].get("id") or "", 0) >= 1)
    checks_logged = sum(1 for a in ok if a["kind"] == "check" and sha256(a["body"]["receipt"]) in check_digests)
    net: dict[str, int] = {}
    for r in ledger:
        net[r.job_id] = net.get(r.job_id, 0) + (1 if r.kind == "debit" else -1)
    without_outcome = [j for j, n in net.items() if n > 0 and (
        all_jobs[j].state not in ("released", "failed") or not by_job.get(j, set()) & {"job.release", "job.fail"})]
    charged_twice = 0
    for _key, sql in load.retried:
        if sql is not None and sum(1 for j in all_jobs.values() if sql in j.spec_json and net.get(j.id, 0) > 0) > 1:
            charged_twice += 1
    return {
        "answered": len(ok),
        "answered_in_audit": jobs_logged + checks_logged,
        "refused_4xx": len([a for a in load.answered if a["status"] >= 400 and a["status"] != 409]),
        "retries_refused_in_progress": len([a for a in load.answered if a["status"] == 409]),
        "jobs": len(all_jobs),
        "jobs_charged_without_outcome": len(without_outcome),
        "retries": len(load.retried),
        "retries_charged_twice": charged_twice,
        "ready_after_restart_s": {"median": round(statistics.median(ready_s), 2), "max": round(max(ready_s), 2)},
        "chain_verifies": verified,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--load-s", type=float, default=5.0, help="seconds of load before each kill")
    ap.add_argument("--lease-s", type=float, default=3.0, help="VEILBOX_JOB_LEASE_S")
    ap.add_argument("--rows", type=int, default=20_000)
    args = ap.parse_args()

    from catalog.datagen import generate

    data_root = Path(tempfile.mkdtemp(prefix="veilbox-bench-reliability-data-"))
    log(f"generating {args.rows:,} rows …")
    data = generate(data_root / "tax", rows=args.rows, seed=11)
    out: dict[str, Any] = {"bench": "reliability", "kills": args.kills, "callers": args.callers,
                           "load_s": args.load_s, "lease_s": args.lease_s, "rows": args.rows}
    t0 = time.monotonic()
    for store in [s for s in args.stores.split(",") if s]:
        try:
            out[store] = measure(store, args, data.tax_income_spec, data_root)
        except Exception as e:  # a store that cannot run here is reported, not fatal
            log(f"[{store}] failed: {e}")
            out[store] = {"error": str(e)[:300]}
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
