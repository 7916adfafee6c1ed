"""Throughput of the service core: plain verification checks and small DP queries through real `veilbox serve`
processes (default 20k-person city; ``--quick`` 5k people and short runs).

Every server is ``veilbox serve`` over one fresh home (SQLite, ``synchronous=FULL``, durable
audit; latency padding off: ``VEILBOX_LATENCY_BUCKET_MS=0``; ``VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL=64`` so the
in-flight cap does not refuse the load). With ``--processes N`` the multi-process points run one
``veilbox serve --workers N`` (N HTTP processes on one port) when the command has it, else N separate servers on
different ports sharing that home, the client going round-robin (``--multi``). The load comes from a separate
process (``--drive``: asyncio + httpx, C callers each sending back to back for ``--seconds``) so the measuring
process takes no CPU from the servers; on this 2-core box the load generator still shares the cores.

It reports, per workload (``check``: ``POST /v1/verifications/income_at_least/check`` over rotating subjects;
``query``: ``SELECT district, COUNT(*) ... GROUP BY district`` at ε = 0.01) and per (processes, concurrency):

- ``rps``: answered calls per second (all 200; anything else is counted in ``errors``);
- ``p50_ms`` / ``p99_ms``: client-side latency;
- ``cpu_ms``: server CPU (user + system of every server process and its children, from psutil, before/after)
  per answered call; ``client_cpu_ms`` the load generator's. On a shared 2-core box the rates are bounded by what
  the machine gives the servers and the load generator together (compare ``health``, ``GET /health``: the HTTP
  floor); ``cpu_ms`` is the figure that transfers: the ceiling of one core is 1000 / ``cpu_ms`` calls per second.

``bare`` is the same measurement against a bare FastAPI endpoint doing the same store writes as a check — the
metering upsert and bump and one audit-log append (`gateway.audit.AuditLog`, hash chain and Ed25519 head) in
their transactions over the same SQLite settings (`catalog.store.make_engine`) — so ``ratio_to_bare`` is the
cost of everything else (authentication, the decision, vetting, the worker's statement, the receipt).

``--stages N`` times each stage of a plain check (and a whole DP query) in-process, N calls one after another,
no HTTP, no profiler: CPU (``time.thread_time``) and wall milliseconds, store transactions and commits, and how long
the transactions held SQLite's write lock (every SQLite transaction is ``BEGIN IMMEDIATE``, `catalog.store`; the
time is measured from BEGIN to the commit or rollback call, so a commit's own fsync is not in it).

``--profile`` runs the plain check path in-process under `gateway.server.BackgroundServer` with yappi (all
threads, CPU clock), driven by a ``--drive`` child, and reports the CPU share of each stage. One JSON line goes to
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRODUCT = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
           "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"},
           "description": "Is the person's registered monthly income at least the threshold?"}
QUERY_SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
OWNER, BANK, ANALYST = "city-tax-bureau", "icbc-wuxi", "risk-lab"


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# --- the load generator (a child process) ----------------------------------------------------------------------


def _requests(workload: str, setup: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    i = 0
    while True:
        i += 1
        if workload == "check":
            body = {"agreement_id": setup["bank_agreement"], "subject": f"P{(i % setup['rows']) + 1:07d}",
                    "params": {"threshold": 8000}, "consent_ref": f"consent/bench/{i}"}
            yield "/v1/verifications/income_at_least/check", body
        elif workload == "query":
            yield "/v1/queries", {"agreement_id": setup["analyst_agreement"], "sql": QUERY_SQL, "epsilon": 0.01}
        elif workload == "health":
            yield "/health", {}
        elif workload == "me":
            yield "/v1/principals/me", {}
        else:  # bare
            yield "/bare/check", {"subject": f"P{(i % setup['rows']) + 1:07d}"}


async def _drive(urls: list[str], token: str, workload: str, setup: dict[str, Any], concurrency: int,
                 seconds: float, warmup: int) -> dict[str, Any]:
    import httpx

    gen = _requests(workload, setup)
    clients = [httpx.AsyncClient(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency + 4)) for u in urls]
    counter = 0
    lat: list[float] = []
    errors: dict[str, int] = {}

    async def one(record: bool) -> None:
        nonlocal counter
        client = clients[counter % len(clients)]
        counter += 1
        path, body = next(gen)
        t = time.perf_counter()
        r = await (client.post(path, json=body) if body else client.get(path))
        ms = (time.perf_counter() - t) * 1000
        if r.status_code != 200:
            key = f"{r.status_code}:{r.text[:120]}"
            errors[key] = errors.get(key, 0) + 1
        elif record:
            lat.append(ms)

    for _ in range(warmup):
        await one(False)
    print("ready", file=sys.stderr, flush=True)
    sys.stdin.readline()  # the parent samples CPU, then says go
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            await one(True)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    for c in clients:
        await c.aclose()
    return {"elapsed": elapsed, "latencies_ms": lat, "errors": errors}


def drive_main(args: argparse.Namespace) -> None:
    setup = json.loads(args.setup)
    out = asyncio.run(_drive(args.urls.split(","), setup["token"], args.workload, setup, args.concurrency,
                             args.seconds, args.warmup))
    print(json.dumps(out), flush=True)


# --- servers ---------------------------------------------------------------------------------------------------


def _env(home: Path, import_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILBOX_")}
    env.update(VEILBOX_HOME=str(home), VEILBOX_IMPORT_ROOTS=json.dumps([str(import_root)]),
               VEILBOX_LATENCY_BUCKET_MS="0", VEILBOX_MAX_INFLIGHT_PER_PRINCIPAL="64", VEILBOX_ENV="development")
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server {url} did not start")


def serve_has_workers() -> bool:
    """Whether this tree's ``veilbox serve`` takes ``--workers N`` (N HTTP processes on one port)."""
    out = subprocess.run([sys.executable, "-m", "veilbox.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "200"})
    return "--workers" in out.stdout


@contextlib.contextmanager
def servers(n: int, env: dict[str, str], cmd: list[str] | None = None,
            workers: bool = False) -> Iterator[list[tuple[str, Any]]]:
    """``n`` servers: ``n`` separate processes on ports of their own, or with ``workers`` one
    ``veilbox serve --workers n`` (its CPU counted with its children's)."""
    import psutil

    from gateway.server import free_port

    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    extra = ["--workers", str(n)] if workers and n > 1 else []
    try:
        for i in range(1 if extra else n):
            port = free_port()
            argv = (cmd or [sys.executable, "-m", "veilbox.cli", "serve"]) + ["--port", str(port), *extra]
            # one embedded job worker is enough; the others only answer calls
            penv = {**env, "VEILBOX_WORKER": "true" if i == 0 else "false"}
            logf = Path(env["VEILBOX_HOME"]).parent / f"server-{port}.log"
            with logf.open("wb") as sink:  # the server's own log (uvicorn's access log included), for diagnosis
                proc = subprocess.Popen(argv, env=penv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            procs.append((f"http://127.0.0.1:{port}", proc))
        for url, proc in procs:
            _wait_ready(url, proc)
        yield [(url, psutil.Process(proc.pid)) for url, proc in procs]
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cpu_s(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        for q in [p, *p.children(recursive=True)]:
            with contextlib.suppress(Exception):
                c = q.cpu_times()
                total += c.user + c.system
    return total


def measure(targets: list[tuple[str, Any]], workload: str, setup: dict[str, Any], concurrency: int,
            seconds: float, processes: int = 1) -> dict[str, Any]:
    import psutil

    urls = [u for u, _ in targets]
    token = setup["analyst_token"] if workload == "query" else setup["bank_token"]  # health ignores it
    argv = [sys.executable, str(Path(__file__).resolve()), "--drive", "--urls", ",".join(urls), "--workload",
            workload, "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup",
            str(min(50, 5 * concurrency)), "--setup", json.dumps({**setup, "token": token})]
    child = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    line = child.stderr.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"load generator failed: {line}{child.stderr.read()}")
    procs = [p for _, p in targets]
    loader = psutil.Process(child.pid)
    cpu0, load0 = _cpu_s(procs), _cpu_s([loader])
    child.stdin.write("go\n")
    child.stdin.flush()
    out = json.loads(child.stdout.readline())
    cpu1, load1 = _cpu_s(procs), _cpu_s([loader])
    child.wait(timeout=30)
    lat = out["latencies_ms"]
    n = len(lat)
    res = {"rps": round(n / out["elapsed"], 1), "p50_ms": round(_pct(lat, 0.50), 2),
           "p99_ms": round(_pct(lat, 0.99), 2), "n": n,
           "cpu_ms": round((cpu1 - cpu0) * 1000 / max(n, 1), 2),
           "client_cpu_ms": round((load1 - load0) * 1000 / max(n, 1), 2),
           "errors": sum(out["errors"].values())}
    if out["errors"]:
        res["error_sample"] = sorted(out["errors"].items(), key=lambda kv: -kv[1])[:2]
    log(f"  {workload:5s} procs={processes} c={concurrency:<3d} {res['rps']:8.1f}/s  p50 {res['p50_ms']:8.2f} ms"
        f"  p99 {res['p99_ms']:8.2f} ms  cpu {res['cpu_ms']:6.2f} ms/call (load generator {res['client_cpu_ms']:5.2f})"
        f"  errors {res['errors']}")
    return res


# --- setup -----------------------------------------------------------------------------------------------------


def setup_home(work: Path, rows: int) -> tuple[dict[str, str], dict[str, Any]]:
    """A fresh home with the city's data, the bank's product and agreements; returns the env and the tokens."""
    from catalog.datagen import generate
    from gateway.context import init_home
    from gateway.settings import Settings
    from veilbox.client import Client

    import_root = work / "import"
    gen = generate(import_root / OWNER, rows=rows, seed=7)
    home = work / "home"
    env = _env(home, import_root)
    admin_token = init_home(Settings(home=home, import_roots=[import_root], latency_bucket_ms=0))
    with servers(1, env) as targets:
        url = targets[0][0]
        with Client(url, admin_token) as admin:
            tokens = {name: admin.create_principal(name, role)["token"]
                      for name, role in ((OWNER, "owner"), (BANK, "bank"), (ANALYST, "operator"))}
        with Client(url, tokens[OWNER]) as owner, Client(url, tokens[BANK]) as bank, \
                Client(url, tokens[ANALYST]) as analyst:
            owner.register_dataset(json.loads(gen.tax_income_spec.read_text()))
            owner.define_verification(PRODUCT)
            base = {"datasets": ["tax_income"], "valid_from": "2026-01-01T00:00:00Z",
                    "valid_until": "2030-01-01T00:00:00Z", "approval": "auto_within_budget",
                    "exit": {"on_expiry": "seal_outputs"}, "purposes": ["credit_risk"], "min_group_units": 5}
            bank_ag = owner.propose_agreement({
                **base, "title": "throughput: checks", "grantee": BANK, "job_kinds": ["verify"],
                "columns": {"tax_income": ["monthly_income"]}, "budget": {"epsilon": 1},
                "quotas": {"calls_per_day": 10**9, "verify_per_subject_per_day": 10**6,
                           "distinct_params_per_subject": 3}})
            bank_ag = bank.accept_agreement(bank_ag["id"])
            an_ag = owner.propose_agreement({
                **base, "title": "throughput: queries", "grantee": ANALYST, "job_kinds": ["query"],
                "columns": {"tax_income": ["district"]}, "budget": {"epsilon": 1_000_000},
                "quotas": {"calls_per_day": 10**9, "jobs_per_day": 10**6}})
            an_ag = analyst.accept_agreement(an_ag["id"])
            # one of each, to check the flow answers before measuring
            assert "result" in bank.check("income_at_least", bank_ag["id"], "P0000001", {"threshold": 8000},
                                          consent_ref="consent/bench/0")
            assert analyst.query(an_ag["id"], QUERY_SQL, 0.01).get("state") == "released"
    setup = {"rows": rows, "bank_token": tokens[BANK], "analyst_token": tokens[ANALYST],
             "bank_agreement": bank_ag["id"], "analyst_agreement": an_ag["id"], "home": str(home),
             "import_root": str(import_root)}
    return env, setup


# --- the bare comparison ---------------------------------------------------------------------------------------


class BareBody(BaseModel):
    subject: str


def bare_app(db: str) -> Any:
    """A FastAPI app doing a check's store writes and nothing else: the metering upsert + bump (one transaction,
    as `policies.quotas.consume`), then one audit append (its own transaction, as the audit middleware)."""
    import datetime as dt
    from types import SimpleNamespace

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from sqlalchemy.dialects import sqlite

    from catalog.store import make_engine
    from gateway import _tables as t
    from gateway.audit import AuditEvent, AuditLog
    from policies import _tables as pt

    engine = make_engine(f"sqlite:///{db}")
    t.metadata.create_all(engine)
    pt.metadata.create_all(engine)
    key = Ed25519PrivateKey.generate()
    audit = AuditLog(engine, SimpleNamespace(signing=key, key_id="bench"), "sha256", 100)  # type: ignore[arg-type]
    app = FastAPI()

    def work(subject: str) -> dict[str, Any]:
        m = pt.metering.c
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with engine.begin() as conn:
            for kind, subj in (("call", ""), ("verify", subject)):
                k = {"agreement_id": "agr_bench", "principal": BANK, "kind": kind, "day": day, "subject_hash": subj}
                conn.execute(sqlite.insert(pt.metering).values(**k, count=0).on_conflict_do_nothing(
                    index_elements=["agreement_id", "principal", "kind", "day", "subject_hash"]))
                conn.execute(pt.metering.update().where(*[m[c] == v for c, v in k.items()])
                             .values(count=m["count"] + 1))
        audit.append(AuditEvent(actor=BANK, role="bank", action="verify.check", subject_hash=subject,
                                details={"method": "POST", "path": "/bare/check", "status": 200}))
        return {"result": True}

    @app.post("/bare/check")
    async def check(body: BareBody) -> dict[str, Any]:
        out: dict[str, Any] = await run_in_threadpool(work, body.subject)
        return out

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def bare_main(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(bare_app(args.bare_db), host="127.0.0.1", port=args.port, log_level="warning")


# --- profile ---------------------------------------------------------------------------------------------------

#: Stages of the plain check path: the first matching (module path fragment, function) claims a sample's
#: inclusive time; ``_stage_breakdown`` reports each stage's inclusive CPU (stages nest, so they overlap).
STAGES: list[tuple[str, str, str]] = [
    ("auth (token lookup)", "gateway/deps.py", "current_principal"),
    ("strict JSON body check", "gateway/deps.py", "strict_input"),
    ("product + declaration load and vetting", "gateway/services/verification.py", "product_for_check"),
    ("subject HMAC", "gateway/keys.py", "subject_hash"),
    ("permit (the decision, nothing metered)", "gateway/services/verification.py", "_permit"),
    ("metering + the request's entry (one transaction)", "gateway/services/verification.py", "_answered"),
    ("  of which the decision's reads (build_context)", "policies/access.py", "build_context"),
    ("  of which quota metering (consume)", "policies/quotas.py", "consume"),
    ("  of which agreement expiry note", "gateway/services/agreements.py", "note_expiry"),
    ("worker statement (DuckDB)", "sandbox/verify.py", "check_subject"),
    ("receipt (Ed25519 sign)", "gateway/services/receipts.py", "issue_receipt"),
    ("audit append (hash chain, signed head, commit)", "gateway/audit.py", "append"),
    ("idempotency recorder", "gateway/services/idempotency.py", "__call__"),
    ("SQLite commit (fsync)", "sqlalchemy/engine/base.py", "_commit_impl"),
    ("SQLAlchemy execute (all statements)", "sqlalchemy/engine/base.py", "_execute_context"),
    ("FastAPI dependencies (auth, body, idempotency key)", "fastapi/dependencies/utils.py", "solve_dependencies"),
    ("  of which pydantic validation of the body", "fastapi/dependencies/utils.py", "request_body_to_args"),
    ("response serialisation", "fastapi/routing.py", "serialize_response"),
    ("latency padding", "gateway/latency.py", "pad"),
    ("logging (the in-process server logs warnings only)", "logging/__init__.py", "_log"),
]


def _stage_breakdown(stats: Any, total: float, calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, module, func in STAGES:
        ttot = sum(s.ttot for s in stats if s.module.endswith(module) and s.name.split(".")[-1] == func)
        out[label] = {"cpu_ms_per_call": round(ttot * 1000 / calls, 3), "share": round(ttot / total, 3)}
    return out


def profile(setup: dict[str, Any], seconds: float, concurrency: int, save: str | None) -> dict[str, Any]:
    import yappi

    from gateway.context import open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings

    settings = Settings(home=Path(setup["home"]), import_roots=[Path(setup["import_root"])], latency_bucket_ms=0,
                        max_inflight_per_principal=64, worker=False)
    ctx = open_context(settings)
    try:
        with BackgroundServer(ctx) as srv:
            yappi.set_clock_type("cpu")
            argv = [sys.executable, str(Path(__file__).resolve()), "--drive", "--urls", srv.url, "--workload",
                    "check", "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", "20",
                    "--setup", json.dumps({**setup, "token": setup["bank_token"]})]
            child = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            assert child.stdin is not None and child.stdout is not None and child.stderr is not None
            if child.stderr.readline().strip() != "ready":
                raise RuntimeError(child.stderr.read())
            yappi.start(builtins=True, profile_threads=True)
            child.stdin.write("go\n")
            child.stdin.flush()
            out = json.loads(child.stdout.readline())
            yappi.stop()
            child.wait(timeout=30)
    finally:
        ctx.close()
    calls = len(out["latencies_ms"])
    if save:
        yappi.get_func_stats().save(save, type="pstat")
        log(f"  pstats written to {save}")
    threads = yappi.get_thread_stats()
    total = sum(th.ttot for th in threads)
    stats = yappi.get_func_stats()
    top = sorted(stats, key=lambda s: -s.tsub)[:25]
    result = {"calls": calls, "cpu_ms_per_call": round(total * 1000 / max(calls, 1), 2),
              "stages": _stage_breakdown(stats, total, max(calls, 1)),
              "top_self": [{"fn": f"{Path(s.module).name}:{s.name}", "self_ms_per_call":
                            round(s.tsub * 1000 / max(calls, 1), 3)} for s in top]}
    yappi.clear_stats()
    for label, v in result["stages"].items():
        log(f"  {label:52s} {v['cpu_ms_per_call']:8.3f} ms/call  {v['share'] * 100:5.1f} %")
    log("  top self time:")
    for row in result["top_self"][:15]:
        log(f"    {row['fn']:60s} {row['self_ms_per_call']:8.3f} ms/call")
    return result


# --- stages (in-process, unprofiled) ---------------------------------------------------------------------------


def stages(setup: dict[str, Any], n: int) -> dict[str, Any]:
    """Each stage of a plain check called ``n`` times in-process, one after another, without HTTP: CPU (this
    thread's ``time.thread_time``) and wall milliseconds per call, and the store transactions and commits a whole
    check makes (counted by engine events). No profiler: these are the real costs."""
    from sqlalchemy import event

    import policies
    from gateway import identities
    from gateway import journal as gateway_journal
    from gateway.audit import AuditEvent
    from gateway.context import open_context
    from gateway.services import jobs as jobflow
    from gateway.services import verification
    from gateway.services.agreements import note_expiry
    from gateway.services.jobs import actor_of
    from gateway.services.receipts import issue_receipt
    from gateway.settings import Settings
    from policies import Action
    from sandbox.verify import bind_canonical, canonical_params, canonical_subject, check_subject, vet_predicate

    settings = Settings(home=Path(setup["home"]), import_roots=[Path(setup["import_root"])], latency_bucket_ms=0,
                        worker=False)
    ctx = open_context(settings)
    out: dict[str, Any] = {}
    counts = {"begin": 0, "commit": 0, "held": 0.0}
    opened: dict[int, float] = {}

    def on_begin(conn: Any) -> None:
        counts["begin"] += 1
        opened[id(conn)] = time.perf_counter()

    def on_end(kind: str) -> Any:
        def listener(conn: Any) -> None:
            if kind == "commit":
                counts["commit"] += 1
            started = opened.pop(id(conn), None)
            if started is not None:
                counts["held"] += time.perf_counter() - started

        return listener

    # every SQLite transaction is BEGIN IMMEDIATE (`catalog.store`): from begin to commit or rollback it holds the
    # database's one write lock, so the time held is serialised across every thread and process of the service
    event.listen(ctx.engine, "begin", on_begin)
    event.listen(ctx.engine, "commit", on_end("commit"))
    event.listen(ctx.engine, "rollback", on_end("rollback"))
    try:
        p = identities.authenticate(ctx.engine, setup["bank_token"], pepper=ctx.keys.token_pepper)
        assert p is not None
        agreement = setup["bank_agreement"]
        product, ds, vetted = verification.product_for_check(ctx, "income_at_least", AuditEvent())
        engines = jobflow.runtime(ctx).engines

        def run_statement(subject: str) -> bool:
            bound = bind_canonical(vetted, canonical_params(vetted, {"threshold": 8000}))
            if hasattr(engines, "worker_for"):
                return bool(check_subject(engines.worker_for(ds), vetted, subject, bound))
            with engines.lease(ds) as worker:
                return bool(check_subject(worker, vetted, subject, bound))

        def subject(i: int) -> str:
            return f"P{(i * 7919) % setup['rows'] + 1:07d}"

        def authorize(i: int) -> None:
            h = ctx.keys.subject_hash(subject(i))
            policies.authorize(ctx.engine, actor_of(p), Action.VERIFY_CHECK, agreement, datasets=[ds.name],
                               columns={ds.name: sorted(vetted.columns)}, purpose=None,
                               consent_ref=f"consent/stage/{i}", subject_hash=h,
                               params={"product": product.name, "params": {"threshold": 8000}})

        def decision(i: int) -> None:
            h = ctx.keys.subject_hash(subject(i))
            policies.check(ctx.engine, actor_of(p), Action.VERIFY_CHECK, agreement, datasets=[ds.name],
                           columns={ds.name: sorted(vetted.columns)}, purpose=None, consent_ref="c",
                           subject_hash=h, params={"product": product.name, "params": {"threshold": 8000}})

        def audited(ev: AuditEvent) -> None:  # as the middleware: an entry journaled with its change is not
            if not gateway_journal.committed(ctx.engine, ev.written):  # appended again
                ctx.audit.append(ev)

        def whole(i: int) -> None:
            body = verification.CheckBody(agreement_id=agreement, subject=subject(i), params={"threshold": 8000},
                                          consent_ref=f"consent/stage/{i}")
            ev = AuditEvent(actor=p.name, role=p.role.value, action="verify.check")
            verification.check_answer(ctx, p, "income_at_least", body, ev)
            audited(ev)

        analyst = identities.authenticate(ctx.engine, setup["analyst_token"], pepper=ctx.keys.token_pepper)
        assert analyst is not None

        def query(i: int) -> None:
            ev = AuditEvent(actor=analyst.name, role=analyst.role.value, action="query.run")
            jobflow.run_query(ctx, actor_of(analyst), setup["analyst_agreement"],
                              {"sql": QUERY_SQL, "epsilon": "0.01"}, ev)
            audited(ev)

        plan: list[tuple[str, Any]] = [
            ("auth: token lookup",
             lambda i: identities.authenticate(ctx.engine, setup["bank_token"], pepper=ctx.keys.token_pepper)),
            ("product + dataset read, predicate vetted", lambda i: verification.product_for_check(
                ctx, "income_at_least", AuditEvent())),
            ("  of which vet_predicate", lambda i: vet_predicate(product.predicate, product.params, ds,
                                                                 product.subject_column)),
            ("subject canonical + HMAC + question digest", lambda i: verification.question_digest(
                product, canonical_params(vetted, {"threshold": 8000})) and ctx.keys.subject_hash(
                canonical_subject(vetted.subject_kind, subject(i)))),
            ("agreement expiry note", lambda i: note_expiry(ctx, agreement)),
            ("decision reads (policies.check)", decision),
            ("authorize: decision + metering commit", authorize),
            ("worker statement (DuckDB)", lambda i: run_statement(subject(i))),
            ("receipt (Ed25519)", lambda i: issue_receipt(ctx, {"kind": "verification", "i": i})),
            ("audit append (own commit)", lambda i: ctx.audit.append(AuditEvent(actor="bench", action="bench"))),
            ("whole check service + audit append", whole),
            ("whole DP query service + audit append (run_query)", query),
        ]
        for label, fn in plan:
            try:
                fn(0)
            except Exception as e:  # a stage whose internal API moved: say so, measure the rest
                out[label] = {"unavailable": f"{type(e).__name__}: {e}"[:200]}
                log(f"  {label:44s} unavailable ({type(e).__name__})")
                continue
            counts.update(begin=0, commit=0, held=0.0)
            c0, w0 = time.thread_time(), time.perf_counter()
            for i in range(1, n + 1):
                fn(i)
            c1, w1 = time.thread_time(), time.perf_counter()
            out[label] = {"cpu_ms": round((c1 - c0) * 1000 / n, 3), "wall_ms": round((w1 - w0) * 1000 / n, 3),
                          "transactions": round(counts["begin"] / n, 2), "commits": round(counts["commit"] / n, 2),
                          "write_lock_ms": round(counts["held"] * 1000 / n, 3)}
            log(f"  {label:44s} cpu {out[label]['cpu_ms']:7.3f} ms  wall {out[label]['wall_ms']:7.3f} ms  "
                f"transactions {out[label]['transactions']:5.2f}  commits {out[label]['commits']:5.2f}  "
                f"write lock held {out[label]['write_lock_ms']:7.3f} ms")
    finally:
        ctx.close()
    return out


# --- query stages (in-process, unprofiled) ---------------------------------------------------------------------

#: The functions a DP query call goes through, timed where they are looked up (module attribute or class method);
#: a name a tree does not have is skipped, so one list serves the trees compared. Inclusive figures: nested
#: stages (the engine's statement inside the run) are also inside their callers.
QUERY_STAGES: list[tuple[str, str, str]] = [
    ("agreement expiry note", "gateway.services.jobs", "note_expiry"),
    ("agreement read (parties only)", "policies", "get_agreement"),
    ("decision reads, one transaction (before the plan)", "policies", "submission_context"),
    ("dataset records read", "gateway.services.jobs", "datasets_of"),
    ("plan: vet, rewrite, keys, calibrate (memoised)", "sandbox.jobs.query", "prepare_for"),
    ("  of which prepare (vet, keys, rewrite: a miss)", "sandbox.jobs.query", "prepare"),
    ("submit: decision reads + meters, job row, debit, job.charge", "policies", "submit"),
    ("start: run blockers, lease", "policies", "start"),
    ("heartbeat thread start", "gateway.services.leases", "Heartbeat.__enter__"),
    ("heartbeat thread stop", "gateway.services.leases", "Heartbeat.__exit__"),
    ("agreement reload", "policies", "load_agreement"),
    ("execute (re-vet, engine lease, run)", "sandbox.jobs.query", "QueryHandler.execute"),
    ("  run: noise + engine + release", "sandbox.jobs.query", "run"),
    ("    engine statement (DuckDB worker, IPC)", "sandbox.engine.worker", "QueryWorker.execute"),
    ("release gate", "gateway.services.jobs", "_gated"),
    ("succeed (running -> succeeded)", "policies", "succeed"),
    ("certificate + sources", "gateway.services.certificates", "for_release"),
    ("release (succeeded -> released, entries)", "policies", "release"),
    ("finish: run + gate + succeed + release in one", "policies", "finish"),
    ("result read", "gateway.services.jobs", "job_result"),
    ("audit entry appended in a transaction", "gateway.audit", "AuditLog.append_in"),
    ("entry committed? (middleware)", "gateway.journal", "committed"),
]

QUERY_SQLS = {"global count": "SELECT COUNT(*) AS n FROM tax_income",
              "count by district": QUERY_SQL}


class _Counter:
    """Store events and CPU per named stage: transactions, commits and statements (``before_cursor_execute``)."""

    def __init__(self) -> None:
        self.begin = self.commit = self.stmts = 0
        self.by_stage: dict[str, dict[str, float]] = {}

    def snap(self) -> tuple[int, int, int]:
        return self.begin, self.commit, self.stmts

    def add(self, label: str, cpu: float, wall: float, before: tuple[int, int, int]) -> None:
        s = self.by_stage.setdefault(label, {"calls": 0, "cpu": 0.0, "wall": 0.0, "transactions": 0,
                                             "commits": 0, "statements": 0})
        s["calls"] += 1
        s["cpu"] += cpu
        s["wall"] += wall
        s["transactions"] += self.begin - before[0]
        s["commits"] += self.commit - before[1]
        s["statements"] += self.stmts - before[2]


def _instrument(counter: _Counter) -> list[tuple[Any, str, Any]]:
    """Wrap each of `QUERY_STAGES` that exists; returns what to restore."""
    import functools
    import importlib
    import threading

    main = threading.get_ident()
    undo: list[tuple[Any, str, Any]] = []
    for label, module, attr in QUERY_STAGES:
        try:
            owner: Any = importlib.import_module(module)
        except ImportError:
            continue
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue
        original = owner.__dict__.get(name, getattr(owner, name)) if isinstance(owner, type) else getattr(owner, name)

        def wrapped(*a: Any, __f: Any = original, __label: str = label, **k: Any) -> Any:
            if threading.get_ident() != main:  # another thread's (the noise pool's, a heartbeat's): not timed here
                return __f(*a, **k)
            before, c0, w0 = counter.snap(), time.thread_time(), time.perf_counter()
            try:
                return __f(*a, **k)
            finally:
                counter.add(__label, time.thread_time() - c0, time.perf_counter() - w0, before)

        functools.update_wrapper(wrapped, original)
        setattr(owner, name, wrapped)
        undo.append((owner, name, original))
    return undo


def query_stages(setup: dict[str, Any], n: int) -> dict[str, Any]:
    """A small DP query (`QUERY_SQLS`: a global count and a count by district) through ``run_query`` in-process,
    ``n`` calls each after a warm-up call, as the HTTP route runs it (the request's entry appended by the
    middleware only when no transaction wrote it): per call, this thread's CPU and the process's (the noise pool
    and the heartbeat included), wall, store transactions, commits and statements, in total and by stage
    (`QUERY_STAGES`). ``fixed_cpu_ms`` is this thread's CPU outside the engine's statement (its IPC and the worker
    process are not in it; the noise is drawn on the pool's threads)."""
    from sqlalchemy import event

    from gateway import identities
    from gateway import journal as gateway_journal
    from gateway.audit import AuditEvent
    from gateway.context import open_context
    from gateway.services import jobs as jobflow
    from gateway.services.jobs import actor_of
    from gateway.settings import Settings

    settings = Settings(home=Path(setup["home"]), import_roots=[Path(setup["import_root"])], latency_bucket_ms=0,
                        worker=False)
    ctx = open_context(settings)
    counter = _Counter()
    event.listen(ctx.engine, "begin", lambda conn: setattr(counter, "begin", counter.begin + 1))
    event.listen(ctx.engine, "commit", lambda conn: setattr(counter, "commit", counter.commit + 1))
    event.listen(ctx.engine, "before_cursor_execute",
                 lambda *a: setattr(counter, "stmts", counter.stmts + 1))
    analyst = identities.authenticate(ctx.engine, setup["analyst_token"], pepper=ctx.keys.token_pepper)
    assert analyst is not None
    out: dict[str, Any] = {}
    try:
        for label, sql in QUERY_SQLS.items():

            def call(sql: str = sql) -> None:
                ev = AuditEvent(actor=analyst.name, role=analyst.role.value, action="query.run")
                waiting, body = jobflow.run_query(ctx, actor_of(analyst), setup["analyst_agreement"],
                                                  {"sql": sql, "epsilon": "0.01"}, ev)
                assert not waiting and body.get("state") == "released", body
                if not gateway_journal.committed(ctx.engine, ev.written):  # as the audit middleware
                    ctx.audit.append(ev)

            call()  # warm: the engine started, the plan memoised
            counter.by_stage.clear()
            undo = _instrument(counter)
            try:
                before = counter.snap()
                c0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
                for _ in range(n):
                    call()
                c1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
            finally:
                for owner, name, original in reversed(undo):
                    setattr(owner, name, original)
            stages_out = {k: {"calls": round(v["calls"] / n, 2), "cpu_ms": round(v["cpu"] * 1000 / n, 3),
                              "wall_ms": round(v["wall"] * 1000 / n, 3),
                              "transactions": round(v["transactions"] / n, 2),
                              "commits": round(v["commits"] / n, 2), "statements": round(v["statements"] / n, 2)}
                          for k, v in counter.by_stage.items()}
            engine_cpu = next((v["cpu_ms"] for k, v in stages_out.items() if "engine statement" in k), 0.0)
            total = {"cpu_ms": round((c1 - c0) * 1000 / n, 3), "process_cpu_ms": round((p1 - p0) * 1000 / n, 3),
                     "wall_ms": round((w1 - w0) * 1000 / n, 3),
                     "transactions": round((counter.begin - before[0]) / n, 2),
                     "commits": round((counter.commit - before[1]) / n, 2),
                     "statements": round((counter.stmts - before[2]) / n, 2)}
            total["fixed_cpu_ms"] = round(total["cpu_ms"] - engine_cpu, 3)
            out[label] = {"total": total, "stages": stages_out}
            log(f"  {label}: " + json.dumps(total))
            for k, v in stages_out.items():
                log(f"    {k:60s} cpu {v['cpu_ms']:7.3f}  wall {v['wall_ms']:7.3f}  tx {v['transactions']:5.2f}  "
                    f"commits {v['commits']:5.2f}  stmts {v['statements']:6.2f}  calls {v['calls']:4.2f}")
    finally:
        ctx.close()
    return out


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5k people, 3 s per point, c=1 and 32, 1 and 2 processes")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="per measurement point")
    ap.add_argument("--processes", type=int, default=2, help="N for the multi-process points")
    ap.add_argument("--multi", choices=("auto", "workers", "processes"), default="auto",
                    help="N processes as one `veilbox serve --workers N` (auto: when the command has it) or as N "
                         "separate `veilbox serve` on their own ports, the client going round-robin")
    ap.add_argument("--concurrency", default=None, help="comma-separated callers per point (default 1,8,32)")
    ap.add_argument("--workloads", default="check,query,bare,me,health",
                    help="check, query, bare, me (GET /v1/principals/me), health (GET /health)")
    ap.add_argument("--profile", action="store_true", help="also profile the check path in-process (yappi)")
    ap.add_argument("--stages", type=int, default=0, metavar="N",
                    help="also time each stage of a plain check in-process, N calls each")
    ap.add_argument("--query-stages", type=int, default=0, metavar="N",
                    help="also time each stage of a small DP query in-process, N calls per query")
    ap.add_argument("--home-from", metavar="DIR",
                    help="reuse the home a run with --keep left in DIR (its setup.json) instead of a fresh one")
    ap.add_argument("--profile-out", help="also write the profile as a pstats file here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    # internal modes
    ap.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bare-serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bare-db", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=20, help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.drive:
        args.concurrency = int(args.concurrency)
        drive_main(args)
        return
    if args.bare_serve:
        bare_main(args)
        return

    rows = args.rows or (5_000 if args.quick else 20_000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    levels = [int(c) for c in (args.concurrency or ("1,32" if args.quick else "1,8,32")).split(",")]
    procs = [1, args.processes] if args.processes > 1 else [1]
    workloads = args.workloads.split(",")
    work = Path(tempfile.mkdtemp(prefix="veilbox-throughput-"))
    report: dict[str, Any] = {"bench": "throughput", "rows": rows, "seconds_per_point": seconds,
                              "cores": os.cpu_count(), "padding": "off", "sqlite_synchronous": "FULL"}
    try:
        if args.home_from:
            setup = json.loads((Path(args.home_from) / "setup.json").read_text())
            env = _env(Path(setup["home"]), Path(setup["import_root"]))
            rows = report["rows"] = setup["rows"]
            log(f"reusing the home in {args.home_from} ({rows:,} people)")
        else:
            log(f"setting up a home with {rows:,} people in {work} ...")
            env, setup = setup_home(work, rows)
            (work / "setup.json").write_text(json.dumps(setup))
        multi = args.multi if args.multi != "auto" else ("workers" if serve_has_workers() else "processes")
        report["multi_process"] = multi if len(procs) > 1 else None
        for workload in [w for w in workloads if w in ("check", "query", "me", "health")]:
            report[workload] = {}
            for n in (procs if workload in ("check", "query") else [1]):
                with servers(n, env, workers=multi == "workers") as targets:
                    for c in levels:
                        report[workload][f"p{n}_c{c}"] = measure(targets, workload, setup, c, seconds, n)
        if "bare" in workloads:
            report["bare"] = {}
            db = work / "bare.db"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-serve", "--bare-db", str(db)]
            with servers(1, env, cmd) as targets:
                for c in levels:
                    report["bare"][f"p1_c{c}"] = measure(targets, "bare", setup, c, seconds)
            if "check" in report:
                report["ratio_to_bare"] = {
                    k: {"rps": round(report["check"][k]["rps"] / max(v["rps"], 1e-9), 3),
                        "cpu_ms": round(report["check"][k]["cpu_ms"] / max(v["cpu_ms"], 1e-9), 2)}
                    for k, v in report["bare"].items() if k in report["check"]}
        if args.stages:
            log(f"stages of a plain check in-process ({args.stages} calls each, no profiler) ...")
            report["stages"] = stages(setup, args.stages)
        if args.query_stages:
            log(f"stages of a small DP query in-process ({args.query_stages} calls per query, no profiler) ...")
            report["query_stages"] = query_stages(setup, args.query_stages)
        if args.profile:
            log("profiling the plain check path in-process (yappi, CPU clock) ...")
            report["profile"] = profile(setup, seconds, 8, args.profile_out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    if "check" in report and "me" in report and "health" in report:
        # where a check's CPU goes, by layer (concurrency 1, one process): the HTTP floor (uvicorn + FastAPI,
        # /health), authentication + the audit middleware and its append (/v1/principals/me), the check itself
        floor, me, check = (report[k]["p1_c1"]["cpu_ms"] for k in ("health", "me", "check"))
        report["layers_cpu_ms"] = {"http_floor": floor, "auth_audit_middleware_and_append": round(me - floor, 2),
                                   "check_service": round(check - me, 2), "total": check}
    summary = {k: {p: v["rps"] for p, v in report[k].items()} for k in ("check", "query", "bare") if k in report}
    log("rps: " + json.dumps(summary))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
