"""Benchmark of the private SQL engine on synthetic ``tax_income`` (default 10M rows; ``--quick`` 200k).

For each query it reports:

- ``service_ms``: median latency of ``sandbox.run`` (worker process, noise, release; padding off) and
  ``prepare_ms`` (vetting, key enumeration, rewriting, calibration);
- ``twin_ms``: median latency of the **non-private twin** — the analyst's submitted SQL, as written, run on a
  plain in-process DuckDB (same version, same threads and memory limit) over the registered Parquet file
  (a view, read in place like the worker does); each service run is followed by one twin run, so both see the
  same machine load. ``ratio`` = service / twin is the headline figure: the price of privacy;
- ``canonical_ms``: median latency of the same plain DuckDB running the *canonical* SQL the worker executes
  (key table join, clamping, grid sums; the bounded form unless the worker elides bounding) over the same
  view; ``canonical_ratio`` = service / canonical (the cost of the worker, pipe and release alone);
- ``gateway_ms``: median end-to-end latency of ``POST /v1/queries`` through a real gateway on loopback
  (authentication, agreement decision, ledger debit, worker run, noise, release, audit entry; latency padding
  off) and ``gateway_ratio`` = gateway / twin;
- SmartNoise SQL (``smartnoise-sql``; one row per person, ``sample_max_ids`` false, ``censor_dims`` false) at
  the same total ε — SmartNoise's own ``get_privacy_cost`` decides it and Veilbox is run at that ε:
  ``speedup`` = SmartNoise median latency / ours (goal ≥ 20) and the median relative error of both over
  ``--runs`` runs (goal: ours no worse).

SmartNoise pins an older OpenDP than Veilbox, so it runs in its own interpreter: ``--smartnoise-python`` (or
``VEILBOX_SMARTNOISE_PYTHON``; default ``.venv-snsql/bin/python``, which ``make bench`` installs); without one
that part is skipped. Generated data and the registered copy are cached under ``bench/.data/``. The worker's resident
memory (``VmRSS`` when ready and after the queries, ``VmHWM`` peak; Linux only) is reported as
``worker_start_rss_mb``, ``worker_rss_mb`` and ``worker_peak_mb``. One JSON line goes to stdout
(``ratio_geomean``/``ratio_max``: geometric mean and maximum of the per-query ``ratio``); progress and a table
go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from catalog import registry  # noqa: E402
from catalog._tables import metadata  # noqa: E402
from catalog.columns import DatasetSpec  # noqa: E402
from catalog.datagen import generate  # noqa: E402
from catalog.registry import Dataset  # noqa: E402
from catalog.storage import LocalStorage, bind_data_area  # noqa: E402
from catalog.store import make_engine  # noqa: E402
from sandbox import QueryWorker, TableView, prepare, run  # noqa: E402
from sandbox.engine.hardening import quote_ident  # noqa: E402

DATA = ROOT / "bench" / ".data"
GRANTED = frozenset(["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                     "social_insurance_months"])
QUERIES: dict[str, str] = {
    "global_count": "SELECT COUNT(*) AS n FROM tax_income",
    "count_by_district": "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district",
    "avg_income_by_district_gender": "SELECT district, gender, AVG(monthly_income) AS avg_income FROM tax_income "
                                     "GROUP BY district, gender",
    "filtered_sum": "SELECT SUM(tax_paid) AS t FROM tax_income WHERE age BETWEEN 30 AND 39 "
                    "AND industry IN ('manufacturing', 'finance')",
    "histogram_1000": "SELECT FLOOR(monthly_income / 200) AS bucket, COUNT(*) AS n FROM tax_income GROUP BY bucket",
}
SMARTNOISE_GROUP_BY = {"histogram_1000": "GROUP BY FLOOR(monthly_income / 200)"}
N_KEYS = {"global_count": 0, "count_by_district": 1, "avg_income_by_district_gender": 2, "filtered_sum": 0,
          "histogram_1000": 1}

SMARTNOISE_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import snsql
from snsql import Privacy
cfg = json.load(sys.stdin)
t0 = time.perf_counter()
df = pd.read_parquet(cfg["parquet"], columns=cfg["columns"])
meta = {"bench": {"public": {"tax_income": cfg["table"]}}}
reader = snsql.from_df(df, privacy=Privacy(epsilon=cfg["epsilon"], delta=cfg["delta"]), metadata=meta)
out = {"load_s": time.perf_counter() - t0, "queries": {}}
for name, sql in cfg["queries"].items():
    try:
        eps, delta = reader.get_privacy_cost(sql)
        lat, results = [], []
        for _ in range(cfg["runs"]):
            t = time.perf_counter()
            rows = reader.execute(sql)
            lat.append((time.perf_counter() - t) * 1000)
            results.append([[None if v != v else (v.item() if hasattr(v, "item") else v) for v in r] for r in rows[1:]])
        out["queries"][name] = {"epsilon": float(eps), "delta": float(delta), "latency_ms": lat, "results": results}
    except Exception as e:
        out["queries"][name] = {"error": type(e).__name__ + ": " + str(e)[:200]}
json.dump(out, sys.stdout)
"""


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def ensure_dataset(rows: int) -> Dataset:
    gen_dir = DATA / f"gen-{rows}"
    if not (gen_dir / "tax_income.spec.json").is_file():
        log(f"generating {rows:,} rows into {gen_dir} ...")
        generate(gen_dir, rows=rows)
    home = DATA / f"home-{rows}"
    home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{home / 'meta.db'}")
    metadata.create_all(engine)
    bind_data_area(engine, LocalStorage(home / "data"))  # dataset rows name their copies by key in this area
    ds = registry.get(engine, "tax_income")
    if ds is not None and ds.path.is_file():
        return ds
    if ds is not None:  # stale metadata without its file
        engine.dispose()
        (home / "meta.db").unlink()
        return ensure_dataset(rows)
    log("registering (ingest: validate, clamp, copy) ...")
    spec = DatasetSpec.model_validate(json.loads((gen_dir / "tax_income.spec.json").read_text()))
    ms, reg = timed(lambda: registry.register(engine, spec, owner="bench", data_dir=home / "data",
                                             import_roots=[gen_dir], max_source_bytes=1 << 40))
    log(f"registered in {ms / 1000:.1f} s")
    return reg.dataset


def truth(con: duckdb.DuckDBPyConnection, sql: str, n_keys: int) -> dict[tuple[Any, ...], list[float]]:
    rows = con.execute(sql).fetchall()
    return {tuple(r[:n_keys]): [float(v) for v in r[n_keys:]] for r in rows}


def rel_error(rows: list[list[Any]], true: dict[tuple[Any, ...], list[float]], n_keys: int) -> float | None:
    """Median over the cells of groups present in the data of |noisy - true| / max(|true|, 1)."""
    got = {tuple(float(k) if isinstance(k, int | float) else k for k in r[:n_keys]): r[n_keys:] for r in rows}
    errs = []
    for key, vals in true.items():
        k = tuple(float(x) if isinstance(x, int | float) else x for x in key)
        if k not in got:
            continue
        for v, t in zip(got[k], vals, strict=True):
            if v is not None:
                errs.append(abs(float(v) - t) / max(abs(t), 1.0))
    return statistics.median(errs) if errs else None


def rss_mb(pid: int | None) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of process ``pid`` in MiB, from /proc (None where unavailable)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None, None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def mb(key: str) -> float | None:
        return round(int(fields[key].split()[0]) / 1024, 1) if key in fields else None

    return mb("VmRSS"), mb("VmHWM")


def plain_duckdb(path: Path, threads: int, memory_limit: str, row_numbers: bool) -> duckdb.DuckDBPyConnection:
    """A plain in-process DuckDB (no lockdown, no privacy) with ``tax_income`` as a view over the registered
    file; ``row_numbers`` adds the worker's ``rowid`` column for the bounded canonical SQL."""
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    lit = "'" + str(path).replace("'", "''") + "'"
    src = (f"SELECT *, file_row_number AS rowid FROM read_parquet({lit}, file_row_number = true)" if row_numbers
           else f"SELECT * FROM read_parquet({lit})")
    con.execute(f"CREATE VIEW tax_income AS {src}")
    return con


def smartnoise(python: str, ds: Dataset, epsilon: float, runs: int) -> dict[str, Any] | None:
    table = {"max_ids": 1, "row_privacy": False, "sample_max_ids": False, "censor_dims": False,
             "person_id": {"type": "string", "private_id": True}}
    for c in ("district", "gender", "industry"):
        table[c] = {"type": "string"}
    for c in ("age", "monthly_income", "tax_paid"):
        info = ds.columns[c]
        assert info.bounds is not None
        table[c] = {"type": "int" if c == "age" else "float", "lower": info.bounds[0], "upper": info.bounds[1]}
    queries = {}
    for name, sql in QUERIES.items():
        q = sql.replace("FROM tax_income", "FROM public.tax_income")
        if name in SMARTNOISE_GROUP_BY:
            q = q[: q.index("GROUP BY")] + SMARTNOISE_GROUP_BY[name]
        queries[name] = q
    cfg = {"parquet": str(ds.path), "columns": ["person_id", "district", "age", "gender", "industry",
                                                "monthly_income", "tax_paid"],
           "table": table, "epsilon": epsilon, "delta": 1e-6, "runs": runs, "queries": queries}
    log(f"SmartNoise SQL ({python}) x{runs} runs per query ...")
    proc = subprocess.run([python, "-c", SMARTNOISE_RUNNER], input=json.dumps(cfg), capture_output=True,
                          text=True, timeout=6 * 3600)
    if proc.returncode != 0:
        log("SmartNoise failed:", proc.stderr[-2000:])
        return None
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def gateway_latencies(rows: int, runs: int, threads: int, memory_limit: str) -> dict[str, float]:
    """Median ``POST /v1/queries`` latency per query through a real gateway (padding off)."""
    import policies
    from gateway import identities
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox.client import Client

    gen_dir = DATA / f"gen-{rows}"
    home = DATA / f"gw-{rows}"
    settings = Settings(home=home, import_roots=[gen_dir], latency_bucket_ms=0, engine_threads=threads,
                        engine_memory=memory_limit, query_timeout_s=600, max_source_bytes=1 << 40)
    if not (home / "meta.db").exists():
        init_home(settings)
    ctx = open_context(settings)
    try:
        if registry.get(ctx.engine, "tax_income") is None:
            log("registering into the gateway home ...")
            # a cache generated before the synthetic city became general (一般) declares it important, whose
            # grade refuses the automatic approval and ε below (policies.grades); the grade changes no cost
            raw = {**json.loads((gen_dir / "tax_income.spec.json").read_text()), "grade": "general"}
            spec = DatasetSpec.model_validate(raw)
            registry.register(ctx.engine, spec, owner="bench-owner", data_dir=settings.data_dir,
                              import_roots=[gen_dir], max_source_bytes=1 << 40)
            identities.create_principal(ctx.engine, "bench-owner", "owner", created_by=None,
                                        pepper=ctx.keys.token_pepper)
        op = identities.by_name(ctx.engine, "bench-op")
        if op is not None:
            raise SystemExit(f"{home} holds a previous run; delete it")
        _, token = identities.create_principal(ctx.engine, "bench-op", "operator", created_by=None,
                                               pepper=ctx.keys.token_pepper)
        doc = {"title": "bench", "grantee": "bench-op", "datasets": ["tax_income"],
               "columns": {"tax_income": sorted(GRANTED)}, "purposes": ["statistics"], "job_kinds": ["query"],
               "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z",
               "budget": {"epsilon": 10**6}, "min_group_units": 1, "approval": "auto_within_budget",
               "quotas": {"calls_per_day": 10**9, "jobs_per_day": 10**6}}
        ag = policies.create_agreement(ctx.engine, policies.Actor("bench-owner", "owner"), doc)
        policies.accept(ctx.engine, policies.Actor("bench-op", "operator"), ag.id)
        out: dict[str, float] = {}
        with BackgroundServer(ctx) as srv, Client(srv.url, token) as c:
            for name, sql in QUERIES.items():
                c.query(ag.id, sql, 1)  # warm-up: starts the dataset's worker
                lat = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    c.query(ag.id, sql, 1)
                    lat.append((time.perf_counter() - t0) * 1000)
                out[name] = round(statistics.median(lat), 2)
        return out
    finally:
        ctx.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)  # principals and ledgers are per run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="200k rows")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--epsilon", type=float, default=1.0, help="SmartNoise's per-mechanism epsilon")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="8GB")
    own = Path(__file__).resolve().parents[1] / ".venv-snsql" / "bin" / "python"  # `make bench` installs it
    ap.add_argument("--smartnoise-python", default=os.environ.get("VEILBOX_SMARTNOISE_PYTHON") or (
        str(own) if own.is_file() else ""), help="a Python with smartnoise-sql (default: .venv-snsql)")
    args = ap.parse_args()
    rows = 200_000 if args.quick else args.rows
    ds = ensure_dataset(rows)
    tables = {"tax_income": TableView(ds, GRANTED)}

    sn = smartnoise(args.smartnoise_python, ds, args.epsilon, args.runs) if args.smartnoise_python else None
    eps_for = {name: (sn["queries"][name].get("epsilon") if sn and "epsilon" in sn["queries"][name] else None)
               for name in QUERIES}

    worker = QueryWorker({"tax_income": ds.path}, threads=args.threads, memory_limit=args.memory_limit,
                         timeout_s=600)
    load_ms, _ = timed(worker.start)
    start_rss, _ = rss_mb(worker.pid)
    twin = plain_duckdb(ds.path, args.threads, args.memory_limit, row_numbers=False)
    raw = plain_duckdb(ds.path, args.threads, args.memory_limit, row_numbers=True)
    (max_rows,) = raw.execute(f"SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM tax_income GROUP BY "
                              f"{quote_ident(ds.id_column)})").fetchone() or (0,)
    bounded_elided = int(max_rows) <= ds.max_rows_per_unit
    log(f"worker ready in {load_ms / 1000:.2f} s, {start_rss} MiB resident; per-unit bound "
        f"{'verified, bounding elided' if bounded_elided else 'enforced'}")

    report: dict[str, Any] = {}
    try:
        for name, sql in QUERIES.items():
            eps = eps_for[name] or args.epsilon
            t0 = time.perf_counter()
            plan = prepare(sql, tables, epsilon=eps, delta=0, min_group_units=0)
            prep_ms = (time.perf_counter() - t0) * 1000
            exec_sql = plan.canonical.unbounded_sql if bounded_elided else plan.canonical.sql
            params = {} if bounded_elided else {"salt": "bench"}
            run(plan, worker)  # warm-ups (and the worker's one-off bound check)
            twin.execute(sql).fetchall()
            raw.execute(exec_sql, params).fetchall()
            svc: list[float] = []
            twin_ms: list[float] = []
            raw_ms: list[float] = []
            ours: list[list[list[Any]]] = []
            for _ in range(args.runs):  # interleaved: private answer, its non-private twin, canonical SQL
                t0 = time.perf_counter()
                res = run(plan, worker)
                svc.append((time.perf_counter() - t0) * 1000)
                ours.append(res.rows)
                t0 = time.perf_counter()
                twin.execute(sql).fetchall()
                twin_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                raw.execute(exec_sql, params).fetchall()
                raw_ms.append((time.perf_counter() - t0) * 1000)
            true = truth(twin, sql, N_KEYS[name])
            ours_err = statistics.median(e for e in (rel_error(r, true, N_KEYS[name]) for r in ours)
                                         if e is not None)
            entry: dict[str, Any] = {
                "epsilon": float(plan.cost[0]),
                "prepare_ms": round(prep_ms, 2),
                "service_ms": round(statistics.median(svc), 2),
                "twin_ms": round(statistics.median(twin_ms), 2),
                "canonical_ms": round(statistics.median(raw_ms), 2),
                "groups": len(plan.keys.rows),
                "median_rel_error": ours_err,
            }
            entry["ratio"] = round(entry["service_ms"] / max(entry["twin_ms"], 1e-6), 3)
            entry["canonical_ratio"] = round(entry["service_ms"] / max(entry["canonical_ms"], 1e-6), 3)
            snq = sn["queries"].get(name) if sn else None
            if snq and "latency_ms" in snq:
                sn_err = statistics.median(e for e in (rel_error(r, true, N_KEYS[name]) for r in snq["results"])
                                           if e is not None)
                entry["smartnoise"] = {"epsilon": snq["epsilon"], "delta": snq["delta"],
                                       "ms": round(statistics.median(snq["latency_ms"]), 2),
                                       "median_rel_error": sn_err}
                entry["speedup"] = round(entry["smartnoise"]["ms"] / max(entry["service_ms"], 1e-6), 1)
                entry["error_ratio"] = round(ours_err / sn_err, 3) if sn_err else None
            elif snq:
                entry["smartnoise"] = {"error": snq.get("error")}
            report[name] = entry
            log(f"{name:32s} svc {entry['service_ms']:9.2f} ms  twin {entry['twin_ms']:9.2f} ms  "
                f"x{entry['ratio']:.2f}  canonical {entry['canonical_ms']:9.2f} ms x{entry['canonical_ratio']:.2f}  "
                f"err {ours_err:.2e}"
                + (f"  | SmartNoise {entry['smartnoise']['ms']:9.2f} ms  err "
                   f"{entry['smartnoise']['median_rel_error']:.2e}  speedup {entry['speedup']}"
                   if "speedup" in entry else ""))
        worker_rss, worker_peak = rss_mb(worker.pid)
    finally:
        worker.stop()
        twin.close()
        raw.close()
    log("gateway end to end ...")
    gw = gateway_latencies(rows, args.runs, args.threads, args.memory_limit)
    for name, ms in gw.items():
        report[name]["gateway_ms"] = ms
        report[name]["gateway_ratio"] = round(ms / max(report[name]["twin_ms"], 1e-6), 3)
        log(f"{name:32s} gateway {ms:9.2f} ms  x{report[name]['gateway_ratio']:.2f} of the non-private twin")
    ratios = [e["ratio"] for e in report.values()]
    line = {"bench": "sql", "rows": rows, "parquet_bytes": ds.path.stat().st_size, "runs": args.runs,
            "threads": args.threads, "ratio_geomean": round(statistics.geometric_mean(ratios), 3),
            "ratio_max": max(ratios), "worker_load_s": round(load_ms / 1000, 2), "worker_start_rss_mb": start_rss,
            "worker_rss_mb": worker_rss, "worker_peak_mb": worker_peak, "bounding_elided": bounded_elided,
            "smartnoise_load_s": round(sn["load_s"], 2) if sn else None, "queries": report}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
